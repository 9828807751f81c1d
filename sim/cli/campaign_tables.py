"""Terminal tables of a campaign summary (:func:`sim.campaign.engine.summarize`)."""

from sim.campaign.outcomes import OUTCOMES
from sim.cli.table import format_table

__all__ = ["format_summary"]


def _rate_cell(entry):
    low, high = entry["ci95"]
    return f"{100 * entry['rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _protection_label(design, bounds):
    parts = []
    if design.get("abft", "none") != "none":
        parts.append(f"abft={design['abft']}")
    if design.get("range_check"):
        parts.append(f"range [{bounds['lower']}, {bounds['upper']}]"
                     f"{' zero' if bounds['zero'] else ''}")
    return f" ({', '.join(parts)})" if parts else ""


def format_summary(summary):
    """The summary table and the statistical notes, for a terminal."""
    campaign = summary["campaign"]
    design, workload = campaign["design"], campaign["workload"]
    shown = [o for o in OUTCOMES if o in ("masked", "sdc", "hang") or summary["outcomes"][o]]
    rows = []
    for name, rates in summary["rates"].items():
        counts = summary["outcomes"] if name == "all" else summary["per_class"][name]
        bits = sum(summary["bits"].values()) if name == "all" else summary["bits"][name]
        rows.append([name, bits, sum(counts.values()), *(_rate_cell(rates[o]) for o in shown)])
    mode = ("exhaustive at cycle " + str(campaign["exhaustive_cycle"])
            if campaign["exhaustive_cycle"] is not None else "uniform over bits x cycles")
    leveugle = summary["leveugle"]
    lines = [
        f"Campaign {summary['campaign_id']}: {design['rows']}x{design['cols']} array"
        f"{_protection_label(design, campaign.get('range_bounds'))}, "
        f"GEMM {workload['m']}x{workload['k']}x{workload['n']} ({campaign['tiles']} "
        f"tile{'s' if campaign['tiles'] != 1 else ''} of {campaign['window_cycles']} cycles), "
        f"seed {campaign['seed']}, {mode}",
        format_table(["class", "bits", "injections", *shown], rows),
        f"Rates with 95% Wilson intervals. Population {summary['population']:,} "
        f"(bit, cycle) pairs; Leveugle et al. (DATE 2009) ask for "
        f"{leveugle['required_injections']:,} injections for a ±{100 * leveugle['margin']:.0f}% "
        f"margin at 95% confidence; these {summary['injections']:,} give "
        f"±{100 * leveugle['achieved_margin']:.2f}%.",
    ]
    design = summary["campaign"]["design"]
    if design.get("abft", "none") != "none" or design.get("range_check"):
        rows = [[name, entry["corrupting"], entry["caught"],
                 "-" if entry["coverage"] is None else
                 f"{100 * entry['coverage']:.1f}% [{100 * entry['coverage_ci95'][0]:.1f}, "
                 f"{100 * entry['coverage_ci95'][1]:.1f}]",
                 f"{100 * entry['false_alarm_rate']:.2f}%"]
                for name, entry in summary["coverage"].items()]
        lines += ["Protection: of the upsets that corrupted the output (corrected + detected + "
                  "sdc), the share caught (corrected + detected), and the false alarms:",
                  format_table(["class", "corrupting", "caught", "coverage", "false alarms"],
                               rows)]
    late = summary.get("late")
    if late and late["count"]:
        lines.append(f"{late['count']:,} runs finished late (DONE up to "
                     f"{late['latest_done_cycles']} cycles after START, a clean tile takes "
                     f"{late['tile_cycles']}): counted by their output; only runs with no DONE "
                     f"within {late['watchdog_cycles']} cycles are hangs.")
    if summary["latent"]:
        lines.append(f"{summary['latent']:,} upsets left the control state different from the "
                     "golden run's at the end of their tile (latent: later tiles may differ).")
    if summary["last_run"]:
        run = summary["last_run"]
        lines.append(f"Last run: {run['experiments']:,} injections in {run['seconds']:.1f} s "
                     f"({summary['injections_per_second']:,.0f}/s, workers: {run['workers']}).")
    return "\n".join(lines)
