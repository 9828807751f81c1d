"""``softerror campaign-nonlinear``: fault injection on a nonlinear unit's registers.

Named after ``softerror verify nonlinear`` (the same units, the same driver) rather than
as a subcommand of ``campaign``, whose GEMM options (``--m --k --n --db``) it does not
take. Option errors follow ``sim/cli/main.py``: one line naming the option, exit status 2.
"""

from sim.cli.executor_options import CampaignFailed
from sim.cli.progress import ProgressBar, add_progress_option, progress_wanted
from sim.cli.table import format_table
from sim.cli.usage import UsageError, int_range, print_json

__all__ = ["add_unit_campaign_command", "format_unit_summary"]


def _percent(entry):
    """``12.3% [10.1, 14.8]``: a rate and its 95% interval; ``-`` without a rate."""
    if entry["rate"] is None:
        return "-"
    low, high = entry["ci95"]
    return f"{100 * entry['rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _bits(summary):
    """``41.0 [37.4, 44.9]``: the SDC rate in bits (rate times the unit's bits)."""
    entry = summary["sdc_bits"]
    if entry["value"] is None:
        return "-"
    low, high = entry["ci95"]
    return f"{entry['value']:.1f} [{low:.1f}, {high:.1f}]"


def format_unit_summary(summary):
    """The summary of :func:`sim.nonlinear_campaign.run_unit_campaign` for a terminal."""
    from sim.nonlinear_campaign import UNIT_OUTCOMES
    checkers = "with its checkers" if summary["checkers"] else "without checkers"
    lines = [
        f"{summary['unit']} unit {checkers} ({summary['design']}): {summary['injections']:,}"
        f" upsets, seed {summary['seed']}, {summary['rows']} rows of {summary['length']}, "
        f"uniform over {summary['bits']:,} flip-flop bits x cycles 1 .. latency "
        f"({summary['latency'][0]}) of a row",
        format_table(["outcome", "count", "rate [95%]"],
                     [[outcome, summary["outcomes"][outcome],
                       _percent(summary["rates"][outcome])] for outcome in UNIT_OUTCOMES]),
        f"SDC rate {_percent(summary['sdc_rate'])}, {_bits(summary)} of the unit's "
        f"{summary['bits']} bits' worth; false alarms {_percent(summary['false_alarm_rate'])}",
        f"Detection coverage (detected / (detected + sdc), of "
        f"{summary['coverage']['corrupting']}): {_percent(summary['coverage'])}. "
        "Intervals: 95% Wilson.",
        "",
        format_table(["register", "bits", "injections", *UNIT_OUTCOMES],
                     [[path, entry["bits"], entry["injections"],
                       *(entry[outcome] for outcome in UNIT_OUTCOMES)]
                      for path, entry in summary["per_register"].items()]),
    ]
    if summary["checkers"]:
        lines.append("Checker flags raised: " + ", ".join(
            f"{name} {count}" for name, count in summary["checker_flags"].items()))
    if summary["late"] or summary["errors"]:
        lines.append(f"{summary['late']} rows finished after their latency (by the "
                     f"watchdog: counted by their codes); ERROR read in {summary['errors']}.")
    twin = summary["twin_check"]
    lines.append(f"Twin under the same upset (stage registers in their stage cycle): "
                 f"{twin['agree']} of {twin['experiments']} experiments agree with the RTL.")
    if summary["injections_per_second"] is not None:
        lines.append(f"{summary['injections']:,} injections in {summary['seconds']:.1f} s "
                     f"({summary['injections_per_second']:,.0f}/s, one simulator).")
    return "\n".join(lines)


def _cmd_unit_campaign(args):
    from hw.config import MAX_NONLINEAR_LENGTH
    from sim.nonlinear_campaign import GoldenMismatch, run_unit_campaign
    if args.length > MAX_NONLINEAR_LENGTH[args.unit]:
        raise UsageError(f"--length must be at most {MAX_NONLINEAR_LENGTH[args.unit]} for "
                         f"the {args.unit} unit, not {args.length}")
    progress = ProgressBar("inj", "injections") if progress_wanted(args) else None
    try:
        summary = run_unit_campaign(args.unit, length=args.length, checkers=args.checkers,
                                    injections=args.injections, seed=args.seed,
                                    rows=args.rows, progress=progress)
    except ValueError as error:
        raise UsageError(f"--unit {args.unit}: {error}") from None
    except GoldenMismatch as error:
        raise CampaignFailed(str(error)) from None
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print_json(summary)
    else:
        print(format_unit_summary(summary))
    twin = summary["twin_check"]
    return 0 if twin["agree"] == twin["experiments"] else 1


def add_unit_campaign_command(commands):
    """Add ``campaign-nonlinear`` to the ``softerror`` subcommands."""
    from hw.config import NONLINEAR_UNITS
    parser = commands.add_parser(
        "campaign-nonlinear", help="register-level fault injection on a nonlinear unit, "
                                   "outcomes per row (on a 2x2 array)")
    parser.add_argument("--unit", required=True, choices=NONLINEAR_UNITS)
    parser.add_argument("--length", type=int_range(1, 65535), default=64,
                        help="the unit's longest row, and the rows' length (default 64)")
    parser.add_argument("--no-checkers", dest="checkers", action="store_false",
                        help="build the unit without its checkers")
    parser.add_argument("--injections", type=int_range(1, 10**9), default=1000,
                        help="upsets, one per row run (default 1000)")
    parser.add_argument("--rows", type=int_range(1, 10_000), default=8,
                        help="rows of the workload (default 8)")
    parser.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0,
                        help="seeds the parameters, the rows and the sampling")
    add_progress_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_cmd_unit_campaign)
