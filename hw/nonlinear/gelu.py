"""The integer GELU unit and its checkers (docs/nonlinear.md, "GELU")."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import memory
from amaranth.lib.wiring import In

from hw.nonlinear.compare import less_than
from hw.nonlinear.divider import RestoringDivider
from hw.nonlinear.interface import (
    DEFAULT_COUNT_BITS,
    NonlinearUnit,
    check_count_bits,
    count_row,
    unit_members,
)
from hw.nonlinear.shift_exponential import (
    MAX_EXP_BITS,
    MIN_EXP_BITS,
    ExponentialCheck,
    ShiftExponential,
    exponent_limit,
)
from hw.validation import check_int

__all__ = ["GeluUnit", "GELU_CHECKS", "MAX_GELU_LENGTH", "GELU_STAGE_REGISTERS"]

#: Longest row the unit can buffer (``n`` is a 16-bit CSR).
MAX_GELU_LENGTH = 65535
#: The checkers, in the order of the bits of ``flags`` and of ``flag_counts``.
GELU_CHECKS = ("exponential", "quotient", "sigmoid", "output")
#: The register that holds each intermediate of the specification (the stages of the
#: twin, ``sw.twin.nonlinear.gelu.GELU_STAGES``), by name in :attr:`GeluUnit.registers`.
GELU_STAGE_REGISTERS = {"input": "x", "exponent": "u", "exponential": "e",
                        "quotient": "g", "sigmoid": "sigma", "output": "o"}

_OUTPUT_LIMIT = 127


class GeluUnit(NonlinearUnit):
    """Integer GELU of a row of int8 codes, ``o ~ x sigmoid(1.702 x)``, with its checkers.

    Per element ``x`` (docs/nonlinear.md, "GELU"): ``u = min((|x| M) >> sh, U_MAX)``,
    ``e = exp2neg(u)``, ``g = divide(e << K, 2^E + e, K)``, ``σ = 2^K - g`` if ``x >= 0``
    else ``g``, ``o = clamp((x σ + 2^(K-1)) >> K, -127, 127)``, on one multiplier (signed
    9 x unsigned 16 bits: ``|x| M``, then ``x σ``) and one restoring divider.

    **Use** (the common unit interface of docs/nonlinear.md, as the softmax unit's). While
    the unit is idle the host writes the row's codes into the input buffer (``in_we``,
    ``in_addr``, ``in_data``; only ``in_data[:8]`` is stored, and writes while ``busy`` are
    ignored), sets the CSRs ``n``, ``scale_m`` and ``scale_shift`` and pulses ``start``.
    ``n`` is copied into ``row_length`` by the accepted ``start``; ``scale_m`` and
    ``scale_shift`` are read throughout the row, so the host holds them while ``busy``.
    ``done`` rises :meth:`latency` ``(n)`` clock edges after ``start`` and stays high until
    the next accepted ``start``; the row's codes are then in the output buffer (element
    ``i`` at address ``i``; ``out_data`` is the code at the ``out_addr`` of the previous
    edge, **one cycle of read latency**) and ``flags`` tells which checks failed on some
    element of the row. The input buffer keeps the row. Both buffers are
    :class:`amaranth.lib.memory.Memory` of ``length`` int8 words (not fault sites).

    **Refused and ignored starts.** A ``start`` with ``n == 0`` or ``n > length`` is refused:
    the unit stays idle, ``done`` is cleared and ``error`` is set (``flags`` and the
    counters are left alone). A ``start`` while
    ``busy`` is ignored and sets ``error``; the running row finishes normally (its flags
    and counts as without the start). The next accepted ``start`` clears ``error``.

    **Timing.** An accepted ``start`` clears ``done``, ``error`` and ``flags``, sets
    ``busy`` and begins the row; the elements go through a schedule of period ``P = K + 2``
    cycles in which the divider works on element ``i`` while the front stages (read, ``x``,
    ``u``, ``e``) prepare element ``i + 1`` and the back stages (``o``, the output write)
    finish element ``i - 1``. :meth:`latency` ``(n) = n (K + 2) + 7`` clock edges, counted
    from the one that samples ``start`` to the one after which ``done`` is high, both
    included. :meth:`register_cycle` says when each register
    holds an element's value (for fault injection).

    **Twin stages** (for the twin check of fault campaigns): every stage of the twin
    (``GELU_STAGES``) lives in a register, :attr:`stage_registers` (``input`` ``x``,
    ``exponent`` ``u``, ``exponential`` ``e``, ``quotient`` the divider's ``quotient``,
    ``sigmoid`` ``sigma``, ``output`` ``o``; :attr:`stage_paths` their netlist paths), each
    per element, and :meth:`stage_cycle` is the cycle after which it holds element ``i``
    and nothing has read it yet. An upset there is the twin's ``hook`` flipping that
    element of the stage: the register keeps the flipped value until every reader has
    seen it (``x`` feeds ``u`` in that cycle and is copied into ``x_back``, which the back
    stages and their checks read, a period later; ``u`` feeds ``e`` and, a cycle later, the
    exponential check; ``e`` is the divider's dividend and divisor through the division and
    read by both its checks; ``g`` is held for one cycle, read by ``sigma`` and the
    quotient check; ``sigma`` and ``o`` are read in one cycle), and nothing of another
    element reads it.

    **Checkers** (``checkers=True``), one bit each of ``flags`` in the order of
    :data:`GELU_CHECKS`: ``exponential`` (``u <= U_MAX`` and ``2^(E-1) >> q <= e <= 2^E >>
    q``), ``quotient`` (``e >> (E+1-K) <= g <= e >> (E-K)``), ``sigmoid`` (``2^(K-1) <= σ
    <= 2^K`` if ``x >= 0``, ``σ <= 2^(K-1)`` if ``x < 0``), ``output`` (``(x + 1) >> 1 <= o
    <= max(x, 0)``). Each is evaluated once per element, in the cycle its registers hold
    that element; a failure sets its bit of ``flags`` until the next accepted ``start``. At
    the end of the row each ``flag_counts[c]`` (a ``count_bits``-bit counter, saturating at
    ``2^count_bits - 1``, cleared only by reset) counts the row if its flag is set. With
    ``checkers=False`` none of this logic is built and ``flags`` and ``flag_counts`` read 0.

    **Registers** (:attr:`registers`, named as here in the netlist; no ``fault_class``
    attribute: the integration classifies them as the ``gelu`` unit's). Datapath: ``x``
    (the input code, ``s 8``), ``x_back`` (``x`` of the element in the back stages,
    ``s 8``), ``u`` (``u (E+5)``), ``e`` (``u (E+1)``), the divider's ``quotient`` (``g``,
    ``u K``), ``remainder`` (``u (E+2)``) and ``saturated``, ``sigma`` (``u (K+1)``), ``o``
    (``s 8``). Control: ``phase``, ``element``, ``row_length``, the divider's ``count``,
    ``busy``, ``done``, ``error`` (the ports are the registers). Checkers: ``flags`` (the
    port) and ``<check>_count`` for each check of :data:`GELU_CHECKS`.

    Parameters
    ----------
    length : int
        Longest row, 1 .. 65535 (the depth of the buffers).
    exp_bits : int
        ``E``, 8 .. 15 (default 15).
    sigmoid_bits : int
        ``K``, 2 .. ``exp_bits`` (default 8).
    checkers : bool
        Build the checkers (default True).
    count_bits : int
        Width of each counter of ``flag_counts``, 1 .. 32 (default 8).

    Members
    -------
    The common unit interface (:func:`~hw.nonlinear.interface.unit_members`: ``start``,
    ``busy``, ``done``, ``error``, ``n``, ``in_we``, ``in_addr``, ``in_data`` (only
    ``in_data[:8]`` is stored), ``out_addr``, ``out_data``, ``flags``, ``flag_counts``) with
    four checks, bit ``i`` of ``flags`` and element ``i`` of ``flag_counts`` for
    ``GELU_CHECKS[i]``. Parameter ports:
    scale_m : In(16)
    scale_shift : In(6)
        The CSR pair ``(M, sh)`` of ``c = 1.702 S log2(e) 2^E``.

    Raises
    ------
    TypeError
        If a parameter is not of its type or not in its range.
    ValueError
        If ``sigmoid_bits`` exceeds ``exp_bits``.
    """

    CHECKS = GELU_CHECKS

    def __init__(self, *, length, exp_bits=15, sigmoid_bits=8, checkers=True,
                 count_bits=DEFAULT_COUNT_BITS):
        self._length = check_int("GELU length", length, 1, MAX_GELU_LENGTH)
        self._exp_bits = check_int("GELU exp_bits", exp_bits, MIN_EXP_BITS, MAX_EXP_BITS)
        self._sigmoid_bits = check_int("GELU sigmoid_bits", sigmoid_bits, 2, MAX_EXP_BITS)
        if sigmoid_bits > exp_bits:
            raise ValueError(f"GELU sigmoid_bits {sigmoid_bits!r} exceeds exp_bits "
                             f"{exp_bits!r}")
        if not isinstance(checkers, bool):
            raise TypeError(f"GELU checkers must be a bool, not {checkers!r}")
        self._checkers = checkers
        self._count_bits = check_count_bits("GELU", count_bits)
        checks = len(GELU_CHECKS)
        super().__init__(unit_members(
            length=length, checks=checks, count_bits=count_bits,
            parameters={"scale_m": In(16), "scale_shift": In(6)}))
        e, k = exp_bits, sigmoid_bits
        self._divider = RestoringDivider(dividend_bits=e + 1 + k, divisor_bits=e + 2,
                                         quotient_bits=k, src_loc_at=1)
        self._registers = {
            "x": Signal(signed(8), name="x"),
            "x_back": Signal(signed(8), name="x_back"),
            "u": Signal(e + 5, name="u"),
            "e": Signal(e + 1, name="e"),
            "g": self._divider.quotient,
            "remainder": self._divider.remainder,
            "saturated": self._divider.saturated,
            "sigma": Signal(k + 1, name="sigma"),
            "o": Signal(signed(8), name="o"),
            "phase": Signal(range(k + 2), name="phase"),
            "element": Signal(range(length + 2), name="element"),
            "row_length": Signal(range(length + 1), name="row_length"),
            "count": self._divider.count,
            "busy": self.busy,
            "done": self.done,
            "error": self.error,
        }
        if checkers:
            self._registers["flags"] = self.flags
            for name in GELU_CHECKS:
                self._registers[f"{name}_count"] = Signal(count_bits, name=f"{name}_count")

    @property
    def exp_bits(self):
        return self._exp_bits

    @property
    def sigmoid_bits(self):
        return self._sigmoid_bits

    @property
    def period(self):
        """Cycles per element, ``K + 2``."""
        return self._sigmoid_bits + 2

    @property
    def stage_registers(self):
        """The register of each of the twin's stages (all of ``GELU_STAGES``; ``quotient``
        is the divider's ``quotient``): for testbenches and fault injectors."""
        return {stage: self._registers[name] for stage, name in GELU_STAGE_REGISTERS.items()}

    @property
    def stage_paths(self):
        """The netlist path of each stage register inside the unit: its name, except
        ``divider.quotient`` (a register of the divider, not of the unit itself)."""
        paths = {"g": "divider.quotient"}
        return {stage: paths.get(name, name) for stage, name in GELU_STAGE_REGISTERS.items()}

    @property
    def registers(self):
        """The unit's registers by name (a new dict): the signals a testbench reads or
        upsets. ``g`` is the divider's ``quotient`` register."""
        return dict(self._registers)

    def latency(self, n):
        """Clock edges from the one that samples ``start`` to the one after which ``done``
        is high, both included, for a row of ``n`` elements: ``n (K + 2) + 7``.

        Raises ``TypeError`` if ``n`` is not an integer from 1 to ``length``.
        """
        check_int("GELU row length n", n, 1, self._length)
        return n * self.period + 7

    def register_cycle(self, name, index):
        """Clock edges, counted from the one that samples ``start`` (1), after which
        register ``name`` holds element ``index``'s value.

        ``index P`` plus ``x`` 3, ``u`` 4, ``e`` 5, ``x_back`` ``K + 5``, ``g`` ``K + 6``,
        ``sigma`` ``K + 7``, ``o`` ``K + 8``, ``P = K + 2``. Each holds the value for ``P``
        cycles from then on, except ``g`` (one cycle: the divider's ``quotient`` is its
        working register before and the next division's after). Element ``index`` of the
        output buffer is written at edge ``index P + K + 9``. Upsetting a register in the
        cycle given here is the twin's ``hook`` replacing that element of the stage
        (:data:`GELU_STAGE_REGISTERS`): every later stage and check sees it.
        """
        k = self._sigmoid_bits
        offsets = {"x": 3, "u": 4, "e": 5, "x_back": k + 5, "g": k + 6, "sigma": k + 7,
                   "o": k + 8}
        if name not in offsets:
            raise TypeError(f"GELU register name must be one of {sorted(offsets)}, not "
                            f"{name!r}")
        check_int("GELU element index", index, 0, self._length - 1)
        return index * self.period + offsets[name]

    def stage_cycle(self, n, stage, index=0):
        """The cycle (edges after ``start``, that edge included) in which the register of
        ``stage`` holds its final value for element ``index`` and has not been used yet:
        :meth:`register_cycle` of its register.

        ``stage`` is one of :data:`GELU_STAGE_REGISTERS`, all per element (``index`` from 0
        to ``n - 1``). Changing the register in that cycle, after the edge (a testbench's
        ``ctx.set`` after ``ctx.tick``), has the effect of the twin's ``hook`` changing
        that element of the stage.

        Raises
        ------
        TypeError
            If ``n`` or ``index`` is out of range, or ``stage`` is not a stage.
        """
        n = check_int("GELU row length n", n, 1, self._length)
        if not isinstance(stage, str) or stage not in GELU_STAGE_REGISTERS:
            raise TypeError(f"GELU stage must be one of {tuple(GELU_STAGE_REGISTERS)}, not "
                            f"{stage!r}")
        index = check_int("GELU stage index", index, 0, n - 1)
        return self.register_cycle(GELU_STAGE_REGISTERS[stage], index)

    def elaborate(self, platform):
        m = Module()
        e, k, length = self._exp_bits, self._sigmoid_bits, self._length
        reg = self._registers
        x, x_back, u, exponential, sigma, o = (reg[name] for name in
                                               ("x", "x_back", "u", "e", "sigma", "o"))
        phase, element, rows = reg["phase"], reg["element"], reg["row_length"]
        g = reg["g"]
        busy, done, error = self.busy, self.done, self.error

        # The sync domain is used first: Amaranth names a flip-flop after the first signal
        # it meets on its net, so the registers' statements come before the comb ones that
        # copy them into ports of the submodules (fault sites are found by name).

        # Schedule: period j (element = j + 1) reads element j + 1 (front), divides
        # element j, and finishes element j - 1 (back). A row runs from phase K - 2 of
        # period -1 to phase 1 of period n.
        front_valid = element < rows
        divider_valid = (element != 0) & (element <= rows)
        back_valid = element >= 2

        def at(p):
            return busy & (phase == p)

        last = at(1) & (element > rows)
        accepted = Signal()      # an idle start with 1 <= n <= length
        with m.If(accepted):
            m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), phase.eq(k - 2),
                         element.eq(0), rows.eq(self.n)]
        with m.Elif(self.start):  # refused (idle) or ignored (busy: the row goes on)
            m.d.sync += error.eq(1)
            with m.If(~busy):
                m.d.sync += done.eq(0)
        with m.If(busy):
            with m.If(phase == k + 1):
                m.d.sync += [phase.eq(0), element.eq(element + 1)]
            with m.Else():
                m.d.sync += phase.eq(phase + 1)
            with m.If(last):
                m.d.sync += [busy.eq(0), done.eq(1)]

        # Buffers: the host writes codes and reads results; the unit reads and writes.
        m.submodules.input_buffer = input_buffer = memory.Memory(
            shape=signed(8), depth=length, init=[])
        host_write = input_buffer.write_port()
        unit_read = input_buffer.read_port()
        m.submodules.output_buffer = output_buffer = memory.Memory(
            shape=signed(8), depth=length, init=[])
        unit_write = output_buffer.write_port()
        host_read = output_buffer.read_port()
        m.d.comb += [
            accepted.eq(self.start & ~busy & (self.n != 0) & (self.n <= length)),
            host_write.en.eq(self.in_we & ~busy),
            host_write.addr.eq(self.in_addr),
            host_write.data.eq(self.in_data[:8]),
            host_read.addr.eq(self.out_addr),
            self.out_data.eq(host_read.data),
        ]

        # Front: read at phase K - 2, x at K - 1 (x_back takes the previous x), u at K
        # (the multiplier), e at K + 1.
        m.d.comb += [unit_read.addr.eq(element), unit_read.en.eq(front_valid)]
        with m.If(at(k - 1)):
            m.d.sync += [x.eq(unit_read.data), x_back.eq(x)]

        multiplier_a = Signal(signed(9))
        multiplier_b = Signal(16)
        product = Signal(signed(25))
        output_phase = at(0)
        m.d.comb += [
            multiplier_a.eq(Mux(output_phase, x_back, abs(x))),
            multiplier_b.eq(Mux(output_phase, sigma, self.scale_m)),
            product.eq(multiplier_a * multiplier_b),
        ]
        scaled = product[:24] >> self.scale_shift
        u_max = exponent_limit(e)
        with m.If(at(k)):
            m.d.sync += u.eq(Mux(scaled > u_max, u_max, scaled))

        m.submodules.exponential = exp2neg = ShiftExponential(exp_bits=e)
        m.d.comb += exp2neg.exponent.eq(u)
        with m.If(at(k + 1)):
            m.d.sync += exponential.eq(exp2neg.exponential)

        # Divider: loads e at phase 0, iterates in phases 1 .. K; g is ready at K + 1.
        m.submodules.divider = divider = self._divider
        m.d.comb += [
            divider.start.eq(at(0)),
            divider.dividend.eq(exponential << k),
            divider.divisor.eq((1 << e) + exponential),
        ]

        # Back: sigma at K + 1 (of element j), o at phase 0 and the write at phase 1 (of
        # element j - 1, in the next period).
        with m.If(at(k + 1)):
            m.d.sync += sigma.eq(Mux(x_back >= 0, (1 << k) - g, g))
        rounded = (product + (1 << (k - 1))) >> k
        with m.If(output_phase):
            m.d.sync += o.eq(Mux(rounded > _OUTPUT_LIMIT, _OUTPUT_LIMIT,
                                 Mux(rounded < -_OUTPUT_LIMIT, -_OUTPUT_LIMIT, rounded)))
        m.d.comb += [
            unit_write.addr.eq(element - 2),
            unit_write.data.eq(o),
            unit_write.en.eq(at(1) & back_valid),
        ]

        if self._checkers:
            self._elaborate_checkers(m, at, divider_valid, back_valid, last, accepted)
        return m

    def _elaborate_checkers(self, m, at, divider_valid, back_valid, last, accepted):
        e, k = self._exp_bits, self._sigmoid_bits
        reg = self._registers
        x_back, u, exponential, g, sigma, o = (reg[name] for name in
                                               ("x_back", "u", "e", "g", "sigma", "o"))

        m.submodules.exponential_check = exponential_check = ExponentialCheck(exp_bits=e)
        m.d.comb += [exponential_check.exponent.eq(u),
                     exponential_check.exponential.eq(exponential)]
        quotient_fail = (less_than(g, exponential >> (e + 1 - k))
                         | less_than(exponential >> (e - k), g))
        # The sigmoid bounds are powers of two: bit tests on sigma[K], sigma[K-1] and the rest.
        low_bits = sigma[:k - 1] != 0
        below_half = ~sigma[k] & ~sigma[k - 1]
        above_one = sigma[k] & (sigma[k - 1] | low_bits)
        above_half = sigma[k] | (sigma[k - 1] & low_bits)
        sigmoid_fail = Mux(x_back[-1], above_half, below_half | above_one)
        # o < (x + 1) >> 1 is 2o < x, and o > max(x, 0) is o > x and o > 0: no adder.
        output_fail = less_than(o << 1, x_back) | (less_than(x_back, o) & ~o[-1] & o.any())

        # Each check in the cycle its registers hold the same element (see register_cycle).
        raised = Signal(len(GELU_CHECKS), name="flag_raised")
        m.d.comb += raised.eq(Cat(
            at(0) & divider_valid & exponential_check.fail,
            at(k + 1) & divider_valid & quotient_fail,
            at(0) & back_valid & sigmoid_fail,
            at(1) & back_valid & output_fail))

        flags = self.flags
        with m.If(accepted):
            m.d.sync += flags.eq(0)
        with m.Else():
            m.d.sync += flags.eq(flags | raised)

        row_flags = flags | raised
        for index, name in enumerate(GELU_CHECKS):
            count = reg[f"{name}_count"]
            count_row(m, count, last & row_flags[index])
            m.d.comb += self.flag_counts[index].eq(count)
