"""``softerror vit campaign``: upsets in the accelerator running the real ViT or CNN.

Options are checked before any work: the model, data set, modules and site classes by the
campaign's preparation (a bad value is one line naming the option, exit status 2), the
database before it is opened for writing.
"""

import argparse
import json

from sim.cli.executor_options import (
    CampaignFailed,
    add_executor_options,
    check_executor_arguments,
)
from sim.cli.progress import add_progress_option, progress_wanted
from sim.cli.table import format_table
from sim.cli.usage import (
    UsageError,
    check_output_directory,
    design_config,
    int_range,
    print_json,
)
from sim.cosim.record import MODEL_OUTCOMES

__all__ = ["add_campaign_command", "format_model_summary", "format_model_comparison"]


def _images(text):
    if text == "all":
        return None
    return int_range(1, 10**6)(text)


def add_campaign_command(actions, design_options, choice_list):
    """Add ``vit campaign`` to the ``vit`` subcommands."""
    from hw.netlist.fault_sites import FAULT_CLASSES
    from sw.models.datasets import DATASETS
    from sw.models.training import MODELS
    campaign = actions.add_parser(
        "campaign", help="upsets in the RTL (or its twin) running the model's tiles")
    campaign.add_argument("--model", required=True, choices=MODELS)
    campaign.add_argument("--dataset", choices=DATASETS, default="digits")
    design_options(campaign)
    campaign.add_argument("--engine", choices=("rtl", "twin"), default="rtl",
                          help="rtl: Verilator; twin: the RTL-derived fault model (faster)")
    campaign.add_argument("--operation-level", action=argparse.BooleanOptionalAction,
                          help="also run the paper's operation-level model on every upset, "
                               "one more inference each (default: with --engine rtl only)")
    campaign.add_argument("--injections", type=int_range(1, 10**8), default=1000)
    campaign.add_argument("--images", type=_images, default=32,
                          help="test images (a seeded choice), or all (default 32)")
    campaign.add_argument("--modules", type=lambda text: [m.strip() for m in text.split(",")
                                                          if m.strip()],
                          help="GEMM modules to strike, e.g. qkv,fc2 (default: all)")
    campaign.add_argument("--sites", type=choice_list("site class", FAULT_CLASSES),
                          help="site classes (default: all; twin: operand,accumulator,output)")
    campaign.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    campaign.add_argument("--db", required=True, help="SQLite database (resumable)")
    add_executor_options(campaign)
    add_progress_option(campaign)
    campaign.add_argument("--json", action="store_true", help="print one JSON object")
    campaign.add_argument("--out", metavar="DIR", help="write report.md, the PE heatmap PNG "
                                                       "and campaign.json")
    campaign.set_defaults(handler=_cmd_campaign)


def _cmd_campaign(args):
    from sim.campaign.executors import CampaignError
    from sim.campaign.store import DatabaseError, check_database
    from sim.cosim.campaign import run_model_campaign
    from sim.cosim.engine import ModelCampaignOptions
    check_executor_arguments(args)
    out = None if args.out is None else check_output_directory("--out", args.out)
    try:
        check_database(args.db)
    except DatabaseError as error:
        raise UsageError(f"--db: {error}") from None
    config = design_config(args)
    options = ModelCampaignOptions(
        config, model=args.model, dataset=args.dataset, images=args.images, seed=args.seed,
        modules=tuple(args.modules) if args.modules else None,
        classes=tuple(args.sites) if args.sites else None, engine=args.engine,
        operation_level=args.operation_level)
    progress = progress_wanted(args)
    try:
        summary = run_model_campaign(options, args.injections, args.db, workers=args.workers,
                                     scheduler=args.scheduler,
                                     scheduler_timeout=args.scheduler_timeout,
                                     progress=progress)
    except (TypeError, ValueError) as error:
        raise UsageError(_option_message(error)) from None
    except CampaignError as error:
        raise CampaignFailed(str(error)) from None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_report(summary, out)
    if args.json:
        print_json(summary)
    else:
        print(format_model_summary(summary))
    return 0


def _option_message(error):
    """The error's message after the option it names (once: a message that already starts
    with the parameter's name and a colon drops them)."""
    text = str(error)
    for name, option in (("images", "--images"), ("modules", "--modules"),
                         ("nonlinear_length", "--nonlinear-length"),
                         ("sites", "--sites"), ("the twin engine", "--sites")):
        if text.startswith(f"{name}: "):
            return f"{option}: {text[len(name) + 2:]}"
        if text.startswith(name):
            return f"{option}: {text}"
    return text


def _interval(rate):
    return f"{100 * rate['rate']:.2f}% [{100 * rate['low']:.2f}, {100 * rate['high']:.2f}]"


def format_model_summary(summary):
    """The module x outcome table, the cross-check against the operation-level model."""
    description = summary["description"]
    design = description["config"]
    if "units" in description:
        checkers = "with" if design["nonlinear_checkers"] else "without"
        work = (f"{description['rows']} rows of the {', '.join(description['units'])} "
                f"units {checkers} checkers ({description['inference_cycles']} busy cycles "
                f"per inference, {description['bits']} bits)")
    else:
        work = (f"{description['passes']} tile passes ({description['inference_cycles']} "
                f"cycles per inference, {description['bits']} bits)")
    lines = [f"{description['model']} on {description['dataset']}, "
             f"{design['rows']}x{design['cols']} array, abft {design['abft']}, engine "
             f"{description['engine']}: {summary['injections']} upsets over {work}"]
    header = ["module", *MODEL_OUTCOMES, "model SDC rate [95%]", "margin loss"]
    rows = []
    for module, counts in summary["per_module"].items():
        check = summary["operation_level_cross_check"][module]
        rows.append([module, *(counts[o] for o in MODEL_OUTCOMES),
                     _interval(check["model_sdc"]),
                     f"{summary['margin_loss'][module]['mean']:.4f}"])
    rows.append(["all", *(summary["outcomes"][o] for o in MODEL_OUTCOMES),
                 _interval(summary["model_sdc_rate"]), ""])
    lines += ["", format_table(header, rows), ""]
    checks = {module: check for module, check in summary["operation_level_cross_check"].items()
              if check["operation_level_sdc"] is not None}
    if checks:
        header = ["module", "hardware SDC [95%]", "operation-level SDC [95%]", "agree"]
        lines.append(format_table(header, [
            [module, _interval(check["model_sdc"]), _interval(check["operation_level_sdc"]),
             "yes" if check["agree"] else "no"] for module, check in checks.items()]))
    else:
        lines.append("operation-level model: not run (--operation-level runs it)")
    prediction = summary["prediction"]
    lines += ["", f"RTL-derived model: {prediction['equal']} equal, {prediction['mismatch']} "
                  f"mismatches, {prediction['not_modeled']} not modeled; "
                  f"{summary['recomputations']} recomputations; clean accuracy "
                  f"{100 * summary['clean_accuracy']:.1f}%"]
    if summary["injections_per_second"]:
        lines.append(f"last run: {summary['injections_per_second']:.0f} upsets/s")
    return "\n".join(lines)


def _label(summary):
    description = summary["description"]
    design = description["config"]
    if "units" in description:
        checkers = "checkers" if design["nonlinear_checkers"] else "no checkers"
        return (f"{description['model']} {'+'.join(description['units'])}, {checkers} "
                f"({description['engine']})")
    protection = design["abft"] + ("+range" if design["range_check"] else "")
    return f"{description['model']} {protection} ({description['engine']})"


def format_model_comparison(summaries):
    """Model campaigns side by side: the model SDC rate per module and the outcome shares."""
    labels = [_label(summary) for summary in summaries]
    modules = sorted({module for summary in summaries for module in summary["per_module"]})
    rows = []
    for module in modules:
        row = [module]
        for summary in summaries:
            check = summary["operation_level_cross_check"].get(module)
            row.append("-" if check is None else _interval(check["model_sdc"]))
        rows.append(row)
    rows.append(["all", *(_interval(summary["model_sdc_rate"]) for summary in summaries)])
    lines = ["model SDC rate per module [95%]", format_table(["module", *labels], rows), "",
             "mean loss of the correct class's logit margin per upset [95%]",
             format_table(["module", *labels], [
                 [module, *(_mean_interval(summary["margin_loss"].get(module))
                            for summary in summaries)] for module in modules]), "",
             "SDC-prone bit-cycles per inference: SDC rate x bits x busy cycles [95%]",
             format_table(["module", *labels], [
                 [module, *(_exposed(summary, module) for summary in summaries)]
                 for module in modules]), "",
             "outcomes (share of upsets)"]
    rows = [[outcome, *(f"{100 * summary['outcomes'][outcome] / summary['injections']:.2f}%"
                        for summary in summaries)] for outcome in MODEL_OUTCOMES]
    rows.append(["upsets", *(summary["injections"] for summary in summaries)])
    lines.append(format_table(["outcome", *labels], rows))
    return "\n".join(lines)


def _mean_interval(entry):
    if entry is None:
        return "-"
    return f"{entry['mean']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]"


def _exposed(summary, module):
    """``rate x bit_cycles`` of a module, with the rate's interval (``-``: not struck)."""
    check = summary["operation_level_cross_check"].get(module)
    exposure = summary.get("exposure", {}).get(module)
    if check is None or exposure is None:
        return "-"
    rate, size = check["model_sdc"], exposure["bit_cycles"]
    return f"{rate['rate'] * size:,.0f} [{rate['low'] * size:,.0f}, {rate['high'] * size:,.0f}]"


def write_report(summary, out):
    """``campaign.json``, ``pe_sdc.png`` (model SDC rate per PE) and ``report.md``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    (out / "campaign.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    design = summary["description"]["config"]
    rate = np.full((design["rows"], design["cols"]), np.nan)
    for position, counts in summary["per_pe"].items():
        i, j = map(int, position.split(","))
        total = sum(counts.values())
        rate[i, j] = (counts["sdc"] + counts["tolerated"]) / total if total else np.nan
    figure, axes = plt.subplots(figsize=(5, 4))
    image = axes.imshow(rate, cmap="viridis")
    axes.set_xlabel("PE column")
    axes.set_ylabel("PE row")
    axes.set_title("wrong tile kept (tolerated + SDC), per PE")
    figure.colorbar(image)
    figure.savefig(out / "pe_sdc.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    (out / "report.md").write_text(
        "# Model-level campaign\n\n```\n" + format_model_summary(summary) + "\n```\n\n"
        "![tolerated + SDC per PE](pe_sdc.png)\n")
