"""The shift exponential ``exp2neg`` of softmax and GELU, and its bounds check.

docs/nonlinear.md, "The shift exponential": a two-segment linear mantissa of wire shifts and
adders, then a right shift by the exponent's integer part. Both components are
combinational: the units put their own registers around them.
"""

from amaranth.hdl import Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["ShiftExponential", "ExponentialCheck", "MIN_EXP_BITS", "MAX_EXP_BITS",
           "EXPONENT_INTEGER_BITS", "exponent_limit"]

MIN_EXP_BITS, MAX_EXP_BITS = 8, 15
#: Bits of the exponent above its ``E`` fraction bits: ``u`` is ``u (E + 5)``.
EXPONENT_INTEGER_BITS = 5


def exponent_limit(exp_bits):
    """``U_MAX = (E + 1) << E``: the exponent where the exponential reaches 0."""
    return (exp_bits + 1) << exp_bits


class ShiftExponential(wiring.Component):
    """``e = exp2neg(u) ~ 2**E * 2**(-u / 2**E)``, combinationally.

    ``q = u >> E`` and ``t = u & (2**E - 1)``; the mantissa ``m`` is
    ``2**E - (t>>1) - (t>>4) - (t>>5) + (t>>7)`` for ``t < 2**(E-1)``, else
    ``M_H - (t'>>2) - (t'>>3) - (t'>>5) - (t'>>7)`` with ``t' = t - 2**(E-1)``; ``e = m >> q``
    (0 when ``q > E``). Any ``u`` is accepted (no saturation here: the callers clamp).

    Parameters
    ----------
    exp_bits : int
        ``E``, 8 .. 15.

    Members
    -------
    exponent : In(exp_bits + 5)
        ``u``.
    integer : Out(5)
        ``q = u >> E``.
    exponential : Out(exp_bits + 1)
        ``e``, ``0 .. 2**E``.

    Raises
    ------
    TypeError
        If ``exp_bits`` is not an integer from 8 to 15.
    """

    def __init__(self, *, exp_bits=MAX_EXP_BITS):
        self._exp_bits = check_int("Exponential exp_bits", exp_bits, MIN_EXP_BITS,
                                   MAX_EXP_BITS)
        super().__init__({
            "exponent": In(exp_bits + EXPONENT_INTEGER_BITS),
            "integer": Out(EXPONENT_INTEGER_BITS),
            "exponential": Out(exp_bits + 1),
        })

    @property
    def exp_bits(self):
        return self._exp_bits

    def elaborate(self, platform):
        m = Module()
        e = self._exp_bits
        fraction = self.exponent[:e]
        upper = fraction[:e - 1]                       # t' = t - 2**(E-1) when t >= 2**(E-1)
        mantissa_half = (1 << e) - (1 << (e - 2)) - (1 << (e - 5)) - (1 << (e - 6)) \
            + (1 << (e - 8))
        low = (Const(1 << e, e + 1) + (fraction >> 7)
               - ((fraction >> 1) + (fraction >> 4) + (fraction >> 5)))
        high = (Const(mantissa_half, e + 1)
                - ((upper >> 2) + (upper >> 3) + (upper >> 5) + (upper >> 7)))
        # Both segments lie in (2**(E-1), 2**E]: the low E + 1 bits are the value.
        mantissa = Mux(fraction[e - 1], high[:e + 1], low[:e + 1])
        m.d.comb += [
            self.integer.eq(self.exponent[e:]),
            self.exponential.eq(mantissa >> self.exponent[e:]),
        ]
        return m


class ExponentialCheck(wiring.Component):
    """The bounds of ``exp2neg``: ``2**(E-1) >> q <= e <= 2**E >> q``, combinationally.

    Any ``e`` the mantissa can give passes (docs/nonlinear.md proves the bounds); a
    corrupted exponential, or one computed from a different exponent, fails unless it
    happens to land between them. The ``u <= U_MAX`` half of the checker table's condition
    is left to the unit, which has the exponent register.

    Parameters
    ----------
    exp_bits : int
        ``E``, 8 .. 15.

    Members
    -------
    integer : In(5)
        ``q``, the integer part of the exponent ``e`` was computed from.
    exponential : In(exp_bits + 1)
    in_bounds : Out(1)

    Raises
    ------
    TypeError
        If ``exp_bits`` is not an integer from 8 to 15.
    """

    def __init__(self, *, exp_bits=MAX_EXP_BITS):
        self._exp_bits = check_int("Exponential exp_bits", exp_bits, MIN_EXP_BITS,
                                   MAX_EXP_BITS)
        super().__init__({
            "integer": In(EXPONENT_INTEGER_BITS),
            "exponential": In(exp_bits + 1),
            "in_bounds": Out(1),
        })

    @property
    def exp_bits(self):
        return self._exp_bits

    def elaborate(self, platform):
        m = Module()
        e = self._exp_bits
        lower = Const(1 << (e - 1), e + 1) >> self.integer
        upper = Const(1 << e, e + 1) >> self.integer
        m.d.comb += self.in_bounds.eq((self.exponential >= lower)
                                      & (self.exponential <= upper))
        return m
