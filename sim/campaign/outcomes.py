"""Outcome classes of a fault-injection experiment, the rule that assigns them, and the
watchdog bound that tells a late tile from one that never finishes."""

__all__ = ["OUTCOMES", "STEP_COUNTER", "classify", "step_width", "watchdog_cycles"]

#: Every outcome, in reporting order (see DESIGN.md, "Fault injection").
OUTCOMES = ("masked", "corrected", "detected", "sdc", "false_alarm", "hang")

#: The fault site of the tile controller's sequencing counter; its width sets the watchdog.
STEP_COUNTER = "controller.step"


def classify(*, hang, output_wrong, alarm=False, corrected=False):
    """The outcome of one experiment.

    ``hang``: DONE never came within :func:`watchdog_cycles`. A run that finished, on time
    or late, is classified by its output like any other.
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


def step_width(sites):
    """Bits of the :data:`STEP_COUNTER` among a design's fault ``sites``."""
    [width] = [site.width for site in sites if site.path == STEP_COUNTER]
    return width


def watchdog_cycles(tile_cycles, step_width):
    """Cycles after START within which DONE must come, or the run is a ``hang``.

    A stated bound, chosen so that a tile one upset delays but does not stop is never
    called a hang. The controller leaves COMPUTE, then DRAIN, when its step counter
    (:data:`STEP_COUNTER`, ``step_width`` bits) reaches a target. One upset can

    * push the counter past its target (or the K register's target past the counter): it
      counts to ``2**step_width - 1``, wraps to 0 and counts to the target, at most
      ``2**step_width`` cycles more than a clean tile;
    * send the controller from DRAIN back to COMPUTE: at most one tile more.

    So a tile that finishes does so within ``2 * tile_cycles + 2**step_width`` cycles
    (8x8 array, K = 256: 2 x 279 + 512 = 1070; upsets of the step counter that wrap
    finish at up to 791). Past the bound the controller sits in a state with no exit or
    chases a target its counter cannot reach: it never finishes.
    """
    return 2 * tile_cycles + (1 << step_width)
