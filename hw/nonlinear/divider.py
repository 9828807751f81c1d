"""The saturating restoring divider every nonlinear unit uses (docs/nonlinear.md, "Notation")."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["RestoringDivider"]


class RestoringDivider(wiring.Component):
    """``divide(D, s, Q)``: the ``Q``-bit quotient ``floor(D / s)``, one bit per cycle.

    At ``start`` the divider compares once: if ``s == 0`` or ``(D >> Q) >= s`` the quotient
    does not fit ``Q`` bits and the result is ``2**Q - 1`` (``saturated`` is set).
    Otherwise the partial remainder starts at ``D >> Q`` (below ``s``) and each of the ``Q``
    following cycles shifts in one bit of ``D``'s low part and subtracts ``s`` if it can
    (restoring division: the partial remainder stays below ``2 s``). The quotient bits enter
    the register that held ``D``'s low part, from the right.

    Timing: ``start`` in cycle 0 samples ``dividend`` and ``divisor``; ``busy`` is high in
    cycles 1 .. Q; ``quotient`` and ``saturated`` hold the result from cycle ``Q + 1`` until
    the next ``start``. The latency is the same in the saturating case. ``divisor`` must be
    held by the caller while ``busy`` (it is not copied: the units divide by a register
    of their own). A ``start`` while ``busy`` restarts the division.

    Registers: ``remainder`` (``divisor_bits``), ``quotient`` (``quotient_bits``), ``step``
    and ``saturated``.

    Parameters
    ----------
    dividend_bits, divisor_bits, quotient_bits : int
        Widths of ``D``, ``s`` and the quotient, 1 .. 64.

    Members
    -------
    start : In(1)
    dividend : In(dividend_bits)
        Sampled at ``start``.
    divisor : In(divisor_bits)
        Sampled at ``start`` and in every busy cycle.
    busy : Out(1)
    quotient : Out(quotient_bits)
    saturated : Out(1)
        The quotient is ``2**quotient_bits - 1`` because the pre-check failed.

    Raises
    ------
    TypeError
        If a width is not an integer from 1 to 64.
    """

    def __init__(self, *, dividend_bits, divisor_bits, quotient_bits):
        self._dividend_bits = check_int("Divider dividend_bits", dividend_bits, 1, 64)
        self._divisor_bits = check_int("Divider divisor_bits", divisor_bits, 1, 64)
        self._quotient_bits = check_int("Divider quotient_bits", quotient_bits, 1, 64)
        super().__init__({
            "start": In(1),
            "dividend": In(dividend_bits),
            "divisor": In(divisor_bits),
            "busy": Out(1),
            "quotient": Out(quotient_bits),
            "saturated": Out(1),
        })

    @property
    def dividend_bits(self):
        return self._dividend_bits

    @property
    def divisor_bits(self):
        return self._divisor_bits

    @property
    def quotient_bits(self):
        return self._quotient_bits

    @property
    def cycles(self):
        """Busy cycles after the ``start`` cycle: the result is ready ``cycles + 1`` cycles
        after ``start``."""
        return self._quotient_bits

    def elaborate(self, platform):
        m = Module()
        bits = self._quotient_bits
        remainder = Signal(self._divisor_bits, name="remainder")
        quotient = Signal(bits, name="quotient")
        step = Signal(range(bits + 1), name="step")
        saturated = Signal(name="saturated")

        high = self.dividend[bits:]
        overflow = (self.divisor == 0) | (high >= self.divisor)
        partial = Cat(quotient[bits - 1], remainder)        # 2 * remainder + next bit
        fits = partial >= self.divisor
        restored = Mux(fits, partial - self.divisor, partial)

        with m.If(self.start):
            m.d.sync += [step.eq(bits), saturated.eq(overflow)]
            with m.If(overflow):
                m.d.sync += [remainder.eq(0), quotient.eq((1 << bits) - 1)]
            with m.Else():
                m.d.sync += [remainder.eq(high), quotient.eq(self.dividend[:bits])]
        with m.Elif(step != 0):
            m.d.sync += step.eq(step - 1)
            with m.If(~saturated):
                m.d.sync += [remainder.eq(restored[:self._divisor_bits]),
                             quotient.eq(Cat(fits, quotient[:bits - 1]))]

        m.d.comb += [self.busy.eq(step != 0), self.quotient.eq(quotient),
                     self.saturated.eq(saturated)]
        return m
