"""The shift exponential ``exp2neg`` of the softmax and GELU units and its check
(docs/nonlinear.md, "The shift exponential"). Both components are combinational: the
units put their own registers around them."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["MIN_EXP_BITS", "MAX_EXP_BITS", "EXPONENT_INTEGER_BITS", "exponent_limit",
           "exponent_over_limit", "ShiftExponential", "ExponentialCheck"]

#: Range of the generator parameter ``exp_bits`` (``E``).
MIN_EXP_BITS, MAX_EXP_BITS = 8, 15
#: Bits of the exponent above its ``E`` fraction bits: ``u`` is ``u (E + 5)``.
EXPONENT_INTEGER_BITS = 5


def exponent_limit(exp_bits):
    """``U_MAX = (E + 1) << E``: the exponent where the exponential reaches 0."""
    return (exp_bits + 1) << exp_bits


def exponent_over_limit(exponent, exp_bits):
    """The expression ``u > U_MAX`` on the fields of ``u`` (``exponent``, ``E + 5`` bits):
    ``q > E + 1``, or ``q = E + 1`` with a non-zero fraction."""
    integer, fraction = exponent[exp_bits:], exponent[:exp_bits]
    return (integer > exp_bits + 1) | ((integer == exp_bits + 1) & fraction.any())


def _check_exp_bits(block, exp_bits):
    return check_int(f"{block} exp_bits", exp_bits, MIN_EXP_BITS, MAX_EXP_BITS)


class ShiftExponential(wiring.Component):
    """``e = exp2neg(u) ~ 2^E 2^(-u / 2^E)``: two-segment linear mantissa, then a shift.

    Combinational: wire shifts, four adders, a multiplexer and a barrel shifter. ``q = u >>
    E`` is the integer part, ``t = u & (2^E - 1)`` the fraction; the mantissa ``m`` is
    ``2^E - (t>>1) - (t>>4) - (t>>5) + (t>>7)`` for ``t < 2^(E-1)`` and
    ``M_H - (t'>>2) - (t'>>3) - (t'>>5) - (t'>>7)``, ``t' = t - 2^(E-1)``, above;
    ``e = m >> q`` (0 when ``q > E``). Any ``u`` is accepted (no saturation here: the units
    saturate ``u`` at ``U_MAX`` in their exponent register).

    Parameters
    ----------
    exp_bits : int
        ``E``, 8 .. 15: fraction bits of the exponent and of the exponential.

    Members
    -------
    exponent : In(exp_bits + 5)
        ``u``.
    exponential : Out(exp_bits + 1)
        ``e``, ``0 .. 2^E``.

    Raises
    ------
    TypeError
        If ``exp_bits`` is not an integer from 8 to 15.
    """

    def __init__(self, *, exp_bits):
        self._exp_bits = _check_exp_bits("Shift exponential", exp_bits)
        super().__init__({
            "exponent": In(exp_bits + EXPONENT_INTEGER_BITS),
            "exponential": Out(exp_bits + 1),
        })

    @property
    def exp_bits(self):
        return self._exp_bits

    def elaborate(self, platform):
        m = Module()
        e = self._exp_bits
        integer = self.exponent[e:]
        fraction = self.exponent[:e]
        upper = fraction[:e - 1]   # t - 2^(E-1) when the top fraction bit is set
        mantissa_half = (1 << e) - (1 << (e - 2)) - (1 << (e - 5)) - (1 << (e - 6)) \
            + (1 << (e - 8))
        low = (1 << e) - (fraction >> 1) - (fraction >> 4) - (fraction >> 5) + (fraction >> 7)
        high = mantissa_half - (upper >> 2) - (upper >> 3) - (upper >> 5) - (upper >> 7)
        # Both segments lie in (2^(E-1), 2^E]: the low E + 1 bits are the value.
        mantissa = Mux(fraction[e - 1], high[:e + 1], low[:e + 1])
        m.d.comb += self.exponential.eq(mantissa >> integer)
        return m


class ExponentialCheck(wiring.Component):
    """The ``exponential`` checker: ``u <= U_MAX`` and ``2^(E-1) >> q <= e <= 2^E >> q``.

    Combinational; ``fail`` is high when the pair ``(u, e)`` violates this property, which
    every fault-free ``e = exp2neg(u)`` with ``u <= U_MAX`` has (``q = u >> E``;
    docs/nonlinear.md proves the bounds). The check reads ``u`` only through ``q`` and
    whether its fraction is zero: a unit that keeps only ``q`` until ``e`` is computed (the
    softmax) passes ``q << E`` and tests the fraction half of the limit on ``u`` itself
    (:func:`exponent_over_limit`).

    The bounds are powers of two, so the comparisons are bit tests rather than
    subtractions: with ``p = E - q``, ``e >= 2^(p-1)`` when some bit of ``e`` at ``p - 1``
    or above is set, and ``e <= 2^p`` when no bit above ``p`` is set and, if bit ``p`` is,
    no bit below it; a suffix and a prefix OR of ``e`` give these for every ``q`` at once,
    and ``q`` selects one.

    Parameters
    ----------
    exp_bits : int
        ``E``, 8 .. 15.

    Members
    -------
    exponent : In(exp_bits + 5)
        ``u``.
    exponential : In(exp_bits + 1)
        ``e``.
    fail : Out(1)

    Raises
    ------
    TypeError
        If ``exp_bits`` is not an integer from 8 to 15.
    """

    def __init__(self, *, exp_bits):
        self._exp_bits = _check_exp_bits("Exponential check", exp_bits)
        super().__init__({
            "exponent": In(exp_bits + EXPONENT_INTEGER_BITS),
            "exponential": In(exp_bits + 1),
            "fail": Out(1),
        })

    @property
    def exp_bits(self):
        return self._exp_bits

    def elaborate(self, platform):
        m = Module()
        e = self._exp_bits
        integer = self.exponent[e:]
        bits = self.exponential
        # at_or_above[i]: some bit of e at position i or above; at_or_below[i]: at i or below.
        at_or_above = [None] * (e + 2)
        at_or_below = [None] * (e + 1)
        at_or_above[e + 1] = Const(0)
        for i in range(e, -1, -1):
            at_or_above[i] = Signal(name=f"at_or_above_{i}")
            m.d.comb += at_or_above[i].eq(bits[i] | at_or_above[i + 1])
        for i in range(e + 1):
            at_or_below[i] = Signal(name=f"at_or_below_{i}")
            m.d.comb += at_or_below[i].eq(bits[i] | (at_or_below[i - 1] if i else 0))

        outside = []    # outside[q]: e is not within the bounds of q, for q = 0 .. E + 1
        for q in range(e + 1):
            p = e - q
            above_upper = at_or_above[p + 1] | (bits[p] & (at_or_below[p - 1] if p else 0))
            below_lower = ~at_or_above[p - 1] if p else 0
            outside.append(above_upper | below_lower)
        outside.append(at_or_above[0])   # q = E + 1: both bounds are 0
        # q > E + 1 fails through the exponent limit: pad the selection with ones.
        outside += [Const(1)] * ((1 << len(integer)) - len(outside))
        selected = Signal(1 << len(integer), name="outside_bounds")
        m.d.comb += selected.eq(Cat(*outside))

        m.d.comb += self.fail.eq(exponent_over_limit(self.exponent, e)
                                 | selected.bit_select(integer, 1))
        return m
