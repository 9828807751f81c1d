"""The saturating restoring divider of the nonlinear units (docs/nonlinear.md, "Notation")."""

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["RestoringDivider"]


class RestoringDivider(wiring.Component):
    """``divide(D, s, Q)``: the ``Q``-bit floor quotient, one bit per cycle, or ``2^Q - 1``.

    In the cycle ``start`` is high the divider compares ``D >> Q`` with ``s`` (one
    comparison). If ``s == 0`` or ``(D >> Q) >= s`` the quotient does not fit ``Q`` bits:
    ``quotient`` is loaded with ``2^Q - 1``, ``saturated`` is set and the iterations leave
    both alone. Otherwise ``remainder`` is loaded with ``D >> Q`` and ``quotient`` with the
    low ``Q`` bits of ``D``, and each of the next ``Q`` cycles shifts the pair left by one bit
    and subtracts ``s`` from the shifted remainder (the partial remainder, ``< 2s``) if it
    fits, shifting a 1 into ``quotient``, else a 0: ``quotient`` ends as ``floor(D / s)`` and
    ``remainder`` as ``D mod s``.

    Timing: ``dividend`` and ``divisor`` are read in the ``start`` cycle, ``divisor`` again
    in every iteration, so the caller holds it for the ``Q`` cycles after ``start`` (the
    dividend is not needed after ``start``). ``quotient`` holds the result from ``Q + 1``
    clock edges after the one that samples ``start`` (``busy`` is high during the ``Q``
    iteration cycles) until the next ``start``. A ``start`` while ``busy`` restarts.

    The ports ``remainder``, ``quotient``, ``saturated`` and ``count`` are the divider's
    registers themselves: fault sites, of class ``nonlinear`` except ``count`` (control).

    Parameters
    ----------
    dividend_bits : int
        Width of the unsigned dividend ``D``, at least ``quotient_bits``.
    divisor_bits : int
        Width of the unsigned divisor ``s``.
    quotient_bits : int
        ``Q``: width of the quotient and number of iterations.
    src_loc_at : int
        Stack frames above the caller to attribute the instance to (Amaranth's
        convention; a unit that creates its divider in ``__init__`` passes 1).

    Members
    -------
    start : In(1)
        Load the operands and begin a division.
    dividend : In(dividend_bits)
    divisor : In(divisor_bits)
    quotient : Out(quotient_bits)
        The quotient register (the result once the iterations are over).
    remainder : Out(divisor_bits)
        The partial remainder register.
    saturated : Out(1)
        The pre-check found that the quotient does not fit (or ``s == 0``).
    count : Out(range(quotient_bits + 1))
        Iterations left.
    busy : Out(1)
        Iterating (``count != 0``).

    Raises
    ------
    TypeError
        If a width is not an integer in its range.
    ValueError
        If ``dividend_bits`` is less than ``quotient_bits``.
    """

    def __init__(self, *, dividend_bits, divisor_bits, quotient_bits, src_loc_at=0):
        self._dividend_bits = check_int("Divider dividend_bits", dividend_bits, 1, 128)
        self._divisor_bits = check_int("Divider divisor_bits", divisor_bits, 1, 64)
        self._quotient_bits = check_int("Divider quotient_bits", quotient_bits, 1, 64)
        if dividend_bits < quotient_bits:
            raise ValueError(f"Divider dividend_bits {dividend_bits!r} is less than "
                             f"quotient_bits {quotient_bits!r}")
        attrs = {"fault_class": "nonlinear"}
        super().__init__({
            "start": In(1),
            "dividend": In(dividend_bits),
            "divisor": In(divisor_bits),
            "quotient": Out(quotient_bits),
            "remainder": Out(divisor_bits),
            "saturated": Out(1),
            "count": Out(range(quotient_bits + 1)),
            "busy": Out(1),
        })
        self.quotient.attrs.update(attrs)
        self.remainder.attrs.update(attrs)
        self.saturated.attrs.update(attrs)

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
        """Clock edges from the one that samples ``start`` to the one after which
        ``quotient`` holds the result, both included."""
        return self._quotient_bits + 1

    def elaborate(self, platform):
        m = Module()
        q = self._quotient_bits
        high = self.dividend[q:]
        overflow = high >= self.divisor   # also when s == 0

        # The partial remainder: the remainder and the quotient's top bit shifted in, < 2s.
        partial = Cat(self.quotient[q - 1], self.remainder)
        difference = partial - self.divisor
        fits = ~difference[-1]   # no borrow: partial >= divisor

        m.d.comb += self.busy.eq(self.count != 0)
        with m.If(self.start):
            m.d.sync += [self.count.eq(q), self.saturated.eq(overflow)]
            with m.If(overflow):
                m.d.sync += [self.quotient.eq((1 << q) - 1), self.remainder.eq(0)]
            with m.Else():
                m.d.sync += [self.quotient.eq(self.dividend[:q]), self.remainder.eq(high)]
        with m.Elif(self.busy):
            m.d.sync += self.count.eq(self.count - 1)
            with m.If(~self.saturated):
                m.d.sync += [
                    self.remainder.eq(Mux(fits, difference, partial)),
                    self.quotient.eq(Cat(fits, self.quotient[:q - 1])),
                ]
        return m
