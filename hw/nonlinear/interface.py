"""The host interface every nonlinear unit shows (docs/nonlinear.md, "Common unit
interface"): its ports and its saturating per-check row counters."""

from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["DEFAULT_COUNT_BITS", "MAX_COUNT_BITS", "unit_members", "check_count_bits",
           "count_row", "NonlinearUnit"]

#: Default width of each counter of ``flag_counts``: rows that raised a check, up to 255.
DEFAULT_COUNT_BITS = 8
MAX_COUNT_BITS = 32


def unit_members(*, length, checks, count_bits, parameters):
    """The signature members of a unit with rows of up to ``length`` elements, ``checks``
    checkers and ``parameters`` (its parameter ports, name to member).

    - ``start`` In(1): one-cycle pulse, begin a row.
    - ``busy`` Out(1); ``done`` Out(1), sticky from the end of the row until the next
      accepted ``start``; ``error`` Out(1), the last ``start`` was refused (``n == 0`` or
      ``n > length``) or came while ``busy``.
    - ``n`` In(range(length + 1)): CSR, elements in the row, 1 .. ``length``, copied by
      the accepted ``start``.
    - ``in_we`` In(1), ``in_addr`` In(range(length)), ``in_data`` In(signed(32)): host
      writes into the input buffer, ignored while ``busy``.
    - ``out_addr`` In(range(length)), ``out_data`` Out(signed(8)): the output buffer, one
      cycle of read latency (the code at the ``out_addr`` of the previous edge).
    - the ``parameters``.
    - ``flags`` Out(checks): the row's checker flags, sticky for the row, cleared by an
      accepted ``start``.
    - ``flag_counts`` Out(ArrayLayout(count_bits, checks)): rows that raised each check
      since reset, saturating at ``2^count_bits - 1``.
    """
    return {
        "start": In(1),
        "busy": Out(1),
        "done": Out(1),
        "error": Out(1),
        "n": In(range(length + 1)),
        "in_we": In(1),
        "in_addr": In(range(length)),
        "in_data": In(signed(32)),
        "out_addr": In(range(length)),
        "out_data": Out(signed(8)),
        **parameters,
        "flags": Out(checks),
        "flag_counts": Out(data.ArrayLayout(count_bits, checks)),
    }


def check_count_bits(unit, count_bits):
    """``count_bits`` if it is an integer from 1 to 32, else ``TypeError`` naming ``unit``."""
    return check_int(f"{unit} count_bits", count_bits, 1, MAX_COUNT_BITS)


def count_row(m, count, raised):
    """Add one to the counter register ``count`` at the clock edge where ``raised`` is high,
    unless it is full (``2^w - 1``: the incrementer's carry out, no comparator)."""
    incremented = count + 1
    with m.If(raised & ~incremented[len(count)]):
        m.d.sync += count.eq(incremented)


class NonlinearUnit(wiring.Component):
    """Base of the units: the generator parameters every unit has, read-only.

    A unit sets ``_length``, ``_checkers`` and ``_count_bits`` and names its checks in
    ``CHECKS`` (the order of its ``flags`` bits).
    """
    CHECKS = ()

    @property
    def length(self):
        return self._length

    @property
    def checkers(self):
        return self._checkers

    @property
    def count_bits(self):
        return self._count_bits

    @property
    def checks(self):
        """The checkers' names, in the order of the ``flags`` bits."""
        return self.CHECKS

    @property
    def index_bits(self):
        """``L = bitlen(length)``."""
        return self._length.bit_length()

