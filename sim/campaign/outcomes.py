"""Outcome classes of a fault-injection experiment, and the rule that assigns them."""

__all__ = ["OUTCOMES", "classify"]

#: Every outcome, in reporting order (see DESIGN.md, "Fault injection").
OUTCOMES = ("masked", "corrected", "detected", "sdc", "false_alarm", "hang")


def classify(*, hang, output_wrong, alarm=False, corrected=False):
    """The outcome of one experiment.

    ``output_wrong``: the output the host read differs from the golden output.
    ``alarm``: the hardware flagged an error; ``corrected``: it also corrected it.
    """
    if hang:
        return "hang"
    if alarm:
        if output_wrong:
            return "detected"
        return "corrected" if corrected else "false_alarm"
    return "sdc" if output_wrong else "masked"
