"""The ``softerror`` command line.

Library code raises; this module turns a bad option into one line on stderr and exit
status 2, a failed check into exit status 1, and success into 0. Every subcommand that
reports numbers accepts ``--json`` and then prints exactly one JSON object on stdout.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]


class UsageError(Exception):
    """A bad command-line value; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _int_range(low, high):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, "
                                             f"not {value}")
        return value
    return parse


def _add_design_options(parser):
    from hw.accelerator import MAX_K
    from hw.systolic_array import MAX_DIMENSION
    parser.add_argument("--rows", type=_int_range(1, MAX_DIMENSION), default=8,
                        help="array rows (default 8)")
    parser.add_argument("--cols", type=_int_range(1, MAX_DIMENSION), default=8,
                        help="array columns (default 8)")
    parser.add_argument("--k-max", type=_int_range(1, MAX_K), default=256,
                        help="operand buffer depth, the longest K of a tile (default 256)")


def _design(args):
    from sim.build import DesignConfig
    return DesignConfig(rows=args.rows, cols=args.cols, k_max=args.k_max)


def _print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))


def _gemm_table(reports):
    from sim.table import format_table
    rows = []
    for r in reports:
        result = "bit-exact" if r["bit_exact"] else (
            "HANG" if r["hang"] else f"MISMATCH ({r['mismatches']} elements)")
        if r["bit_exact"] and not r["timing_ok"]:
            result = "bit-exact, TIMING MISMATCH"
        operands = ("given" if r["operands_file"] else
                    f"seed {r['seed']}, {r['extreme_fraction']:.0%} at -128/127")
        rows.append([f"{r['m']}x{r['k']}x{r['n']}", operands, r["tiles"], r["cycles"],
                     r["tile_cycles"], r["bus_cycles"], result])
    return format_table(["shape MxKxN", "operands", "tiles", "cycles", "cycles/tile",
                         "bus cycles", "result"], rows)


def _passed(report):
    return report["bit_exact"] and report["timing_ok"]


# Subcommands.

def _cmd_generate(args):
    from hw.generate import generate_verilog
    verilog = generate_verilog(_design(args).accelerator())
    try:
        Path(args.output).write_text(verilog)
    except OSError as error:
        raise UsageError(f"-o {args.output!r}: cannot write: {error.strerror}") from None
    print(f"wrote {args.output} ({args.rows}x{args.cols} array, k_max {args.k_max})",
          file=sys.stderr)
    return 0


def _cmd_verify_gemm(args):
    from sim.verify import GemmJob, verify_gemms
    config = _design(args)
    if args.k > config.k_max:
        raise UsageError(f"--k must be at most --k-max ({config.k_max}), not {args.k}")
    if args.waves is not None and not args.waves.endswith((".fst", ".vcd")):
        raise UsageError(f"--waves must name a .fst or .vcd file, not {args.waves!r}")
    job = GemmJob(m=args.m, k=args.k, n=args.n, seed=args.seed)
    [report] = verify_gemms(config, [job], waves_file=args.waves)
    if args.json:
        _print_json(report)
    else:
        print(_gemm_table([report]))
        if args.waves:
            print(f"waveform: {args.waves}")
    return 0 if _passed(report) else 1


def _cmd_sim(args):
    """The main job: co-verify the default suite and write the results under --out."""
    from sim.verify import default_suite, verify_gemms
    config = _design(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports = verify_gemms(config, default_suite(config, seed=args.seed),
                           work_dir=out / "verify")
    (out / "verify.json").write_text(json.dumps(reports, indent=2))
    passed = all(_passed(r) for r in reports)
    if args.json:
        _print_json({"bit_exact": passed, "gemms": reports})
    else:
        print(f"Co-verification, {config.rows}x{config.cols} array, k_max {config.k_max}: "
              "RTL (Verilator) against the PyTorch twin")
        print(_gemm_table(reports))
        print(f"{sum(map(_passed, reports))} of {len(reports)} GEMMs bit-exact; "
              f"results in {out / 'verify.json'}")
    return 0 if passed else 1


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
        gemm.add_argument(f"--{name}", type=_int_range(1, 1 << 20), required=True)
    gemm.add_argument("--seed", type=_int_range(0, 2**63 - 1), default=0)
    gemm.add_argument("--waves", metavar="FILE", help="write a waveform (.fst or .vcd)")
    gemm.add_argument("--json", action="store_true", help="print one JSON object")
    gemm.set_defaults(handler=_cmd_verify_gemm)

    sim = commands.add_parser("sim", help="the main job: co-verification suite")
    _add_design_options(sim)
    sim.add_argument("--seed", type=_int_range(0, 2**63 - 1), default=0)
    sim.add_argument("--out", default="runs", help="results directory (default runs/)")
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.set_defaults(handler=_cmd_sim)
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="softerror: %(message)s", stream=sys.stderr)
    from sim.build import BuildError
    from sim.simulator import SimulationError
    try:
        args = _parser().parse_args(argv)
        return args.handler(args)
    except UsageError as error:
        print(f"softerror: error: {error}", file=sys.stderr)
        return 2
    except (BuildError, SimulationError) as error:
        print(f"softerror: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("softerror: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
