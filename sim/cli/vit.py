"""The model-level subcommands: ``softerror train`` and ``softerror vit eval|analyze|protect``.

They run on the PyTorch side only (no RTL): the quantized ViT and CNN of ``sw/`` on the
accelerator twin, with software fault injection. Option parsing and errors follow
``sim/cli/main.py``: a bad value is one line naming the option, exit status 2.
"""

import argparse
import json
import sys

from sim.cli.model_campaign import add_campaign_command
from sim.cli.usage import UsageError, check_output_directory, int_range, print_json

__all__ = ["add_commands"]

_GRANULARITIES = ("model", "layer", "module", "patch")


def _choice_list(name, choices, all_means=None):
    """A comma-separated subset of ``choices`` (``all`` for every one, when allowed)."""
    def parse(text):
        values = [value.strip() for value in text.split(",") if value.strip()]
        if all_means and values == ["all"]:
            return list(all_means)
        bad = [value for value in values if value not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"{bad[0] if bad else text!r} is not a {name} (choose from "
                f"{', '.join(choices)}{', all' if all_means else ''})")
        return list(dict.fromkeys(values))
    return parse


def _bit_error_rates(text):
    """``1e-6`` or ``1e-7,1e-6,1e-5``: rates between 0 and 1."""
    rates = []
    for item in text.split(","):
        try:
            rate = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item.strip()!r} is not a number") from None
        if not 0 <= rate <= 1:
            raise argparse.ArgumentTypeError(f"bit error rate must be from 0 to 1, not {item}")
        rates.append(rate)
    return rates


def _percent(value):
    return f"{100 * value:.1f}%"


def _out_dir(args):
    """``--out`` as a ``Path``, checked before any work (``None`` without ``--out``)."""
    return check_output_directory("--out", args.out) if args.out else None


def _checkpoint_errors():
    """What loading a checkpoint raises for a bad ``--checkpoint-dir`` (a usage error)."""
    from sw.models.training import CheckpointError
    return FileNotFoundError, CheckpointError


def _check_rates(args):
    """Refuse a ``--ber`` whose flips would not fit in memory, before any model runs."""
    from sw.analysis.vulnerability import check_fault_budget
    from sw.inject.bit_flips import TooManyFlips
    for model in args.model:
        try:
            check_fault_budget(model, args.dataset, args.ber,
                               targets=getattr(args, "targets", None),
                               checkpoint_dir=args.checkpoint_dir)
        except TooManyFlips as error:
            raise UsageError(f"--ber: {error}") from None


def _progress(args):
    """Progress bars unless ``--no-progress`` or stderr is not a terminal."""
    return not args.no_progress and sys.stderr.isatty()


def _bad_checkpoint(error):
    return UsageError(error.args[0])


# softerror train

def _cmd_train(args):
    from sw.models.training import CHECKPOINT_DIR, train
    check_output_directory("--checkpoint-dir", args.checkpoint_dir or CHECKPOINT_DIR)
    result = train(args.model, args.dataset, args.seed, checkpoint_dir=args.checkpoint_dir)
    report = {"model": args.model, "dataset": args.dataset, "seed": args.seed,
              "test_accuracy": result.test_accuracy, "seconds": result.seconds,
              "checkpoint": str(result.checkpoint)}
    if args.json:
        print_json(report)
    else:
        print(f"{args.model} on {args.dataset}: test accuracy {_percent(result.test_accuracy)} "
              f"after {result.seconds:.1f} s; wrote {result.checkpoint}")
    return 0


# softerror vit eval

def _cmd_eval(args):
    from sw.analysis.vulnerability import evaluate
    if args.nonlinear != "float" and args.model != "vit":
        raise UsageError(f"--nonlinear {args.nonlinear}: the {args.model} has no softmax, "
                         "GELU or LayerNorm (integer units are for --model vit)")
    try:
        report = evaluate(args.model, args.dataset, args.checkpoint_dir,
                          nonlinear=args.nonlinear)
    except _checkpoint_errors() as error:
        raise _bad_checkpoint(error) from None
    if args.json:
        print_json(report)
    elif args.nonlinear == "float":
        print(f"{args.model} on {args.dataset}: float {_percent(report['float_accuracy'])}, "
              f"int8 on the accelerator twin {_percent(report['int8_accuracy'])} "
              "(test set)")
    else:
        print(f"{args.model} on {args.dataset}: float {_percent(report['float_accuracy'])}, "
              f"int8 on the accelerator twin {_percent(report['int8_accuracy'])}, "
              f"with integer softmax, GELU and LayerNorm "
              f"{_percent(report['int_nonlinear_accuracy'])} (test set)")
    return 0


# softerror vit analyze

def _analysis_table(result):
    from sim.cli.table import format_table
    rows = [[entry["unit"], f"{entry['ber']:g}", _percent(entry["accuracy"]),
             _percent(entry["sdc_rate"]),
             f"[{_percent(entry['sdc_ci'][0])}, {_percent(entry['sdc_ci'][1])}]",
             f"{entry['flips_per_inference']:.2f}"]
            for entry in result["results"]]
    return format_table(["unit", "BER", "accuracy", "SDC rate", "SDC 95% CI", "flips/inference"],
                        rows)


def _cmd_analyze(args):
    from sw.analysis.vulnerability import analyze, write_report
    out = _out_dir(args)
    analyses = []
    try:
        _check_rates(args)
        for model in args.model:
            for granularity in args.granularity:
                analyses.append(analyze(model, args.dataset, granularity, args.ber,
                                        args.trials, args.seed, targets=args.targets,
                                        checkpoint_dir=args.checkpoint_dir,
                                        progress=_progress(args)))
    except _checkpoint_errors() as error:
        raise _bad_checkpoint(error) from None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "analysis.json").write_text(json.dumps(analyses, indent=2))
        from sw.models.training import MODELS
        by_model = {model: [a for a in analyses if a["model"] == model] for model in MODELS}
        # Each analysis already measured the float and the fault-free int8 accuracy.
        accuracies = [{"model": model, "dataset": args.dataset,
                       "float_accuracy": by_model[model][0]["float_accuracy"],
                       "int8_accuracy": by_model[model][0]["clean_accuracy"]}
                      for model in args.model]
        write_report(out, by_model["vit"] or None, by_model["cnn"] or None, accuracies)
    if args.json:
        print_json(analyses[0] if len(analyses) == 1 else {"analyses": analyses})
        return 0
    for result in analyses:
        print(f"{result['model']} on {result['dataset']}, granularity {result['granularity']}: "
              f"clean int8 accuracy {_percent(result['clean_accuracy'])}, "
              f"{result['trials']} pass(es) over the test set per unit and rate, "
              f"{result['inferences_per_second']:,.0f} faulty inferences/s")
        print(_analysis_table(result))
        print()
    if args.out:
        print(f"Plots, report.md and analysis.json in {args.out}")
    return 0


# softerror vit protect

def _protection_tables(result, goal):
    from sim.cli.table import format_table
    rows = [[entry["protection"], f"{entry['ber']:g}", _percent(entry["accuracy"]),
             _percent(entry["sdc_rate"]),
             f"[{_percent(entry['sdc_ci'][0])}, {_percent(entry['sdc_ci'][1])}]",
             f"{entry['flips_per_inference']:.1f}", f"{entry['detections']:,}",
             f"{entry['recomputed_blocks']:,}", f"{entry['clamped']:,}"]
            for entry in result["results"]]
    lines = [format_table(["protection", "BER", "accuracy", "SDC rate", "SDC 95% CI",
                           "flips/inference", "ABFT alarms", "blocks recomputed", "clamped"],
                          rows), ""]
    lines.append(format_table(
        ["protection", "fault-free accuracy", "false alarms (clean test set)",
         "check ops (% of MACs)"],
        [[name, _percent(free["accuracy"]), f"{free['false_alarms']:,}",
          f"{result['overhead'][name]:.3f}%"] for name, free in result["fault_free"].items()]))
    if goal is not None:
        lines.append("")
        if goal["ber"] is None:
            lines.append("No rate of the sweep costs the unprotected model 20 points; "
                         "add a higher --ber to check the goal.")
        else:
            lines.append(
                f"Goal at BER {goal['ber']:g} (unprotected {_percent(goal['unprotected_accuracy'])}"
                f"): {goal['protection']} {_percent(goal['protected_accuracy'])} against "
                f"{_percent(goal['fault_free_accuracy'])} fault-free, "
                f"{'within' if goal['within_tolerance'] else 'NOT within'} 1 point; overhead "
                f"{goal['overhead_percent']:.3f}% of MACs "
                f"({'under' if goal['under_budget'] else 'OVER'} 5%).")
    return "\n".join(lines)


def _cmd_protect(args):
    from sw.analysis.protection import evaluate_protection, protection_goal, write_protection_plot
    out = _out_dir(args)
    evaluations, goals = [], []
    try:
        _check_rates(args)
        for model in args.model:
            result = evaluate_protection(model, args.dataset, args.protect, args.ber,
                                         args.trials, args.seed,
                                         checkpoint_dir=args.checkpoint_dir,
                                         progress=_progress(args))
            evaluations.append(result)
            both = {"none", "abft+range"} <= set(args.protect)
            goals.append(protection_goal(result) if both else None)
    except _checkpoint_errors() as error:
        raise _bad_checkpoint(error) from None
    for result, goal in zip(evaluations, goals):
        result["goal"] = goal
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "protection.json").write_text(json.dumps(evaluations, indent=2))
        write_protection_plot(evaluations, out / "protection_accuracy_vs_ber.png")
    if args.json:
        print_json(evaluations[0] if len(evaluations) == 1 else {"evaluations": evaluations})
        return 0
    for result, goal in zip(evaluations, goals):
        print(f"{result['model']} on {result['dataset']}: fault-free int8 accuracy "
              f"{_percent(result['clean_accuracy'])}, {result['trials']} pass(es) over the "
              "test set per protection and rate")
        print(_protection_tables(result, goal))
        print()
    if args.out:
        print(f"Plot and protection.json in {args.out}")
    return 0


def _add_progress_option(parser):
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown by default when stderr is a terminal)")


def add_commands(commands, parser_class, design_options):
    """Add ``train`` and ``vit`` to the ``softerror`` subcommands (``design_options`` adds
    the accelerator's options to a parser, for ``vit campaign``)."""
    from sw.inject.operation import TARGETS
    from sw.models.datasets import DATASETS
    from sw.models.quantized_vit import NONLINEAR_MODES
    from sw.models.training import MODELS

    def model_options(parser, many=False):
        parser.add_argument("--model", required=True,
                            type=_choice_list("model", MODELS) if many else None,
                            choices=None if many else MODELS,
                            help="vit or cnn" + (" (or vit,cnn)" if many else ""))
        parser.add_argument("--dataset", choices=DATASETS, default="digits",
                            help="digits (8x8, default) or mnist5k (28x28)")
        parser.add_argument("--checkpoint-dir", metavar="DIR",
                            help="where checkpoints are (default: the shipped ones, "
                                 "sw/models/checkpoints)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    train = commands.add_parser("train", help="train a shipped model again (checkpoint)")
    model_options(train)
    train.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    train.set_defaults(handler=_cmd_train)

    vit = commands.add_parser("vit", help="the quantized ViT and CNN on the accelerator twin")
    actions = vit.add_subparsers(dest="action", required=True, parser_class=parser_class)
    evaluate = actions.add_parser("eval", help="float and int8 test accuracy")
    model_options(evaluate)
    evaluate.add_argument("--nonlinear", choices=NONLINEAR_MODES, default="float",
                          help="int: also the integer-only ViT, softmax, GELU and LayerNorm "
                               "on the integer units (default float)")
    evaluate.set_defaults(handler=_cmd_eval)

    analyze = actions.add_parser("analyze", help="vulnerability under software fault injection")
    model_options(analyze, many=True)
    analyze.add_argument("--granularity", type=_choice_list("granularity", _GRANULARITIES,
                                                            all_means=_GRANULARITIES),
                         default=["module"], help="model, layer, module, patch, a list, or all")
    analyze.add_argument("--ber", type=_bit_error_rates, default=[1e-7, 1e-6, 1e-5],
                         help="bit error rate, or a comma-separated sweep")
    analyze.add_argument("--trials", type=int_range(1, 10**6), default=3,
                         help="passes over the test set per unit and rate (default 3)")
    analyze.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    analyze.add_argument("--targets", type=_choice_list("target", TARGETS),
                         help="representations to hit (default all: "
                              f"{', '.join(TARGETS)})")
    analyze.add_argument("--out", metavar="DIR", help="write plots, report.md, analysis.json")
    _add_progress_option(analyze)
    analyze.set_defaults(handler=_cmd_analyze)

    from sw.protect.policy import PROTECTIONS
    protect = actions.add_parser("protect", help="LB-ABFT and range protection under faults")
    model_options(protect, many=True)
    protect.add_argument("--protect", type=_choice_list("protection", PROTECTIONS,
                                                        all_means=PROTECTIONS),
                         default=list(PROTECTIONS),
                         help="none, abft, range, abft+range, a list, or all (default)")
    protect.add_argument("--ber", type=_bit_error_rates, default=[1e-7, 1e-6, 3e-6, 1e-5],
                         help="bit error rate, or a comma-separated sweep")
    protect.add_argument("--trials", type=int_range(1, 10**6), default=3,
                         help="passes over the test set per protection and rate (default 3)")
    protect.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0)
    protect.add_argument("--out", metavar="DIR", help="write the plot and protection.json")
    _add_progress_option(protect)
    protect.set_defaults(handler=_cmd_protect)

    add_campaign_command(actions, design_options, _choice_list)
