"""The saturating restoring divider every nonlinear unit uses (docs/nonlinear.md, "Notation")."""

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["RestoringDivider"]


class RestoringDivider(wiring.Component):
    """``divide(D, s, Q)``: the ``Q``-bit floor quotient, one bit per cycle, or ``2^Q - 1``.

    In the cycle ``start`` is high the divider compares ``D >> Q`` with ``s`` (one
    comparison, which is also true for ``s == 0``). If ``(D >> Q) >= s`` the quotient does
    not fit ``Q`` bits: ``quotient`` is loaded with ``2^Q - 1``, ``saturated`` is set and the
    iterations leave both alone. Otherwise ``remainder`` is loaded with ``D >> Q`` and
    ``quotient`` with the low ``Q`` bits of ``D``, and each of the next ``Q`` cycles shifts
    the pair left by one bit and subtracts ``s`` from the shifted remainder (the partial
    remainder, ``< 2s``) if it fits (one subtractor: its borrow is the comparison), shifting
    a 1 into ``quotient``, else a 0. ``quotient`` ends as ``floor(D / s)`` and ``remainder``
    as ``D mod s``. A dividend narrower than ``Q`` bits is zero-extended.

    **Timing** (edges counted from the one that samples ``start``, which is edge 1):
    ``dividend`` and ``divisor`` are read at edge 1, ``divisor`` again at each of edges
    2 .. ``Q + 1``, so the caller holds it for the ``Q`` cycles after ``start`` (the divider
    does not copy it: the units divide by a register of their own; the dividend is not
    needed after ``start``). ``busy`` is high after edges 1 .. ``Q`` (``Q`` cycles);
    ``quotient``, ``remainder`` and ``saturated`` hold the result after edge
    :attr:`latency` ``= Q + 1`` until the next ``start``, also in the saturating case. A
    ``start`` while ``busy`` restarts the division.

    **Shorter quotients** (``variable=True``, for a unit that divides with several ``k``):
    an ``iterations`` input ``k``, 1 .. ``Q``, read at the ``start`` edge, replaces the
    constant ``Q`` as the number of iterations. The caller gives the dividend aligned,
    ``D << (Q - k)`` (a constant shift per use: wiring); the pre-check then compares
    ``D >> k`` with ``s`` and the ``k`` iterations consume exactly the bits of ``D``, so
    that ``quotient[:k]`` is ``divide(D, s, k)`` (the whole ``quotient`` register is
    ``floor(D / s)`` unless saturated) and ``remainder`` is ``D mod s``; ``busy`` is high
    for ``k`` cycles and the result is held from ``k + 1`` edges after ``start``. Without
    it (the default) the divider has no such port and the count is loaded with the
    constant ``Q``: the same netlist as before.

    The output ports ``quotient``, ``remainder``, ``saturated`` and ``count`` are the
    divider's registers themselves (driven only by ``sync`` statements), so a testbench
    or a fault injector can read and set them, and the netlist names the flip-flops
    ``quotient``, ``remainder``, ``saturated`` and ``count`` inside the instance.

    Parameters
    ----------
    dividend_bits : int
        Width of the unsigned dividend ``D``, 1 .. 128.
    divisor_bits : int
        Width of the unsigned divisor ``s``, 1 .. 64.
    quotient_bits : int
        ``Q``, 1 .. 64: width of the quotient and number of iterations.
    variable : bool
        Add the ``iterations`` input (default False).
    src_loc_at : int
        Stack frames above the caller to attribute the instance to (Amaranth's convention,
        read by ``Elaboratable.__new__``: a unit that creates its divider in ``__init__``
        passes 1, so that an unelaborated unit is reported where the unit was made).

    Members
    -------
    start : In(1)
        Load the operands and begin a division.
    dividend : In(dividend_bits)
    divisor : In(divisor_bits)
    iterations : In(range(quotient_bits + 1))
        Only with ``variable``: ``k``, the iterations of this division.
    quotient : Out(quotient_bits)
        The quotient register (the result once ``busy`` has fallen).
    remainder : Out(divisor_bits)
        The partial remainder register.
    saturated : Out(1)
        The pre-check found that the quotient does not fit (or ``s == 0``).
    count : Out(range(quotient_bits + 1))
        Iterations left.
    busy : Out(1)
        Iterating: ``count != 0`` (combinational).

    Raises
    ------
    TypeError
        If a width is not an integer in its range, or ``variable`` is not a bool.
    """

    def __init__(self, *, dividend_bits, divisor_bits, quotient_bits, variable=False,
                 src_loc_at=0):
        self._dividend_bits = check_int("Divider dividend_bits", dividend_bits, 1, 128)
        self._divisor_bits = check_int("Divider divisor_bits", divisor_bits, 1, 64)
        self._quotient_bits = check_int("Divider quotient_bits", quotient_bits, 1, 64)
        if not isinstance(variable, bool):
            raise TypeError(f"Divider variable must be a bool, not {variable!r}")
        self._variable = variable
        super().__init__({
            "start": In(1),
            "dividend": In(dividend_bits),
            "divisor": In(divisor_bits),
            **({"iterations": In(range(quotient_bits + 1))} if variable else {}),
            "quotient": Out(quotient_bits),
            "remainder": Out(divisor_bits),
            "saturated": Out(1),
            "count": Out(range(quotient_bits + 1)),
            "busy": Out(1),
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
    def variable(self):
        """Whether the divider has the ``iterations`` input."""
        return self._variable

    @property
    def latency(self):
        """Clock edges from the one that samples ``start`` to the one after which the
        result is held, both included: ``Q + 1`` (the units' convention; ``k + 1`` for
        ``iterations`` ``k``)."""
        return self._quotient_bits + 1

    def elaborate(self, platform):
        m = Module()
        q = self._quotient_bits
        high = self.dividend[q:]           # empty (0) for a dividend of at most Q bits
        overflow = high >= self.divisor    # also when s == 0

        # The partial remainder: the remainder and the quotient's top bit shifted in, < 2s.
        partial = Cat(self.quotient[q - 1], self.remainder)
        difference = partial - self.divisor
        fits = ~difference[-1]             # no borrow: partial >= divisor

        # The registers' statements first: the flip-flops take the ports' names.
        with m.If(self.start):
            m.d.sync += [self.count.eq(self.iterations if self._variable else q),
                         self.saturated.eq(overflow)]
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
        m.d.comb += self.busy.eq(self.count != 0)
        return m
