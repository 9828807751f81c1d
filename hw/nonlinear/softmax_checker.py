"""The softmax unit's six row checkers (docs/nonlinear.md, "Softmax", "Checkers")."""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.nonlinear.interface import DEFAULT_COUNT_BITS, check_count_bits, count_row
from hw.nonlinear.shift_exponential import (
    EXPONENT_INTEGER_BITS,
    MAX_EXP_BITS,
    MIN_EXP_BITS,
    ExponentialCheck,
    exponent_over_limit,
)
from hw.validation import check_int

__all__ = ["SoftmaxChecker", "SOFTMAX_CHECKS", "ONE"]

#: The checkers, in the order of the spec's table: bit ``i`` of ``flags`` is check ``i``.
SOFTMAX_CHECKS = ("maximum", "exponential", "sum", "reciprocal", "total", "peak")
#: The output code of probability 1.
ONE = 127


class SoftmaxChecker(wiring.Component):
    """Per-row flags of the softmax checks, from the unit's registers as they are used.

    It watches the unit's pipeline and raises, for the row:

    - ``maximum`` if a ``difference`` is negative (at once) or none was 0 (at
      ``sum_check``);
    - ``exponential`` if an ``exponent`` exceeds ``U_MAX`` or an ``exponential`` lies
      outside ``[2**(E-1) >> q, 2**E >> q]``, ``q`` being the integer part of the exponent
      it was computed from (kept in ``exponent_integer`` for one cycle);
    - ``sum`` unless ``2**E <= sum <= n << E`` (at ``sum_check``);
    - ``reciprocal`` unless ``R s <= 127 << P < (R + 1) s``, from the unit's multiplier
      output ``product``: ``R s`` at ``reciprocal_check``, ``(R + 1) s`` at ``finish``
      (two multiplies in cycles where the multiplier is idle, instead of an adder);
    - ``total`` and ``peak`` from the running sum (``output_excess``, the sum of the codes
      minus 127) and maximum (``output_peak``) of the output codes (at ``finish``):
      ``127 - ceil_half(n) <= total <= 127 + (n >> 1)`` and
      ``peak == (R + 2**(L-1)) >> L``.

    The comparisons are written on bit fields where that is cheaper (the sum against
    ``n << E`` on its high and low parts, the products against ``127 << P`` on theirs,
    the total's two bounds as one comparison of ``2|v|`` with ``n``); they are exactly the
    table's conditions for every register value, faulty or not.

    ``clear`` (the unit's accepted start) lowers the flags and restarts the running values;
    ``finish`` (the row's last cycle) adds each raised flag to its saturating counter
    (``count_bits`` wide).
    Registers: ``<check>_flag``, ``<check>_count``, ``zero_difference_seen``,
    ``exponent_integer``, ``output_excess`` (s(8+L): the sum of ``n`` codes never wraps),
    ``output_peak`` (s8).

    Parameters
    ----------
    length : int
        The unit's longest row, 1 .. 511 (``L = bitlen(length)``).
    exp_bits : int
        ``E``, 8 .. 15.
    count_bits : int
        Width of each counter, 1 .. 32 (default 8).

    Members
    -------
    clear, sum_check, reciprocal_check, finish : In(1)
        Strobes from the unit's schedule; ``finish`` is the row's last cycle.
    row_length : In(range(length + 1))
    difference : In(signed(33))
    difference_valid : In(1)
    exponent : In(exp_bits + 5)
    exponent_valid : In(1)
    exponential : In(exp_bits + 1)
    exponential_valid : In(1)
        ``e`` computed from the exponent of the previous ``exponent_valid`` cycle.
    sum : In(exp_bits + L)
    reciprocal : In(7 + L)
    product : In(exp_bits + 2 * L + 7)
        ``R * s`` at ``reciprocal_check``, ``(R + 1) * s`` at ``finish``, from the unit's
        multiplier (``R + 1 <= 2**(7+L)`` and ``s < 2**(E+L)``: the product fits).
    output : In(signed(8))
    output_valid : In(1)
    flags : Out(6)
        Bit ``i`` for ``SOFTMAX_CHECKS[i]``.
    flag_counts : Out(ArrayLayout(count_bits, 6))

    Raises
    ------
    TypeError
        If ``length``, ``exp_bits`` or ``count_bits`` is not an integer in its range.
    """

    def __init__(self, *, length, exp_bits=MAX_EXP_BITS, count_bits=DEFAULT_COUNT_BITS):
        self._length = check_int("Softmax checker length", length, 1, 511)
        self._exp_bits = check_int("Softmax checker exp_bits", exp_bits, MIN_EXP_BITS,
                                   MAX_EXP_BITS)
        self._count_bits = check_count_bits("Softmax checker", count_bits)
        index = length.bit_length()
        super().__init__({
            "clear": In(1),
            "sum_check": In(1),
            "reciprocal_check": In(1),
            "finish": In(1),
            "row_length": In(range(length + 1)),
            "difference": In(signed(33)),
            "difference_valid": In(1),
            "exponent": In(exp_bits + EXPONENT_INTEGER_BITS),
            "exponent_valid": In(1),
            "exponential": In(exp_bits + 1),
            "exponential_valid": In(1),
            "sum": In(exp_bits + index),
            "reciprocal": In(7 + index),
            "product": In(2 * index + exp_bits + 7),
            "output": In(signed(8)),
            "output_valid": In(1),
            "flags": Out(len(SOFTMAX_CHECKS)),
            "flag_counts": Out(data.ArrayLayout(count_bits, len(SOFTMAX_CHECKS))),
        })

    @property
    def length(self):
        return self._length

    @property
    def exp_bits(self):
        return self._exp_bits

    @property
    def count_bits(self):
        return self._count_bits

    def elaborate(self, platform):
        m = Module()
        e, index = self._exp_bits, self._length.bit_length()
        precision = e + index
        row_length = self.row_length
        flags = {name: Signal(name=f"{name}_flag") for name in SOFTMAX_CHECKS}
        counts = {name: Signal(self._count_bits, name=f"{name}_count")
                  for name in SOFTMAX_CHECKS}
        zero_seen = Signal(name="zero_difference_seen")
        exponent_integer = Signal(EXPONENT_INTEGER_BITS, name="exponent_integer")
        output_excess = Signal(signed(8 + index), name="output_excess", init=-ONE)
        output_peak = Signal(signed(8), name="output_peak", init=-128)
        m.submodules.exponential_check = exponential_check = ExponentialCheck(exp_bits=e)

        # maximum: every d_i >= 0 here, some d_i == 0 at sum_check.
        with m.If(self.difference_valid):
            with m.If(self.difference < 0):
                m.d.sync += flags["maximum"].eq(1)
            with m.If(self.difference == 0):
                m.d.sync += zero_seen.eq(1)

        # exponential: u_i <= U_MAX = (E + 1) << E when u_i is in its register, then e_i
        # within the bounds of q_i = u_i >> E, kept for that one cycle (the check reads u
        # through q and its fraction, here 0: the limit was tested on the whole u).
        with m.If(self.exponent_valid):
            m.d.sync += exponent_integer.eq(self.exponent[e:])
            with m.If(exponent_over_limit(self.exponent, e)):
                m.d.sync += flags["exponential"].eq(1)
        m.d.comb += [exponential_check.exponent.eq(exponent_integer << e),
                     exponential_check.exponential.eq(self.exponential)]
        with m.If(self.exponential_valid & exponential_check.fail):
            m.d.sync += flags["exponential"].eq(1)

        # sum: 2**E <= s <= n << E, on the fields of s; and the second half of maximum.
        sum_high, sum_low = self.sum[e:], self.sum[:e]
        sum_bad = ((sum_high == 0) | (sum_high > row_length)
                   | ((sum_high == row_length) & sum_low.any()))
        with m.If(self.sum_check):
            with m.If(sum_bad):
                m.d.sync += flags["sum"].eq(1)
            with m.If(~zero_seen):
                m.d.sync += flags["maximum"].eq(1)

        # reciprocal: R s <= 127 << P (at reciprocal_check, product = R s) and
        # (R + 1) s > 127 << P (at finish, product = (R + 1) s): one comparison with the
        # constant on the product's high and low parts, used twice.
        high, low = self.product[precision:], self.product[:precision]
        above_dividend = (high > ONE) | ((high == ONE) & low.any())
        with m.If(self.reciprocal_check & above_dividend):
            m.d.sync += flags["reciprocal"].eq(1)

        # total: v = sum_i o_i - 127 (output_excess starts at -127) must satisfy
        # -ceil_half(n) <= v <= n >> 1, i.e. 2|v| <= n for v >= 0 and 2(-v-1) + 1 <= n for
        # v < 0: one comparison of Cat(sign, v ^ sign) with n.
        with m.If(self.output_valid):
            m.d.sync += output_excess.eq(output_excess + self.output)
        sign = output_excess[-1]
        magnitude = (output_excess ^ sign.replicate(len(output_excess)))[:-1]
        total_bad = Cat(sign, magnitude) > row_length

        # peak: the running maximum must be (R + 2**(L-1)) >> L, the maximum's output.
        with m.If(self.output_valid & (self.output > output_peak)):
            m.d.sync += output_peak.eq(self.output)
        expected_peak = (self.reciprocal[index - 1:] + 1)[1:]
        peak_bad = output_peak != expected_peak

        raised = dict(flags, reciprocal=flags["reciprocal"] | ~above_dividend,
                      total=flags["total"] | total_bad, peak=flags["peak"] | peak_bad)
        with m.If(self.finish):
            m.d.sync += [flags[name].eq(raised[name]) for name in ("reciprocal", "total", "peak")]
            for name, count in counts.items():
                count_row(m, count, raised[name])

        with m.If(self.clear):
            m.d.sync += [*(flag.eq(0) for flag in flags.values()), zero_seen.eq(0),
                         output_excess.eq(-ONE), output_peak.eq(-128)]

        m.d.comb += [self.flags.eq(Cat(flags[name] for name in SOFTMAX_CHECKS)),
                     *(self.flag_counts[i].eq(counts[name])
                       for i, name in enumerate(SOFTMAX_CHECKS))]
        return m
