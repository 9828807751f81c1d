"""The saturating per-check row counters of the nonlinear units (``flag_counts``)."""

from hw.validation import check_int

__all__ = ["DEFAULT_COUNT_BITS", "MAX_COUNT_BITS", "check_count_bits", "count_row"]

#: Default width of each counter: rows that raised a check, saturating at 255.
DEFAULT_COUNT_BITS = 8
MAX_COUNT_BITS = 32


def check_count_bits(unit, count_bits):
    """``count_bits`` if it is an integer from 1 to 32, else ``TypeError`` naming ``unit``."""
    return check_int(f"{unit} count_bits", count_bits, 1, MAX_COUNT_BITS)


def count_row(m, count, raised):
    """Add one to the counter register ``count`` at the clock edge where ``raised`` is high,
    unless it is full (``2^w - 1``: the incrementer's carry out, no comparator)."""
    incremented = count + 1
    with m.If(raised & ~incremented[len(count)]):
        m.d.sync += count.eq(incremented)
