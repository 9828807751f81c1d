"""The integer softmax unit of docs/nonlinear.md ("Softmax"), with its six row checkers."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hw.config import INT32_MIN
from hw.nonlinear.divider import RestoringDivider
from hw.nonlinear.interface import (
    DEFAULT_COUNT_BITS,
    NonlinearUnit,
    check_count_bits,
    unit_members,
)
from hw.nonlinear.shift_exponential import (
    EXPONENT_INTEGER_BITS,
    MAX_EXP_BITS,
    MIN_EXP_BITS,
    ShiftExponential,
    exponent_limit,
)
from hw.nonlinear.softmax_checker import ONE, SOFTMAX_CHECKS, SoftmaxChecker
from hw.validation import check_int

__all__ = ["SoftmaxUnit", "SOFTMAX_CHECKS", "SOFTMAX_REGISTERS", "MAX_SOFTMAX_LENGTH", "ONE"]

#: The stages of the twin that live in a register, with the register's name.
SOFTMAX_REGISTERS = {"maximum": "maximum", "difference": "difference", "exponent": "exponent",
                     "exponential": "exponential", "sum": "sum", "reciprocal": "reciprocal",
                     "output": "output_code"}
#: Longest row: the reciprocal (7 + L bits) must fit the multiplier's 16-bit port.
MAX_SOFTMAX_LENGTH = 511

# Cycles of the schedule (see the class docstring): the row pipeline's depths.
_EXPONENTIAL_DRAIN = 4      # read, difference, exponent, exponential: pass 2 lasts n + 4
_OUTPUT_DRAIN = 2           # read, output: pass 3 lasts n + 2


class SoftmaxUnit(NonlinearUnit):
    """Integer softmax of a row of int32 scores into int8 probabilities of scale 1/127.

    Implements docs/nonlinear.md, "Softmax", bit-exactly as ``sw.twin.nonlinear.softmax``
    (outputs and checker flags), with one signed 33 x unsigned 16 multiplier, one
    restoring divider (:class:`~hw.nonlinear.divider.RestoringDivider`) and the shift
    exponential (:class:`~hw.nonlinear.shift_exponential.ShiftExponential`).

    **Use** (the common unit interface of docs/nonlinear.md, as the GELU unit's). While
    the unit is idle the host writes the row's ``n`` scores into the row
    buffer (``in_we``, ``in_addr``, ``in_data``; writes while ``busy`` are ignored), sets
    the CSRs ``n``, ``scale_m`` and ``scale_shift`` (held constant while ``busy``: only
    ``n`` is copied, into ``row_length``) and pulses ``start``. ``done`` rises exactly
    :meth:`latency` ``(n)`` clock edges later (the edge that samples ``start`` is the
    first) and stays high until the next accepted ``start``; the row's codes are then in
    the output buffer (``out_addr`` -> ``out_data``, **one cycle of read latency**: a
    synchronous read port, ``out_data`` is the word at the ``out_addr`` of the previous
    edge) and ``flags`` holds the row's checker flags. The row buffer then holds the
    exponentials (written in place, as the spec says): write the scores again before
    every row.

    **Illegal starts.** A ``start`` with ``n == 0`` or ``n > length`` is refused: the unit
    stays idle, ``done`` is cleared and ``error`` is set (a host waiting for ``done``
    times out rather than taking the previous row's codes; ``flags`` and the counters are
    left alone). A ``start`` while ``busy`` is
    ignored and sets ``error``; the running row finishes normally. The next accepted
    ``start`` clears ``error``.

    **Schedule** (cycle ``k`` is the one after ``k`` edges, the ``start`` edge included;
    ``Q = 7 + L``):

    =============================  =====================================================
    cycles                         activity
    =============================  =====================================================
    ``1 .. n``                     pass 1 reads ``x_i``; ``maximum`` is final in ``n+2``
    ``n+1 .. 2n+4``                pass 2: ``difference`` holds ``d_i`` in ``n+3+i``,
                                   ``exponent`` ``u_i`` in ``n+4+i``, ``exponential``
                                   ``e_i`` in ``n+5+i`` (summed and written back then)
    ``2n+5``                       ``sum`` is final; the divider starts; sum and maximum
                                   checks
    ``2n+6 .. 2n+Q+6``             the divider; ``reciprocal`` holds ``R`` from ``2n+Q+7``
    ``2n+Q+7 .. 3n+Q+8``           pass 3: ``R s <= 127 << P`` checked in ``2n+Q+7``;
                                   ``output_code`` holds ``o_i`` in ``2n+Q+9+i``
    ``3n+Q+9``                     ``(R + 1) s > 127 << P``, total and peak checks,
                                   counters; ``done`` in ``3n+Q+10``
    =============================  =====================================================

    :meth:`stage_cycle` answers the table for a testbench or a fault injector: a register
    changed in that cycle (after the edge) is what the twin's ``hook`` changes.

    **Registers** (flip-flops, named as here in the netlist; no ``fault_class`` attribute:
    the integration classifies them as the ``softmax`` unit's): the twin's stages
    ``maximum`` (s32), ``difference`` (s33), ``exponent`` (u(E+5)), ``exponential``
    (u(E+1)), ``sum`` (u(E+L)), ``reciprocal`` (u(7+L)) and ``output_code`` (s8;
    ``output`` is a Verilog keyword); in ``checker``, ``output_excess`` (s(8+L), the
    running sum of the codes minus 127), ``output_peak`` (s8, their running maximum),
    ``exponent_integer`` (the previous ``u >> E``, checked against ``e``),
    ``zero_difference_seen``, ``<check>_flag`` and ``<check>_count``; control: the FSM
    state ``softmax_state``, ``step``, ``row_length``, ``write_index``, the pipeline's
    valid bits, ``done`` and ``error``, and in ``divider`` its ``remainder``,
    ``quotient``, ``count``, ``saturated``. :attr:`stage_registers` maps the twin's stage
    names to them. The row and output buffers are memories, not fault sites.

    Parameters
    ----------
    length : int
        Longest row, 1 .. 511 (``L = bitlen(length)``).
    exp_bits : int
        ``E``, 8 .. 15.
    checkers : bool
        Build the six checkers and their counters; without them ``flags`` and
        ``flag_counts`` read 0 (the latency is the same).
    count_bits : int
        Width of each counter of ``flag_counts``, 1 .. 32 (default 8).

    Members
    -------
    The common unit interface (:func:`~hw.nonlinear.interface.unit_members`: ``start``,
    ``busy``, ``done``, ``error``, ``n``, ``in_we``, ``in_addr``, ``in_data`` (the int32
    scores), ``out_addr``, ``out_data`` (the codes), ``flags``, ``flag_counts``) with six
    checks, bit ``i`` of ``flags`` and element ``i`` of ``flag_counts`` for
    ``SOFTMAX_CHECKS[i]`` (maximum, exponential, sum, reciprocal, total, peak); a flag may
    rise during the row, all are final with ``done``. Parameter ports:
    scale_m : In(16)
    scale_shift : In(6)
        CSRs ``M`` and ``sh``: the exponent is ``clamp((d * M) >> sh, 0, U_MAX)``.

    Raises
    ------
    TypeError
        If ``length``, ``exp_bits`` or ``count_bits`` is not an integer in its range, or
        ``checkers`` is not a bool.
    """

    CHECKS = SOFTMAX_CHECKS

    def __init__(self, *, length, exp_bits=MAX_EXP_BITS, checkers=True,
                 count_bits=DEFAULT_COUNT_BITS):
        self._length = check_int("Softmax length", length, 1, MAX_SOFTMAX_LENGTH)
        self._exp_bits = check_int("Softmax exp_bits", exp_bits, MIN_EXP_BITS, MAX_EXP_BITS)
        if not isinstance(checkers, bool):
            raise TypeError(f"Softmax checkers must be a bool, not {checkers!r}")
        self._checkers = checkers
        self._count_bits = check_count_bits("Softmax", count_bits)
        e, index = exp_bits, self.index_bits
        self._registers = {
            "maximum": Signal(signed(32), name="maximum", init=INT32_MIN),
            "difference": Signal(signed(33), name="difference"),
            "exponent": Signal(e + EXPONENT_INTEGER_BITS, name="exponent"),
            "exponential": Signal(e + 1, name="exponential"),
            "sum": Signal(e + index, name="sum"),
            "reciprocal": Signal(7 + index, name="reciprocal"),
            "output": Signal(signed(8), name="output_code"),
        }
        super().__init__(unit_members(
            length=length, checks=len(SOFTMAX_CHECKS), count_bits=count_bits,
            parameters={"scale_m": In(16), "scale_shift": In(6)}))

    @property
    def exp_bits(self):
        return self._exp_bits

    @property
    def precision(self):
        """``P = E + L``: the reciprocal's dividend is ``127 << P``."""
        return self._exp_bits + self.index_bits

    @property
    def quotient_bits(self):
        """``Q = 7 + L``: bits of the reciprocal, the divider's cycles."""
        return 7 + self.index_bits

    @property
    def stage_registers(self):
        """The register of each of the twin's stages that has one (``"output"`` is
        ``output_code``): for testbenches and fault injectors."""
        return dict(self._registers)

    def _check_n(self, n):
        return check_int("Softmax row length n", n, 1, self._length)

    def latency(self, n):
        """Clock edges from the one that samples ``start`` to the one after which ``done``
        is high: ``3n + L + 17`` (``3n + 26`` for ``length`` 256), the spec's
        ``3n + L + 8`` plus a pipeline depth of 9 (the first read, the maximum's last
        compare, four stages of pass 2, the divider's start and result cycles, two stages
        of pass 3, the final checks).

        Raises ``TypeError`` if ``n`` is not an integer from 1 to ``length``.
        """
        return 3 * self._check_n(n) + self.index_bits + 17

    def stage_cycle(self, n, stage, index=0):
        """The cycle (edges after ``start``, that edge included) in which the register of
        ``stage`` holds its final value for element ``index`` and has not been used yet.

        ``stage`` is one of :data:`SOFTMAX_REGISTERS`; ``index`` counts elements for the
        per-element stages (``difference``, ``exponent``, ``exponential``, ``output``)
        and must be 0 for the others. Changing the register in that cycle, after the edge
        (a testbench's ``ctx.set`` after ``ctx.tick``), has the effect of the twin's
        ``hook`` changing that stage's value.

        Raises
        ------
        TypeError
            If ``n`` or ``index`` is out of range, or ``stage`` is not a register stage.
        """
        n = self._check_n(n)
        per_element = {"difference": n + 3, "exponent": n + 4, "exponential": n + 5,
                       "output": 2 * n + self.quotient_bits + 9}
        per_row = {"maximum": n + 2, "sum": 2 * n + 5,
                   "reciprocal": 2 * n + self.quotient_bits + 7}
        if stage in per_element:
            return per_element[stage] + check_int("Softmax stage index", index, 0, n - 1)
        if stage in per_row:
            check_int("Softmax stage index", index, 0, 0)
            return per_row[stage]
        raise TypeError(f"Softmax stage must be one of {tuple(SOFTMAX_REGISTERS)}, "
                         f"not {stage!r}")

    def elaborate(self, platform):
        m = Module()
        e, index = self._exp_bits, self.index_bits
        precision, quotient_bits = self.precision, self.quotient_bits
        u_max = exponent_limit(e)
        dividend = ONE << precision
        regs = self._registers
        maximum, difference = regs["maximum"], regs["difference"]
        exponent, exponential = regs["exponent"], regs["exponential"]
        total, reciprocal, output = regs["sum"], regs["reciprocal"], regs["output"]

        # -- buffers, arithmetic blocks ------------------------------------------------
        m.submodules.row_buffer = row_buffer = Memory(shape=signed(32), depth=self._length,
                                                      init=[])
        m.submodules.output_buffer = output_buffer = Memory(shape=signed(8),
                                                            depth=self._length, init=[])
        row_read = row_buffer.read_port()
        row_write = row_buffer.write_port()
        output_write = output_buffer.write_port()
        output_read = output_buffer.read_port()
        m.submodules.shift_exponential = shift_exponential = ShiftExponential(exp_bits=e)
        m.submodules.divider = divider = RestoringDivider(
            dividend_bits=7 + precision, divisor_bits=e + index, quotient_bits=quotient_bits)

        # -- control registers -----------------------------------------------------------
        step = Signal(range(max((1 << index) + _EXPONENTIAL_DRAIN, 2)), name="step")
        row_length = Signal(range(self._length + 1), name="row_length")
        write_index = Signal(range(self._length), name="write_index")
        maximum_load = Signal(name="maximum_load")          # row_read.data is a pass-1 x
        difference_load = Signal(name="difference_load")    # ... a pass-2 x
        output_load = Signal(name="output_load")            # ... a pass-3 e
        difference_valid = Signal(name="difference_valid")
        exponent_valid = Signal(name="exponent_valid")
        exponential_valid = Signal(name="exponential_valid")
        output_valid = Signal(name="output_valid")
        row_done = Signal(name="row_done")
        start_error = Signal(name="start_error")
        idle = Signal()

        # -- the multiplier: d * M in pass 2, e * R and (check) s * R in pass 3 ----------
        multiplicand = Signal(signed(33), name="multiplicand")
        multiplier = Signal(16, name="multiplier")
        product = Signal(signed(49), name="product")
        shifted = product >> self.scale_shift
        exponent_next = Mux(shifted < 0, 0, Mux(shifted > u_max, u_max, shifted[:e + 5]))
        rounded = (product + (1 << (precision - 1))) >> precision
        output_next = Mux(rounded > ONE, ONE, rounded[:8])
        score = row_read.data
        stored_exponential = row_read.data[:e + 1]

        # -- the row pipeline ------------------------------------------------------------
        # (Its registers are assigned before any comb statement aliases them to a memory
        # port: the netlist then names each flip-flop after its register.)
        m.d.sync += [
            maximum_load.eq(0), difference_load.eq(0), output_load.eq(0),
            difference_valid.eq(difference_load),
            exponent_valid.eq(difference_valid),
            exponential_valid.eq(exponent_valid),
            output_valid.eq(output_load),
        ]
        with m.If(maximum_load & (score > maximum)):
            m.d.sync += maximum.eq(score)
        with m.If(difference_load):
            m.d.sync += difference.eq(maximum - score)
        with m.If(difference_valid):
            m.d.sync += exponent.eq(exponent_next)
        with m.If(exponent_valid):
            m.d.sync += exponential.eq(shift_exponential.exponential)
        with m.If(exponential_valid):
            m.d.sync += [total.eq(total + exponential), write_index.eq(write_index + 1)]
        with m.If(output_load):
            m.d.sync += output.eq(output_next)
        with m.If(output_valid):
            m.d.sync += write_index.eq(write_index + 1)

        m.d.comb += [
            product.eq(multiplicand * multiplier),
            shift_exponential.exponent.eq(exponent),
            row_read.addr.eq(step),
            output_write.addr.eq(write_index),
            output_write.data.eq(output),
            output_write.en.eq(output_valid),
            output_read.addr.eq(self.out_addr),
            self.out_data.eq(output_read.data),
            self.busy.eq(~idle),
            self.done.eq(row_done),
            self.error.eq(start_error),
        ]

        # The row buffer's one write port: the host while idle, the exponentials in pass 2.
        with m.If(idle):
            m.d.comb += [row_write.addr.eq(self.in_addr), row_write.data.eq(self.in_data),
                         row_write.en.eq(self.in_we)]
        with m.Else():
            m.d.comb += [row_write.addr.eq(write_index), row_write.data.eq(exponential),
                         row_write.en.eq(exponential_valid)]

        # -- checkers --------------------------------------------------------------------
        accepted = Signal()
        sum_check = Signal()
        reciprocal_check = Signal()
        finish = Signal()
        if self._checkers:
            m.submodules.checker = checker = SoftmaxChecker(length=self._length, exp_bits=e,
                                                              count_bits=self._count_bits)
            m.d.comb += [
                checker.clear.eq(accepted),
                checker.sum_check.eq(sum_check),
                checker.reciprocal_check.eq(reciprocal_check),
                checker.finish.eq(finish),
                checker.row_length.eq(row_length),
                checker.difference.eq(difference),
                checker.difference_valid.eq(difference_valid),
                checker.exponent.eq(exponent),
                checker.exponent_valid.eq(exponent_valid),
                checker.exponential.eq(exponential),
                checker.exponential_valid.eq(exponential_valid),
                checker.sum.eq(total),
                checker.reciprocal.eq(reciprocal),
                checker.product.eq(product[:len(checker.product)]),
                checker.output.eq(output),
                checker.output_valid.eq(output_valid),
                self.flags.eq(checker.flags),
                self.flag_counts.eq(checker.flag_counts),
            ]

        # -- control ---------------------------------------------------------------------
        reading = step < row_length
        legal_n = (self.n != 0) & (self.n <= self._length)
        with m.FSM(name="softmax"):
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(self.start):
                    with m.If(legal_n):
                        m.d.comb += accepted.eq(1)
                        m.d.sync += [step.eq(0), row_length.eq(self.n),
                                     maximum.eq(INT32_MIN), total.eq(0), write_index.eq(0),
                                     row_done.eq(0), start_error.eq(0)]
                        m.next = "MAXIMUM"
                    with m.Else():
                        m.d.sync += [row_done.eq(0), start_error.eq(1)]
            with m.State("MAXIMUM"):
                m.d.sync += [maximum_load.eq(1), step.eq(step + 1)]
                with m.If(step + 1 >= row_length):
                    m.d.sync += step.eq(0)
                    m.next = "EXPONENTIAL"
            with m.State("EXPONENTIAL"):
                m.d.comb += [multiplicand.eq(difference), multiplier.eq(self.scale_m)]
                m.d.sync += [difference_load.eq(reading), step.eq(step + 1)]
                with m.If(step >= row_length + (_EXPONENTIAL_DRAIN - 1)):
                    m.d.sync += step.eq(0)
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.comb += [divider.dividend.eq(dividend), divider.divisor.eq(total)]
                with m.If(step == 0):
                    m.d.comb += [divider.start.eq(1), sum_check.eq(1)]
                    m.d.sync += step.eq(1)
                with m.Elif(~divider.busy):
                    m.d.sync += [reciprocal.eq(divider.quotient), step.eq(0),
                                 write_index.eq(0)]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                # The first cycle multiplies R by s for the reciprocal check; then e_i by R.
                if self._checkers:
                    m.d.comb += multiplicand.eq(Mux(output_load, stored_exponential, total))
                else:
                    m.d.comb += multiplicand.eq(stored_exponential)
                m.d.comb += [multiplier.eq(reciprocal), reciprocal_check.eq(step == 0)]
                m.d.sync += [output_load.eq(reading), step.eq(step + 1)]
                with m.If(step >= row_length + (_OUTPUT_DRAIN - 1)):
                    m.next = "FINISH"
            with m.State("FINISH"):
                if self._checkers:
                    # (R + 1) s for the reciprocal check. R + 1 wraps to 0 only for
                    # L = 9 and R = 2**16 - 1, a quotient that fails the check whatever s
                    # is (no integer s has 65535 s <= 127 << P < 65536 s), as it does with
                    # the product 0.
                    m.d.comb += [multiplicand.eq(total), multiplier.eq(reciprocal + 1)]
                m.d.comb += finish.eq(1)
                m.d.sync += row_done.eq(1)
                m.next = "IDLE"
        with m.If(self.start & ~idle):
            m.d.sync += start_error.eq(1)
        return m
