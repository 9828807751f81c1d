"""The saturating restoring divider of the nonlinear units (docs/nonlinear.md, "Notation")."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["RestoringDivider"]


class RestoringDivider(wiring.Component):
    """``divide(D, s, Q)``: a ``Q``-bit floor quotient, one bit per cycle, or ``2**Q - 1``.

    At the edge that samples ``start`` the divider checks, with one comparison, whether the
    quotient fits: if ``s == 0`` or ``(D >> Q) >= s`` it saturates (every quotient bit it
    then shifts in is 1); otherwise it loads the partial remainder ``D >> Q`` (below ``s``).
    Each of the next ``Q`` edges shifts in the next dividend bit, from bit ``Q - 1`` down,
    subtracts ``s`` when the partial remainder (below ``2s``) allows it and shifts the
    quotient bit in. ``Q`` is an input, so that one divider serves quotients of several
    widths; the cycle count does not depend on the operands, saturating or not.

    Latency: ``busy`` is high for the ``Q`` cycles after the start edge; in the cycle it
    falls ``quotient`` holds the result, until the next start. The operands are read again
    in every cycle of the division (they are not copied): ``dividend``, ``divisor`` and
    ``quotient_bits`` must stay unchanged from the start cycle until ``busy`` falls. A
    ``start`` while busy restarts the division.

    Parameters
    ----------
    dividend_bits, divisor_bits : int
        Widths of the unsigned operands, 1 .. 128.
    quotient_bits : int
        Widest quotient, 1 .. 128: the width of ``quotient``.

    Members
    -------
    start : In(1)
    dividend : In(dividend_bits)
    divisor : In(divisor_bits)
    quotient_bits : In(range(quotient_bits + 1))
        ``Q`` of this division, 1 .. ``quotient_bits`` (0 gives the quotient 0 at once).
    busy : Out(1)
    quotient : Out(quotient_bits)
        The low ``Q`` bits are the quotient, the bits above are 0.
    saturated : Out(1)
        The last division saturated.

    Raises
    ------
    TypeError
        If a width is not an integer from 1 to 128.
    """

    def __init__(self, *, dividend_bits, divisor_bits, quotient_bits):
        self._dividend_bits = check_int("Divider dividend_bits", dividend_bits, 1, 128)
        self._divisor_bits = check_int("Divider divisor_bits", divisor_bits, 1, 128)
        self._quotient_bits = check_int("Divider quotient_bits", quotient_bits, 1, 128)
        super().__init__({
            "start": In(1),
            "dividend": In(dividend_bits),
            "divisor": In(divisor_bits),
            "quotient_bits": In(range(quotient_bits + 1)),
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
    def max_quotient_bits(self):
        """The widest quotient (the constructor's ``quotient_bits``)."""
        return self._quotient_bits

    def cycles(self, quotient_bits):
        """Cycles ``busy`` stays high after the start edge for a ``quotient_bits``-bit
        quotient."""
        return quotient_bits

    def elaborate(self, platform):
        m = Module()
        remainder = Signal(self._divisor_bits, name="remainder")
        quotient = Signal(self._quotient_bits, name="quotient")
        count = Signal(range(self._quotient_bits + 1), name="count")
        saturated = Signal(name="saturated")

        head = self.dividend >> self.quotient_bits
        overflow = (self.divisor == 0) | (head >= self.divisor)
        # One restoring step: dividend bit count - 1 joins the partial remainder (< 2s).
        next_bit = Cat(Const(0, 1), self.dividend).bit_select(count, 1)
        widened = Cat(next_bit, remainder)
        fits = widened >= self.divisor
        bit = fits | saturated

        with m.If(self.start):
            m.d.sync += [
                remainder.eq(Mux(overflow, 0, head)),
                quotient.eq(0),
                count.eq(self.quotient_bits),
                saturated.eq(overflow),
            ]
        with m.Elif(count != 0):
            m.d.sync += [
                remainder.eq(Mux(fits & ~saturated, widened - self.divisor, widened)),
                quotient.eq(Cat(bit, quotient)),
                count.eq(count - 1),
            ]

        m.d.comb += [
            self.busy.eq(count != 0),
            self.quotient.eq(quotient),
            self.saturated.eq(saturated),
        ]
        return m
