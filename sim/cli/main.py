"""The ``softerror`` command line.

Library code raises; this module turns a bad option into one line on stderr and exit
status 2, a failed check into exit status 1, and success into 0. Every subcommand that
reports numbers accepts ``--json`` and then prints exactly one JSON object on stdout.
"""

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from sim.cli.executor_options import (
    CampaignFailed,
    add_executor_options,
    check_executor_arguments,
    quiet_distributed,
)
from sim.cli.progress import ProgressBar, add_progress_option, progress_wanted
from sim.cli.usage import (
    UsageError,
    check_output_directory,
    check_output_file,
    design_config,
    int_range,
    print_json,
)
from sim.cli.unit_campaign import add_unit_campaign_command
from sim.cli.vit import add_commands as add_vit_commands

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C does, cleaning up on the way (results stored are kept)."""


def _terminate(signum, frame):
    raise Terminated()


def _add_design_options(parser):
    from hw.config import ABFT_MODES, MAX_DIMENSION, MAX_K, NONLINEAR_UNITS
    parser.add_argument("--rows", type=int_range(1, MAX_DIMENSION), default=8,
                        help="array rows (default 8)")
    parser.add_argument("--cols", type=int_range(1, MAX_DIMENSION), default=8,
                        help="array columns (default 8)")
    parser.add_argument("--k-max", type=int_range(1, MAX_K), default=256,
                        help="operand buffer depth, the longest K of a tile (default 256)")
    parser.add_argument("--abft", choices=ABFT_MODES, default="none",
                        help="block checksums: none, col (detect), rowcol (also correct)")
    parser.add_argument("--range-check", action="store_true",
                        help="a range checker on the output path")
    parser.add_argument("--nonlinear", type=_unit_list, default=(), metavar="UNIT,...",
                        help=f"nonlinear units beside the array: {','.join(NONLINEAR_UNITS)}"
                             " (default none)")
    parser.add_argument("--nonlinear-length", type=int_range(1, 65535), default=256,
                        metavar="L", help="the nonlinear units' longest row (default 256)")
    parser.add_argument("--no-nonlinear-checkers", dest="nonlinear_checkers",
                        action="store_false", help="build the nonlinear units without their "
                                                   "checkers")


def _unit_list(text):
    """An argparse type: a comma-separated list of nonlinear units."""
    from hw.config import NONLINEAR_UNITS
    units = tuple(unit.strip() for unit in text.split(",") if unit.strip())
    for unit in units:
        if unit not in NONLINEAR_UNITS:
            raise argparse.ArgumentTypeError(
                f"must be units among {', '.join(NONLINEAR_UNITS)}, not {unit!r}")
    return units


def _add_range_options(parser):
    parser.add_argument("--range-lower", type=int_range(-(1 << 31), (1 << 31) - 1),
                        default=-(1 << 31), help="lower bound (with --range-check)")
    parser.add_argument("--range-upper", type=int_range(-(1 << 31), (1 << 31) - 1),
                        default=(1 << 31) - 1, help="upper bound (with --range-check)")
    parser.add_argument("--range-mode", choices=("clamp", "zero"), default="clamp",
                        help="what replaces an out-of-range value (default clamp)")


def _range_bounds(args):
    from sw.twin.protection import RangeBounds
    defaults = (args.range_lower, args.range_upper, args.range_mode) == (
        -(1 << 31), (1 << 31) - 1, "clamp")
    if not args.range_check:
        if not defaults:
            raise UsageError("--range-lower, --range-upper and --range-mode need --range-check")
        return None
    if args.range_lower > args.range_upper:
        raise UsageError(f"--range-lower ({args.range_lower}) must not exceed --range-upper "
                         f"({args.range_upper})")
    return RangeBounds(args.range_lower, args.range_upper, args.range_mode == "zero")


def _gemm_table(reports):
    from sim.cli.table import format_table
    rows = []
    for r in reports:
        result = "bit-exact" if r["bit_exact"] else (
            "HANG" if r["hang"] else f"MISMATCH ({r['mismatches']} elements)")
        if r["bit_exact"] and not r["timing_ok"]:
            result = "bit-exact, TIMING MISMATCH"
        if r["flag_mismatches"]:
            result += f", FLAGS DIFFER in {len(r['flag_mismatches'])} tiles"
        operands = ("given" if r["operands_file"] else
                    f"seed {r['seed']}, {r['extreme_fraction']:.0%} at -128/127")
        rows.append([f"{r['m']}x{r['k']}x{r['n']}", operands, r["tiles"], r["cycles"],
                     r["tile_cycles"], r["bus_cycles"], result])
    return format_table(["shape MxKxN", "operands", "tiles", "cycles", "cycles/tile",
                         "bus cycles", "result"], rows)


def _check_waves_name(path):
    if path is not None and not path.endswith((".fst", ".vcd")):
        raise UsageError(f"--waves must name a .fst or .vcd file, not {path!r}")


def _passed(report):
    return report["bit_exact"] and report["timing_ok"]


# Subcommands.

def _cmd_generate(args):
    from hw.accelerator import GemmAccelerator
    from hw.netlist.generate import generate_verilog
    output = check_output_file("-o", args.output)
    output.write_text(generate_verilog(GemmAccelerator(design_config(args))))
    print(f"wrote {args.output} ({args.rows}x{args.cols} array, k_max {args.k_max})",
          file=sys.stderr)
    return 0


def _check_gemm_memory(args):
    from sim.verify import check_gemm_memory
    try:
        check_gemm_memory(args.m, args.k, args.n)
    except ValueError as error:
        raise UsageError(f"--m {args.m} --k {args.k} --n {args.n}: {error}") from None


def _cmd_verify_gemm(args):
    from sim.verify import GemmJob, verify_gemms
    config = design_config(args)
    if args.k > config.k_max:
        raise UsageError(f"--k must be at most --k-max ({config.k_max}), not {args.k}")
    _check_gemm_memory(args)
    _check_waves_name(args.waves)
    if args.waves is not None:
        check_output_file("--waves", args.waves)
    job = GemmJob(m=args.m, k=args.k, n=args.n, seed=args.seed,
                  range_bounds=_range_bounds(args))
    [report] = verify_gemms(config, [job], waves_file=args.waves)
    if args.json:
        print_json(report)
    else:
        print(_gemm_table([report]))
        if args.waves:
            print(f"waveform: {args.waves}")
    return 0 if _passed(report) else 1


def _cmd_verify_nonlinear(args):
    from hw.config import MAX_NONLINEAR_LENGTH
    from sim.verify_nonlinear import verify_nonlinear
    if args.length > MAX_NONLINEAR_LENGTH[args.unit]:
        raise UsageError(f"--length must be at most {MAX_NONLINEAR_LENGTH[args.unit]} for "
                         f"the {args.unit} unit, not {args.length}")
    _check_waves_name(args.waves)
    if args.waves is not None:
        check_output_file("--waves", args.waves)
    try:
        report = verify_nonlinear(args.unit, length=args.length, rows=args.rows,
                                  seed=args.seed, waves_file=args.waves)
    except ValueError as error:
        raise UsageError(f"--unit {args.unit}: {error}") from None
    if args.json:
        print_json(report)
    else:
        verdict = "bit-exact" if report["bit_exact"] else (
            f"{report['mismatches']} rows differ (first: {report['first_mismatch']})"
            if report["mismatches"] else "the checker counters differ")
        print(f"{args.unit} unit, rows of up to {args.length} ({report['design']}): "
              f"{args.rows} rows, {report['cycles']} cycles, {report['flags']} checker "
              f"flags, RTL against the twin: {verdict}")
    return 0 if report["bit_exact"] else 1


def _cmd_sites(args):
    from hw.accelerator import GemmAccelerator
    from hw.netlist.fault_sites import enumerate_fault_sites, sites_per_class
    from sim.cli.table import format_table
    sites = enumerate_fault_sites(GemmAccelerator(design_config(args)))
    bits = sites_per_class(sites)
    if args.json:
        print_json({"sites": [vars(site) for site in sites], "bits_per_class": bits,
                     "registers": len(sites), "bits": sum(bits.values())})
        return 0
    print(format_table(["site", "width", "class"],
                       [[site.path, site.width, site.fault_class] for site in sites]))
    print()
    print(format_table(["class", "registers", "bits"],
                       [[c, sum(s.fault_class == c for s in sites), n] for c, n in bits.items()]
                       + [["all", len(sites), sum(bits.values())]]))
    return 0


def _class_list(text):
    from hw.netlist.fault_sites import FAULT_CLASSES
    classes = tuple(part.strip() for part in text.split(",") if part.strip())
    if not classes:
        raise argparse.ArgumentTypeError(f"must name at least one class, not {text!r}")
    for fault_class in classes:
        if fault_class not in FAULT_CLASSES:
            raise argparse.ArgumentTypeError(
                f"unknown class {fault_class!r} (classes: {', '.join(FAULT_CLASSES)})")
    return classes


def _open_database(path, *, create):
    """The campaign database ``path`` (created if ``create``); a usage error if it is not one."""
    from sim.campaign.store import CampaignDatabase, NotACampaignDatabase
    try:
        return CampaignDatabase(path, create=create)
    except NotACampaignDatabase as error:
        raise UsageError(f"--db: {error}") from None


def _chosen_campaigns(database, args, *, one):
    """The ids of the campaigns ``--campaign`` selects (all, or the only one if ``one``)."""
    ids = database.campaign_ids()
    if args.campaign is not None:
        if args.campaign not in ids:
            raise UsageError(f"--campaign must be one of {ids} in {args.db}, not {args.campaign}")
        return [args.campaign]
    if not ids:
        raise UsageError(f"--db: {args.db!r} holds no campaign")
    if one and len(ids) > 1:
        raise UsageError(f"--db: {args.db!r} holds campaigns {ids}: choose one with --campaign")
    return ids


def _run_campaign(args, options, db):
    """Run a campaign with the command's executor and progress options."""
    from sim.campaign.engine import CampaignError, run_campaign
    progress = ProgressBar("inj", "injections") if progress_wanted(args) else None
    if getattr(args, "scheduler", None) is not None:
        quiet_distributed()
    try:
        return run_campaign(options, db, workers=getattr(args, "workers", None),
                            scheduler=getattr(args, "scheduler", None),
                            scheduler_timeout=getattr(args, "scheduler_timeout", 60.0),
                            progress=progress)
    except CampaignError as error:
        raise CampaignFailed(str(error)) from None
    finally:
        if progress is not None:
            progress.close()


def _cmd_campaign(args):
    from sim.campaign.engine import CampaignOptions
    from sim.campaign.workload import Workload
    from sim.cli.campaign_tables import format_summary
    config = design_config(args)
    if args.k > config.k_max:
        raise UsageError(f"--k must be at most --k-max ({config.k_max}), not {args.k}")
    _check_gemm_memory(args)
    check_executor_arguments(args)
    from sim.campaign.store import NotACampaignDatabase, check_database
    try:
        check_database(args.db)
    except NotACampaignDatabase as error:
        raise UsageError(f"--db: {error}") from None
    options = CampaignOptions(config=config, workload=Workload(args.m, args.k, args.n, args.seed),
                              seed=args.seed, injections=args.injections, classes=args.sites,
                              exhaustive_cycle=args.exhaustive_cycle,
                              range_bounds=_range_bounds(args))
    try:
        summary = _run_campaign(args, options, args.db)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def _cmd_report(args):
    from sim.cli.campaign_tables import format_summary
    from sim.cli.model_campaign import format_model_comparison, format_model_summary
    database = _open_database(args.db, create=False)
    try:
        ids = _chosen_campaigns(database, args, one=False)
        summaries = [_summary(database, campaign_id) for campaign_id in ids]
        if args.csv:
            for campaign_id in ids:
                path = args.csv if len(ids) == 1 else f"{args.csv}.{campaign_id}.csv"
                try:
                    count = database.export_csv(campaign_id, path)
                except OSError as error:
                    raise UsageError(f"--csv {path!r}: cannot write: {error.strerror}") from None
                print(f"wrote {count} experiments to {path}", file=sys.stderr)
    finally:
        database.close()
    if args.json:
        print_json(summaries[0] if len(summaries) == 1 else {"campaigns": summaries})
    else:
        print("\n\n".join(format_model_summary(summary) if _is_model(summary)
                          else format_summary(summary) for summary in summaries))
        models = [summary for summary in summaries if _is_model(summary)]
        if len(models) > 1:
            print("\n" + format_model_comparison(models))
    return 0


def _is_model(summary):
    return summary.get("description", {}).get("kind") == "model"


def _summary(database, campaign_id):
    """A tile campaign's or a model campaign's summary (``softerror vit campaign``)."""
    from sim.campaign.engine import summarize
    from sim.cosim.campaign import summarize_model_campaign
    if database.stored_campaign(campaign_id).description.get("kind") == "model":
        return summarize_model_campaign(database, campaign_id)
    return summarize(database, campaign_id)


def _record_json(record):
    """What an experiment did, for ``replay --json``."""
    return {"outcome": record.outcome, "wrong_elements": record.wrong_elements,
            "max_abs_error": record.max_abs_error, "done_cycles": record.done_cycles,
            "latent": record.latent,
            "faulty_tile": None if record.faulty_tile is None else record.faulty_tile.tolist()}


def _cmd_replay(args):
    from sim.campaign.replay import replay_experiment
    from sim.cli.table import format_table
    from sim.simulator import SimulationError
    _check_waves_name(args.waves)
    if args.waves is not None:
        check_output_file("--waves", args.waves)
    database = _open_database(args.db, create=False)
    try:
        [campaign_id] = _chosen_campaigns(database, args, one=True)
        try:
            result = replay_experiment(database, campaign_id, args.experiment,
                                       waves_file=args.waves)
        except ValueError as error:
            raise UsageError(str(error)) from None
    finally:
        database.close()
    if args.waves is not None and not Path(args.waves).is_file():
        raise SimulationError(f"--waves {args.waves!r}: the simulator wrote no waveform")
    stored, replayed = result.stored, result.replayed
    if args.json:
        print_json({"campaign_id": campaign_id, "experiment": args.experiment,
                    "site": result.site.path, "class": result.site.fault_class,
                    "bit": stored.bit, "tile": stored.tile, "cycle": stored.cycle,
                    "stored": _record_json(stored), "replayed": _record_json(replayed),
                    "agrees": result.agrees, "design_changed": result.design_changed,
                    "waves": args.waves})
        return 0 if result.agrees else 1
    print(f"Campaign {campaign_id}, experiment {args.experiment}: bit {stored.bit} of "
          f"{result.site.path} ({result.site.fault_class}) flipped in tile {stored.tile}, "
          f"cycle {stored.cycle} after START")
    print(format_table(
        ["", "outcome", "wrong elements", "max error", "DONE cycles", "latent"],
        [[name, record.outcome, "-" if record.wrong_elements is None else record.wrong_elements,
          "-" if record.max_abs_error is None else record.max_abs_error,
          "-" if record.done_cycles is None else record.done_cycles,
          "yes" if record.latent else "no"]
         for name, record in (("stored", stored), ("replayed", replayed))]))
    if result.design_changed:
        print("The design's Verilog has changed since the campaign ran.")
    print("The RTL did what the campaign stored." if result.agrees else
          "The RTL did not do what the campaign stored.")
    if args.waves is not None:
        print(f"waveform: {args.waves} (reset, the tile's golden run, then the experiment: "
              "the last toggle of run)")
    return 0 if result.agrees else 1


def _cmd_area(args):
    from hw.config import AcceleratorConfig
    from sim.area import area_overhead, nonlinear_area
    from sim.cli.table import format_table
    config = design_config(args)
    report = area_overhead(config)
    report["nonlinear"] = nonlinear_area(config)
    # The checks run during the drain and the correction on the read path, so the tile
    # controller's timing is the same for every protection; the co-verification tests hold
    # the RTL of every mode to it (DONE exactly tile_cycles(k) after START).
    base = AcceleratorConfig(config.rows, config.cols, config.k_max)
    report["extra_cycles_per_tile"] = (config.tile_cycles(config.k_max)
                                       - base.tile_cycles(config.k_max))
    if args.json:
        print_json(report)
    else:
        print(format_table(
            ["array", "abft", "range", "cells (none)", "cells", "overhead", "flip-flops",
             "extra cycles/tile"],
            [[f"{config.rows}x{config.cols}", config.abft, "yes" if config.range_check else "no",
              f"{report['cells_base']:,}", f"{report['cells']:,}",
              f"{report['overhead_pct']:.1f}%",
              f"{report['flip_flops_base']:,} -> {report['flip_flops']:,}",
              report["extra_cycles_per_tile"]]]))
        if report["nonlinear"]:
            print(format_table(
                ["unit", "length", "cells (no checkers)", "cells", "checker overhead",
                 "flip-flops"],
                [[r["unit"], r["length"], f"{r['cells_without_checkers']:,}",
                  f"{r['cells']:,}", f"{r['checker_overhead_pct']:.1f}%",
                  f"{r['flip_flops_without_checkers']:,} -> {r['flip_flops']:,}"]
                 for r in report["nonlinear"]]))
        print("Yosys generic synthesis, flattened, to gates without ABC; the operand buffers "
              "and the units' row buffers are RAM macros, not counted.")
    return 0


def _cmd_sim(args):
    """The main job: co-verify the default suite, then a short campaign; results in --out."""
    from sim.campaign.engine import CampaignOptions
    from sim.campaign.workload import Workload
    from sim.cli.campaign_tables import format_summary
    from sim.verify import default_suite, verify_gemms
    config = design_config(args)
    workload = Workload(config.rows, min(64, config.k_max), config.cols, args.seed)
    campaign = CampaignOptions(config, workload, seed=args.seed, injections=args.injections,
                               range_bounds=_range_bounds(args))
    out = check_output_directory("--out", args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports = verify_gemms(config, default_suite(config, seed=args.seed),
                           work_dir=out / "verify")
    (out / "verify.json").write_text(json.dumps(reports, indent=2))
    passed = all(_passed(r) for r in reports)
    summary = None
    if passed and args.injections:
        summary = _run_campaign(args, campaign, out / "campaign.db")
        (out / "campaign.json").write_text(json.dumps(summary, indent=2))
    nonlinear = []
    if args.nonlinear_rows:
        from hw.config import NONLINEAR_UNITS
        from sim.verify_nonlinear import verify_nonlinear
        nonlinear = [verify_nonlinear(unit, length=64, rows=args.nonlinear_rows,
                                      seed=args.seed) for unit in NONLINEAR_UNITS]
        (out / "verify_nonlinear.json").write_text(json.dumps(nonlinear, indent=2))
        passed = passed and all(report["bit_exact"] for report in nonlinear)
    model_summaries = []
    if passed and args.model_injections:
        model_summaries = _model_campaigns(args, config, out)
    if args.json:
        print_json({"bit_exact": passed, "gemms": reports, "campaign": summary,
                    "nonlinear": nonlinear, "model_campaigns": model_summaries})
    else:
        print(f"Co-verification, {config.rows}x{config.cols} array, k_max {config.k_max}: "
              "RTL (Verilator) against the PyTorch twin")
        print(_gemm_table(reports))
        print(f"{sum(map(_passed, reports))} of {len(reports)} GEMMs bit-exact; "
              f"results in {out / 'verify.json'}")
        if nonlinear:
            from sim.cli.table import format_table
            print()
            print("Nonlinear units, rows of up to 64 over the host port: RTL against the twin")
            print(format_table(["unit", "rows", "cycles", "checker flags", "result"], [
                [r["unit"], r["rows"], f"{r['cycles']:,}", r["flags"],
                 "bit-exact" if r["bit_exact"] else f"MISMATCH ({r['mismatches']} rows)"]
                for r in nonlinear]))
        if summary is not None:
            print()
            print(format_summary(summary))
            print(f"Database {out / 'campaign.db'}; summary in {out / 'campaign.json'}")
        from sim.cli.model_campaign import format_model_summary
        for model_summary in model_summaries:
            print()
            print(format_model_summary(model_summary))
        if model_summaries:
            print(f"Database {out / 'vit_campaign.db'}")
    return 0 if passed else 1


def _model_campaigns(args, config, out):
    """The ViT on the RTL, unprotected and with row and column checksums (make sim)."""
    import dataclasses

    from sim.cosim.campaign import run_model_campaign
    from sim.cosim.engine import ModelCampaignOptions
    summaries = []
    for abft in ("none", "rowcol"):
        design = dataclasses.replace(config, abft=abft, range_check=False)
        options = ModelCampaignOptions(design, model="vit", images=16, seed=args.seed,
                                       engine="rtl")
        summaries.append(run_model_campaign(options, args.model_injections,
                                            out / "vit_campaign.db",
                                            progress=progress_wanted(args)))
    return summaries


def _parser():
    parser = _Parser(prog="softerror", description=(
        "Soft-error reliability of a ViT accelerator: generate the RTL, co-verify it "
        "against its PyTorch twin, inject faults."))
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    generate = commands.add_parser("generate", help="write the accelerator's Verilog")
    _add_design_options(generate)
    generate.add_argument("-o", "--output", required=True, help="Verilog file to write")
    generate.set_defaults(handler=_cmd_generate)

    verify = commands.add_parser("verify", help="co-verify the RTL against the twin")
    verify_kinds = verify.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    gemm = verify_kinds.add_parser("gemm", help="one GEMM of random int8 operands")
    _add_design_options(gemm)
    for name in ("m", "k", "n"):
        gemm.add_argument(f"--{name}", type=int_range(1, 1 << 20), required=True)
    gemm.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    _add_range_options(gemm)
    gemm.add_argument("--waves", metavar="FILE", help="write a waveform (.fst or .vcd)")
    gemm.add_argument("--json", action="store_true", help="print one JSON object")
    gemm.set_defaults(handler=_cmd_verify_gemm)
    nonlinear = verify_kinds.add_parser(
        "nonlinear", help="random rows through a nonlinear unit (on a 2x2 array)")
    nonlinear.add_argument("--unit", required=True, choices=("softmax", "gelu", "layernorm"))
    nonlinear.add_argument("--length", type=int_range(1, 65535), default=64,
                           help="the unit's longest row (default 64)")
    nonlinear.add_argument("--rows", type=int_range(1, 100_000), default=100,
                           help="rows to run (default 100)")
    nonlinear.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    nonlinear.add_argument("--waves", metavar="FILE", help="write a waveform (.fst or .vcd)")
    nonlinear.add_argument("--json", action="store_true", help="print one JSON object")
    nonlinear.set_defaults(handler=_cmd_verify_nonlinear)

    sites = commands.add_parser("sites", help="list the design's fault sites")
    _add_design_options(sites)
    sites.add_argument("--json", action="store_true", help="print one JSON object")
    sites.set_defaults(handler=_cmd_sites)

    campaign = commands.add_parser("campaign", help="register-level fault injection on the RTL")
    _add_design_options(campaign)
    for name in ("m", "k", "n"):
        campaign.add_argument(f"--{name}", type=int_range(1, 1 << 20), required=True)
    campaign.add_argument("--injections", type=int_range(1, 10**9), default=1000)
    _add_range_options(campaign)
    campaign.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0,
                          help="seeds the operands and the sampling")
    campaign.add_argument("--db", required=True, help="SQLite file (created; resumed if it "
                                                      "holds this campaign)")
    campaign.add_argument("--sites", type=_class_list, metavar="CLASS,...",
                          help="site classes to inject into (default: all)")
    campaign.add_argument("--exhaustive-cycle", type=int_range(0, 10**9), metavar="CYCLE",
                          help="every selected bit once, at this workload cycle")
    add_executor_options(campaign)
    add_progress_option(campaign)
    campaign.add_argument("--json", action="store_true", help="print one JSON object")
    campaign.set_defaults(handler=_cmd_campaign)

    add_unit_campaign_command(commands)

    area = commands.add_parser("area", help="cells and overhead of the protection units")
    _add_design_options(area)
    area.add_argument("--json", action="store_true", help="print one JSON object")
    area.set_defaults(handler=_cmd_area)

    report = commands.add_parser("report", help="summarise a campaign database again")
    report.add_argument("--db", required=True)
    report.add_argument("--campaign", type=int_range(1, 2**62), help="campaign id")
    report.add_argument("--csv", metavar="FILE", help="export the experiments as CSV")
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(handler=_cmd_report)

    replay = commands.add_parser("replay", help="run a stored experiment again on the RTL")
    replay.add_argument("--db", required=True)
    replay.add_argument("--campaign", type=int_range(1, 2**62),
                        help="campaign id (needed when the database holds several)")
    replay.add_argument("--experiment", type=int_range(0, 10**9), required=True,
                        help="experiment number, as in report --csv")
    replay.add_argument("--waves", metavar="FILE", help="write a waveform (.vcd or .fst)")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.set_defaults(handler=_cmd_replay)

    sim = commands.add_parser("sim", help="the main job: co-verification and a campaign")
    _add_design_options(sim)
    sim.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    sim.add_argument("--injections", type=int_range(0, 10**9), default=500,
                     help="size of the campaign after co-verification (0: none)")
    sim.add_argument("--model-injections", type=int_range(0, 10**9), default=400,
                     help="upsets of the RTL-in-the-loop ViT campaign, unprotected and rowcol "
                          "(0: none; default 400 each)")
    sim.add_argument("--nonlinear-rows", type=int_range(0, 10**6), default=100,
                     help="rows co-verified on each nonlinear unit (0: none; default 100)")
    _add_range_options(sim)
    sim.add_argument("--out", default="runs", help="results directory (default runs/)")
    add_progress_option(sim)
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.set_defaults(handler=_cmd_sim)

    add_vit_commands(commands, _Parser, _add_design_options)
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="softerror: %(message)s", stream=sys.stderr)
    from sim.build import BuildError
    from sim.campaign.store import DatabaseError
    from sim.simulator import SimulationError
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        args = _parser().parse_args(argv)
        return args.handler(args)
    except UsageError as error:
        print(f"softerror: error: {error}", file=sys.stderr)
        return 2
    except (BuildError, SimulationError, DatabaseError, CampaignFailed) as error:
        print(f"softerror: {error}", file=sys.stderr)
        return 1
    except Terminated:
        print("softerror: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("softerror: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)


if __name__ == "__main__":
    sys.exit(main())
