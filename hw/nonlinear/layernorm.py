"""The integer LayerNorm unit and its checkers (docs/nonlinear.md, "LayerNorm")."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import enum
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from hw.nonlinear.compare import at_most, less_than
from hw.nonlinear.divider import RestoringDivider
from hw.nonlinear.interface import (
    DEFAULT_COUNT_BITS,
    NonlinearUnit,
    check_count_bits,
    count_row,
    unit_members,
)
from hw.nonlinear.leading_zeros import LeadingZeroCount
from hw.nonlinear.square_root import SquareRoot
from hw.validation import check_int

__all__ = ["LayerNormUnit", "Phase", "LAYERNORM_CHECKS", "MAX_LAYERNORM_LENGTH", "GUARD_BITS",
           "OUTPUT_LIMIT", "LAYERNORM_STAGE_REGISTERS"]

#: The checkers, in the order of ``flags`` and ``flag_counts`` (the spec's checker table).
LAYERNORM_CHECKS = ("mean", "variance", "root", "reciprocal", "normalized", "output")
#: Longest row.
MAX_LAYERNORM_LENGTH = 1023
#: Guard bits ``c`` of the normalized reciprocal.
GUARD_BITS = 2
#: Outputs saturate to +-OUTPUT_LIMIT.
OUTPUT_LIMIT = 127
#: The twin's stages (``sw.twin.nonlinear.layernorm.LAYERNORM_STAGES``) a register holds as
#: the twin's hook sees them, each in the register of its name: one value per row, then one
#: per element (``total`` only without the checkers: see :class:`LayerNormUnit`).
LAYERNORM_STAGE_REGISTERS = ("total", "mean", "variance", "root", "reciprocal", "normalized",
                             "affine", "output")
#: The per-element stages' cycles in pass 3, ``2i +`` this after its step 0.
_ELEMENT_STAGE_STEPS = {"normalized": 3, "affine": 4, "output": 5}


class Phase(enum.Enum, shape=4):
    """The unit's schedule, the value of its ``phase`` register."""
    IDLE = 0
    TOTAL = 1               # pass 1: T
    MEAN_LAUNCH = 2         # the mean divide
    MEAN_WAIT = 3
    VARIANCE = 4            # pass 2: y, V, sum y, p
    PAD = 5                 # P; the mean check
    RADICAND = 6            # s and Q
    ROOT_LAUNCH = 7         # the square root
    ROOT_WAIT = 8           # ... and the variance check
    ROOT_CHECK = 9          # l; the square root again (the root check)
    RECIPROCAL_LAUNCH = 10  # t; the reciprocal divide
    RECIPROCAL_WAIT = 11
    RECIPROCAL_CHECK = 12   # the divide again; the root and reciprocal checks
    OUTPUT = 13             # pass 3: y, z, a, o


def _saturate(value, width, symmetric=False):
    """Signed ``value`` clamped to ``[-2**(width-1), 2**(width-1) - 1]`` (to
    ``+-(2**(width-1) - 1)`` if ``symmetric``), from its top bits: it fits when the bits
    from ``width - 1`` up are all equal."""
    top = (1 << (width - 1)) - 1
    head = value[width - 1:]
    fits = (head == 0) | (head == (1 << len(head)) - 1)
    if symmetric:
        fits &= ~(value[width - 1] & (value[:width - 1] == 0))
    return Mux(fits, value[:width].as_signed(), Mux(value[-1], -top if symmetric else -top - 1,
                                                    top))


def _magnitude(value):
    return Mux(value < 0, -value, value)


class LayerNormUnit(NonlinearUnit):
    """Integer LayerNorm of one row of signed ``B``-bit codes into int8 codes, with checkers.

    Computes exactly the integers of docs/nonlinear.md ("LayerNorm"), as the bit-exact twin
    ``sw.twin.nonlinear.layernorm`` does: the total ``T``, the rounded mean ``μ`` (one
    division), the sum of squares ``V`` of ``y = x - μ``, the root ``r`` of the normalized
    radicand ``Q = P << 2s``, ``P = min(V + ε, 2**(2B+L) - 1)``, the normalized reciprocal
    ``R``, then per element ``z = clamp((y R) >> t)``, ``a = z G + C`` and
    ``o = clamp(a >> W, -127, 127)``. One multiplier, one restoring divider (the mean and
    the reciprocal, twice: the reciprocal check), one bit-serial square root.

    **Use** (the common unit interface of docs/nonlinear.md, as the softmax and GELU
    units'). While the unit is idle the host writes the row into the input buffer
    (``in_we``, ``in_addr``, ``in_data``: the low ``B`` bits are the code, bits ``B`` .. 31
    are ignored), the per-channel gains and offsets (``gain_*``, ``offset_*``, usually once;
    the spec bounds ``|G| <= 32767``, ``-32768`` is computed with as written), sets the CSRs
    ``n``, ``out_shift`` and ``epsilon`` and pulses ``start``. Writes to the three memories
    while ``busy`` are ignored. ``n`` is copied into ``row_length`` by the accepted
    ``start``; ``out_shift`` and ``epsilon`` are read during the row, so the host holds
    them while ``busy``. ``done`` rises :meth:`latency` ``(n)`` clock edges after ``start``
    (the edge that samples ``start`` is the first) and stays high until the next accepted
    ``start``; the int8 codes are then in the output buffer (``out_addr`` -> ``out_data``,
    **one cycle of read latency**) and ``flags`` holds the row's checker flags. The input
    buffer and the memories keep their words.

    **Refused and ignored starts.** A ``start`` with ``n == 0`` or ``n > length`` is refused:
    the unit stays idle, ``done`` is cleared and ``error`` is set (``flags`` and the
    counters are left alone). A ``start`` while ``busy`` is ignored and sets ``error``; the
    running row finishes normally. The next accepted ``start`` clears ``error``, ``done``
    and ``flags``.

    **Schedule** (cycles after the start edge; one schedule with or without the checkers):
    pass 1 sums ``T`` (``n + 1``); the mean divide (launch, ``B`` cycles, latch: ``B + 2``);
    pass 2 computes ``y``, ``V``, ``sum y`` and ``p`` (``n + 2``); ``P`` (1); ``s`` and
    ``Q`` (1); the square root (launch, then :attr:`root_wait` ``= max(H + 1, L + 2)``
    cycles, the variance check's steps among them; latch ``r``); ``l`` (1, the square root
    starts again); the
    reciprocal divide (launch with ``t``, ``Z + c + 2`` cycles, latch: ``Z + c + 4``); the
    same divide again, until both it and the second square root are done
    (:attr:`recheck_wait` ``= max(Z + c + 4, H - Z - c - 3)``; the root and reciprocal
    checks); pass 3, two multiplies per element (``2n + 4``). Hence :meth:`latency`
    ``= 4n + B + Z + 20 + max(H + 1, L + 2) + max(Z + c + 4, H - Z - c - 3)`` edges, the
    start edge included.

    **Twin stages** (for the twin check of fault campaigns): :attr:`stage_registers` maps
    each of the twin's stages that a register holds exactly as the twin's ``hook`` sees it
    to that register (named as the stage), and :meth:`stage_cycle` is the cycle in which
    it first holds the stage's value for element ``index``, before any reader. The register
    then keeps it until every reader, the checkers included, has seen it, and no other
    element's or row's value reads it: an upset there is the hook changing that element.
    Per row (``index`` 0): ``total`` in ``MEAN_LAUNCH``, cycle ``n + 2`` (read once, by the
    mean divide); ``mean`` in the first ``VARIANCE`` cycle, ``n + B + 4`` (read by pass 2
    and pass 3, where ``y`` is formed); ``variance`` in ``PAD``, ``2n + B + 6`` (read by
    ``P`` and, in ``ROOT_WAIT``, the variance check); ``root`` in ``ROOT_CHECK``, ``2n + B
    + 9 + root_wait`` (read by ``l``, the normalized check's bound, both reciprocal divides
    and the root check); ``reciprocal`` in the first ``RECIPROCAL_CHECK`` cycle, ``O -
    recheck_wait`` (read by the reciprocal check and pass 3). Per element ``i``, from pass
    3's step 0 in cycle ``O = latency(n) - 2n - 4``: ``normalized`` ``O + 2i + 3`` (read by
    ``a``, the ``|z|`` check and, a cycle later, the output check's side), ``affine`` ``O
    + 2i + 4`` (read by ``o``), ``output`` ``O + 2i + 5`` (written and checked). Not
    mapped: ``input`` (in a memory, not a register); ``centred`` (``y`` is formed twice
    from ``x`` and ``μ``, in pass 2 for ``V`` and the mean and variance checks, again in
    pass 3 for ``z`` and the normalized check: an upset in one pass reaches that pass's
    readers only, the hook all of them); and with the checkers ``total`` (3 bits wider
    than the twin's stage, for the mean check: an upset of one of those bits changes
    ``μ``, the hook's flip of it is cut off by the stage's width and changes nothing).

    Registers (flip-flops, fault sites; the names of :attr:`registers`): ``total`` (T;
    with the mean check 3 bits wider, and the check's running sum ``2 sum y + n`` in pass 2),
    ``mean`` (μ), ``centred`` (y, recomputed from ``x`` and ``μ`` in pass 3), ``variance``
    (V; with the variance check the check's running value in ``ROOT_WAIT``), ``padded``
    (P), ``scale`` (s), ``radicand`` (Q), ``root`` (r), ``root_length`` (l),
    ``normalize_shift`` (t), ``reciprocal`` (R), ``normalized`` (z), ``affine`` (a),
    ``output`` (o); control ``phase`` (:class:`Phase`), ``step``, ``row_length``, ``done``
    and ``error`` (the ports are the registers); with checkers also ``peak`` (p in pass 2,
    the normalized check's bound ``min(r >> s, 2**(B+1) - 1)`` in pass 3), ``output_centre`` and
    ``output_bound`` (the ``k`` and the far bound of the output check), ``output_upper``
    (its side), ``flags`` (the port) and the ``<check>_count`` counters. The divider and
    square root keep their own ``remainder``, ``quotient``/``root``, ``count`` (and
    ``saturated``). No ``fault_class`` attribute: the integration classifies them as the
    ``layernorm`` unit's. Buffers and per-channel memories are
    :class:`~amaranth.lib.memory.Memory` (not fault sites).

    Checkers (``checkers=True``): one sticky bit per check of :data:`LAYERNORM_CHECKS`
    (the spec's checker table) in ``flags``, cleared by ``start``; when a row ends, each
    check's counter in ``flag_counts`` (``count_bits`` wide, saturating at
    ``2^count_bits - 1``) counts it if its flag is set (counters are cleared only by
    reset). ``mean`` is checked in the ``P`` cycle (``0 <= 2 sum y + n < 2n``, the sum
    accumulated in pass 2 on the total's register and adder); ``variance`` (``p < 2**B``,
    ``p**2 <= V`` and ``V <= n p**2``) in ``ROOT_WAIT``, on the multiplier and the variance
    adder and register (idle then): ``p**2 - V - 1`` in step 0, then ``V <= n p**2`` one
    bit of ``n`` per step, lowest first (``d <- (d + n_j p[:B]**2) >> 1`` from ``d = -V``:
    after ``j`` steps ``d = floor(((n mod 2**j) p**2 - V) / 2**j)``), raised in step
    ``L + 1`` if ``d < 0``; ``root`` (``r = isqrt(Q)``, i.e. ``r**2 <= Q <= r**2 + 2r``) and
    ``reciprocal`` (``R = floor(2**(Z+c+l) / r')``, i.e. ``R r' <= 2**(Z+c+l) < R r' +
    r'``) in the last ``RECIPROCAL_CHECK`` cycle, by comparing ``r`` with the square root
    run again on ``Q`` and ``R`` with the divider's second quotient (both idle then): no
    product wider than the datapath's. ``normalized``
    and ``output`` are checked per element in pass 3: ``|y| << s <= r`` as ``|y| <=`` the
    bound in ``peak`` (on the peak's comparator; ``r >> s`` on the normalize shifter at
    ``RECIPROCAL_LAUNCH``, idle then),
    ``|z| <= 2**Z`` from the top bits of ``z``; the output check against the ``o``
    register: ``k`` comes from the output shifter in the affine cycle, the far bound from
    the affine adder in the next one (both free then) and a shifter of the check's own.
    The output check's side is that of ``z G`` from the sign bits of ``z`` and ``G`` alone
    (``z = 0`` or ``G = 0`` gives ``o = k`` fault-free, inside either side).
    With ``checkers=False`` none of that logic is built, ``flags`` and ``flag_counts`` read
    0; the outputs and the latency are the same.

    Parameters
    ----------
    length : int
        Longest row (and depth of the buffers and per-channel memories), 1 .. 1023.
    input_bits : int
        ``B``, 2 .. 24: width of the signed input codes.
    norm_bits : int
        ``Z``, 4 .. 16: fraction bits of the normalized value.
    checkers : bool
        Build the checkers (default True).
    count_bits : int
        Width of each counter of ``flag_counts``, 1 .. 32 (default 8).

    Members
    -------
    The common unit interface (:func:`~hw.nonlinear.interface.unit_members`: ``start``,
    ``busy``, ``done``, ``error``, ``n``, ``in_we``, ``in_addr``, ``in_data`` (the low ``B``
    bits are stored), ``out_addr``, ``out_data``, ``flags``, ``flag_counts``) with six
    checks, bit ``i`` of ``flags`` and element ``i`` of ``flag_counts`` for
    ``LAYERNORM_CHECKS[i]``. Parameter ports:
    out_shift : In(6)
        ``W``.
    epsilon : In(2B + L - 2)
        ``ε``.

    and the write ports of the per-channel memories:
    gain_we : In(1)
    gain_addr : In(range(length))
    gain_data : In(signed(16))
    offset_we : In(1)
    offset_addr : In(range(length))
    offset_data : In(signed(32))
        Per-channel memories ``G`` and ``C``.

    Raises
    ------
    TypeError
        If a parameter is not an integer in its range, or ``checkers`` is not a bool.
    """

    CHECKS = LAYERNORM_CHECKS

    def __init__(self, *, length, input_bits=16, norm_bits=14, checkers=True,
                 count_bits=DEFAULT_COUNT_BITS):
        self._length = check_int("LayerNorm length", length, 1, MAX_LAYERNORM_LENGTH)
        self._input_bits = check_int("LayerNorm input_bits", input_bits, 2, 24)
        self._norm_bits = check_int("LayerNorm norm_bits", norm_bits, 4, 16)
        if not isinstance(checkers, bool):
            raise TypeError(f"LayerNorm checkers must be a bool, not {checkers!r}")
        self._checkers = checkers
        self._count_bits = check_count_bits("LayerNorm", count_bits)
        # Which checks are built: all or none (a subset only to measure each one's area).
        self._checks = frozenset(LAYERNORM_CHECKS if checkers else ())
        self._registers = {}
        # The stage registers, made here so that stage_registers has them before the unit
        # is elaborated. With the mean check ``total`` also holds the check's running sum
        # in pass 2, on its own adder (idle then): ``2 sum y + n``, 3 bits more, never wraps.
        b = input_bits
        self._stage_signals = {
            "total": Signal(b + self.index_bits + (3 if "mean" in self._checks else 0),
                            name="total"),
            "mean": Signal(signed(b), name="mean"),
            "variance": Signal(self.variance_bits, name="variance"),
            "root": Signal(self.root_bits, name="root"),
            "reciprocal": Signal(self.reciprocal_bits, name="reciprocal"),
            "normalized": Signal(signed(norm_bits + 2), name="normalized"),
            "affine": Signal(signed(self.affine_bits), name="affine"),
            "output": Signal(signed(8), name="output"),
        }
        super().__init__({
            **unit_members(length=length, checks=len(LAYERNORM_CHECKS), count_bits=count_bits,
                           parameters={"out_shift": In(6), "epsilon": In(self.epsilon_bits)}),
            "gain_we": In(1),
            "gain_addr": In(range(length)),
            "gain_data": In(signed(16)),
            "offset_we": In(1),
            "offset_addr": In(range(length)),
            "offset_data": In(signed(32)),
        })

    @property
    def input_bits(self):
        """``B``."""
        return self._input_bits

    @property
    def norm_bits(self):
        """``Z``."""
        return self._norm_bits

    @property
    def root_bits(self):
        """``H = B + ceil(L / 2)``, the width of the root."""
        return self._input_bits + (self.index_bits + 1) // 2

    @property
    def variance_bits(self):
        """``2B + L``: the width of ``V``, ``P`` and ``Q``."""
        return 2 * self._input_bits + self.index_bits

    @property
    def epsilon_bits(self):
        """``2B + L - 2``: the width of the ``ε`` CSR."""
        return self.variance_bits - 2

    @property
    def reciprocal_bits(self):
        """``Z + c + 2``."""
        return self._norm_bits + GUARD_BITS + 2

    @property
    def affine_bits(self):
        """``A = max(Z + 16, 31) + 2``."""
        return max(self._norm_bits + 16, 31) + 2

    @property
    def multiplier_bits(self):
        """Width of each signed multiplier operand, ``1 + max(H, Z + c + 2, 16)``."""
        return 1 + max(self.root_bits, self.reciprocal_bits, 16)

    @property
    def registers(self):
        """The named registers of the last elaboration (name: Signal), for testbenches and
        fault injection; empty before the unit is elaborated."""
        return dict(self._registers)

    @property
    def root_wait(self):
        """Cycles of the ``ROOT_WAIT`` phase, ``max(H + 1, L + 2)``: the square root and the
        ``L + 2`` steps of the variance check (with or without the checkers: one
        schedule)."""
        return max(self.root_bits + 1, self.index_bits + 2)

    @property
    def recheck_wait(self):
        """Cycles of the ``RECIPROCAL_CHECK`` phase, ``max(Z + c + 4, H - Z - c - 3)``: the
        second reciprocal divide (launch, ``Z + c + 2`` iterations, result) and the second
        square root, started ``Z + c + 5`` cycles before the phase (with or without the
        checkers: one schedule)."""
        k = self.reciprocal_bits
        return max(k + 2, self.root_bits - k - 1)

    def latency(self, n):
        """Clock edges from the one that samples ``start`` to the one after which ``done``
        is high, both included: ``4n + B + Z + 20 + max(H + 1, L + 2) + max(Z + c + 4, H - Z
        - c - 3)`` (``4n + 92`` for the default widths), with or without the checkers.

        Raises ``TypeError`` if ``n`` is not an integer from 1 to ``length``.
        """
        check_int("LayerNorm row length n", n, 1, self._length)
        return (4 * n + self._input_bits + self._norm_bits + 20 + self.root_wait
                + self.recheck_wait)

    @property
    def stage_registers(self):
        """The register of each of the twin's stages that one holds exactly (a new dict,
        in the order of :data:`LAYERNORM_STAGE_REGISTERS`; ``total`` only without the
        checkers): for testbenches and fault injectors. Each is named as its stage."""
        return {stage: signal for stage, signal in self._stage_signals.items()
                if stage != "total" or "mean" not in self._checks}

    def stage_cycle(self, n, stage, index=0):
        """The cycle (edges after ``start``, that edge included) in which the register of
        ``stage`` holds its final value for element ``index`` and has not been used yet.

        ``stage`` is one of :attr:`stage_registers`; ``index`` counts elements (0 to
        ``n - 1``) for ``normalized``, ``affine`` and ``output`` and must be 0 for the
        per-row stages. Changing the register in that cycle, after the edge (a testbench's
        ``ctx.set`` after ``ctx.tick``), has the effect of the twin's ``hook`` changing
        that element of the stage, on the codes and on the checkers' flags.

        Raises
        ------
        TypeError
            If ``n`` or ``index`` is out of range, or ``stage`` is not a stage register.
        """
        n = check_int("LayerNorm row length n", n, 1, self._length)
        stages = self.stage_registers
        if not isinstance(stage, str) or stage not in stages:
            raise TypeError(f"LayerNorm stage must be one of {tuple(stages)}, not {stage!r}")
        b = self._input_bits
        output_pass = self.latency(n) - 2 * n - 4             # OUTPUT, step 0
        if stage in _ELEMENT_STAGE_STEPS:
            index = check_int("LayerNorm stage index", index, 0, n - 1)
            return output_pass + 2 * index + _ELEMENT_STAGE_STEPS[stage]
        check_int("LayerNorm stage index", index, 0, 0)
        return {"total": n + 2, "mean": n + b + 4, "variance": 2 * n + b + 6,
                "root": 2 * n + b + 9 + self.root_wait,
                "reciprocal": output_pass - self.recheck_wait}[stage]

    def elaborate(self, platform):
        m = Module()
        length, b, z, c = self._length, self._input_bits, self._norm_bits, GUARD_BITS
        index, h, wide = self.index_bits, self.root_bits, self.variance_bits
        checks = self._checks

        # Host-written memories and the output buffer.
        m.submodules.input_buffer = input_buffer = Memory(shape=signed(b), depth=length,
                                                          init=[])
        m.submodules.gain_memory = gain_memory = Memory(shape=signed(16), depth=length,
                                                        init=[])
        m.submodules.offset_memory = offset_memory = Memory(shape=signed(32), depth=length,
                                                            init=[])
        m.submodules.output_buffer = output_buffer = Memory(shape=signed(8), depth=length,
                                                            init=[])
        busy = Signal(name="unit_busy")
        for memory, we, addr, value in (
                (input_buffer, self.in_we, self.in_addr, self.in_data[:b]),
                (gain_memory, self.gain_we, self.gain_addr, self.gain_data),
                (offset_memory, self.offset_we, self.offset_addr, self.offset_data)):
            port = memory.write_port()
            m.d.comb += [port.en.eq(we & ~busy), port.addr.eq(addr), port.data.eq(value)]
        input_read = input_buffer.read_port()
        gain_read = gain_memory.read_port()
        offset_read = offset_memory.read_port()
        output_write = output_buffer.write_port()
        host_read = output_buffer.read_port()
        m.d.comb += [host_read.addr.eq(self.out_addr), self.out_data.eq(host_read.data)]

        # Arithmetic blocks.
        # One divider for the mean (B quotient bits) and the reciprocal (Z + c + 2): its
        # iterations input gives each its own cycle count, each dividend aligned to the
        # widest quotient.
        widest = max(b, self.reciprocal_bits)
        m.submodules.divider = divider = RestoringDivider(
            dividend_bits=widest + max(index + 1, h - 1), divisor_bits=max(index + 1, h),
            quotient_bits=widest, variable=True)
        m.submodules.square_root = square_root = SquareRoot(radicand_bits=wide)
        m.submodules.leading_zeros = leading_zeros = LeadingZeroCount(width=wide)

        # The named intermediates (the stage registers made by __init__).
        total, mean, variance, root, reciprocal, normalized, affine, output = (
            self._stage_signals[stage] for stage in LAYERNORM_STAGE_REGISTERS)
        centred = Signal(signed(b + 1), name="centred")
        padded = Signal(wide, name="padded")
        scale = Signal(range(wide // 2 + 1), name="scale")
        radicand = Signal(wide, name="radicand")
        root_length = Signal(range(h + 1), name="root_length")
        normalize_shift = Signal(range(h + c + 1), name="normalize_shift")
        step = Signal(range(max(2 * length + 4, self.root_wait, self.recheck_wait)),
                      name="step")
        row_length = Signal(range(length + 1), name="row_length")
        phase = Signal(Phase, name="phase")
        done, error = self.done, self.error        # the ports are the registers
        registers = [phase, total, mean, centred, variance, padded, scale, radicand, root,
                     root_length, normalize_shift, reciprocal, normalized, affine, output,
                     step, row_length, done, error]

        # The one multiplier: operands chosen by the schedule, zero when unused.
        operand_a = Signal(signed(self.multiplier_bits), name="multiplier_a")
        operand_b = Signal(signed(self.multiplier_bits), name="multiplier_b")
        product = operand_a * operand_b

        n = row_length
        twice_n = Cat(Const(0, 1), n)
        odd = step[0]
        code = input_read.data
        biased_code = Cat(code[:b - 1], ~code[b - 1])      # x + 2**(B-1), unsigned
        divisor_root = Mux(root == 0, 1, root)             # r'
        reciprocal_dividend = Const(1 << (z + c), z + c + h + 1) << root_length
        gain, offset = gain_read.data, offset_read.data
        # The affine adder and the output shifter (a >> W, saturated to int8).
        affine_term = Signal(signed(self.affine_bits), name="affine_term")
        affine_sum = affine_term + offset
        # (A multiplexer, not a signal: a signal copying the affine register would give
        # the flip-flops its name.)
        shift_offset = Signal()                    # the output check's k_i: C_i >> W
        shift_source = Mux(shift_offset, offset, affine) if "output" in checks else affine
        shifted = _saturate(shift_source >> self.out_shift, 8, symmetric=True)

        # The normalize shifter, (y R) >> t in pass 3; with the normalized check it also
        # gives r >> s for the check's bound while it is idle (r in place of the product:
        # through the multiplier it would widen an operand to H + 1 bits).
        bounding = Signal()
        normalize_shifted = (Mux(bounding, root, product)
                             >> Mux(bounding, scale, normalize_shift))

        def divide(dividend, divisor, quotient_bits, launch=False):
            """Hold ``divisor``; with ``launch`` (True or a condition) start
            ``divide(dividend, divisor, quotient_bits)``, the dividend aligned to the widest
            quotient."""
            m.d.comb += divider.divisor.eq(divisor)
            if launch is not False:
                m.d.comb += [divider.dividend.eq(dividend << (widest - quotient_bits)),
                             divider.iterations.eq(quotient_bits), divider.start.eq(launch)]

        def multiply(a, b):
            m.d.comb += [operand_a.eq(a), operand_b.eq(b)]

        # The total's adder: x + 2**(B-1) in pass 1, 2 y in pass 2 (the mean check).
        addend = Signal(signed(b + 2))
        m.d.comb += addend.eq(biased_code)
        total_sum = total + addend

        # Checker state and the per-cycle raise vector.
        raised = {check: Signal(name=f"{check}_raised") for check in LAYERNORM_CHECKS}
        raise_vector = Cat(*(raised[check] for check in LAYERNORM_CHECKS))
        # peak: p = max |y| in pass 2 (the variance check), then the normalized check's
        # bound min(r >> s, 2**(B+1) - 1) for pass 3, against |y| on the same comparator.
        # |y| <= 2**B, so the saturation changes no comparison.
        if checks & {"variance", "normalized"}:
            peak = Signal(b + 1, name="peak")
            registers.append(peak)
            magnitude = _magnitude(centred)
            above_peak = less_than(peak, magnitude)
        if "output" in checks:
            output_centre = Signal(signed(8), name="output_centre")
            output_bound = Signal(signed(8), name="output_bound")
            output_upper = Signal(name="output_upper")
            registers += [output_centre, output_bound, output_upper]
        if checks:
            flags = self.flags                     # the port is the register
            counts = [Signal(self._count_bits, name=f"{check}_count")
                      for check in LAYERNORM_CHECKS]
            registers += [flags, *counts]
            flags_next = flags | raise_vector
            m.d.sync += flags.eq(flags_next)
            m.d.comb += [self.flag_counts[i].eq(count) for i, count in enumerate(counts)]

        # The variance adder: V + y**2 in pass 2. With the variance check it is one bit
        # wider and in ROOT_WAIT computes ``~V + p**2 = p**2 - V - 1`` (``invert``: raised
        # if non-negative), then the steps ``d <- (d + n_j p**2) >> 1`` over the bits
        # ``n_j`` of n from the lowest, from ``d = -V`` (``invert`` and ``carry``), in the
        # variance register (``extend``: d is signed). After L steps d is
        # ``floor((n p**2 - V) / 2**L)``, negative exactly when ``V > n p**2``.
        square = product[:2 * b + 1]                     # y**2, p**2 < 2**(2B+1)
        if "variance" not in checks:
            variance_sum = variance + square
        else:
            invert, carry, extend = Signal(), Signal(), Signal()
            signed_variance = Cat(variance, variance[-1] & extend)
            # The carry enters below the lowest bit: (2A + carry) + (2 sq + 1), halved.
            variance_sum = (Cat(carry, signed_variance ^ invert.replicate(wide + 1))
                            + Cat(Const(1, 1), square))[1:wide + 2]

        m.d.comb += [leading_zeros.value.eq(padded), square_root.radicand.eq(radicand)]
        m.d.comb += input_read.en.eq(0)
        m.d.comb += [gain_read.en.eq(0), offset_read.en.eq(0)]
        m.d.comb += affine_term.eq(product)

        with m.Switch(phase):
            # An idle start clears done; with 1 <= n <= length it is accepted (clears
            # error and the flags, copies n), else refused (sets error). A start while
            # busy sets error and changes nothing else.
            with m.Case(Phase.IDLE), m.If(self.start):
                m.d.sync += [done.eq(0), error.eq(1)]
                with m.If((self.n != 0) & (self.n <= length)):
                    m.d.sync += [step.eq(0), total.eq(0), phase.eq(Phase.TOTAL),
                                 row_length.eq(self.n), error.eq(0)]
                    if checks:
                        m.d.sync += flags.eq(0)

            # Pass 1: T = sum (x + 2**(B-1)); x_j is read in step j, added in step j + 1.
            with m.Case(Phase.TOTAL):
                m.d.comb += [input_read.addr.eq(step), input_read.en.eq(step < n)]
                with m.If(step != 0):
                    m.d.sync += total.eq(total_sum)
                with m.If(step == n):
                    m.d.sync += phase.eq(Phase.MEAN_LAUNCH)
                with m.Else():
                    m.d.sync += step.eq(step + 1)

            # μ = divide(2T + n, 2n, B) - 2**(B-1): the quotient with its top bit inverted.
            with m.Case(Phase.MEAN_LAUNCH):
                divide((total << 1) + n, twice_n, b, launch=True)
                m.d.sync += phase.eq(Phase.MEAN_WAIT)
            with m.Case(Phase.MEAN_WAIT):
                divide((total << 1) + n, twice_n, b)
                with m.If(~divider.busy):
                    quotient = divider.quotient[:b]
                    m.d.sync += [mean.eq(Cat(quotient[:b - 1], ~quotient[b - 1])),
                                 step.eq(0), variance.eq(0)]
                    if "mean" in checks:
                        m.d.sync += total.eq(n)
                    if "variance" in checks:
                        m.d.sync += peak.eq(0)
                    m.d.sync += phase.eq(Phase.VARIANCE)

            # Pass 2: x_j read in step j, y_j = x_j - μ latched in step j + 1, V += y_j**2
            # (with sum y and p = max |y|) in step j + 2.
            with m.Case(Phase.VARIANCE):
                m.d.comb += [input_read.addr.eq(step), input_read.en.eq(step < n)]
                with m.If((step != 0) & (step <= n)):
                    m.d.sync += centred.eq(code - mean)
                with m.If(step >= 2):
                    multiply(centred, centred)
                    m.d.sync += variance.eq(variance_sum[:wide])
                    if "mean" in checks:
                        m.d.comb += addend.eq(centred << 1)
                        m.d.sync += total.eq(total_sum)
                    if "variance" in checks:
                        with m.If(above_peak):
                            m.d.sync += peak.eq(magnitude)
                with m.If(step == n + 1):
                    m.d.sync += phase.eq(Phase.PAD)
                with m.Else():
                    m.d.sync += step.eq(step + 1)

            # P = min(V + ε, 2**(2B+L) - 1); the mean check -n <= 2 sum y < n.
            with m.Case(Phase.PAD):
                limit = (1 << wide) - 1
                padded_sum = variance + self.epsilon
                m.d.sync += padded.eq(Mux(padded_sum > limit, limit, padded_sum))
                if "mean" in checks:
                    m.d.comb += raised["mean"].eq((total[index + 1:] != 0)
                                                  | at_most(twice_n, total[:index + 1]))
                m.d.sync += phase.eq(Phase.RADICAND)

            # s = (2B + L - bitlen(P)) >> 1 (0 for P = 0) and Q = P << 2s.
            with m.Case(Phase.RADICAND):
                scale_value = Mux(padded == 0, 0, leading_zeros.count >> 1)
                m.d.sync += [scale.eq(scale_value),
                             radicand.eq(padded << Cat(Const(0, 1), scale_value))]
                m.d.sync += phase.eq(Phase.ROOT_LAUNCH)
            with m.Case(Phase.ROOT_LAUNCH):
                m.d.sync += step.eq(0)
                m.d.comb += square_root.start.eq(1)
                m.d.sync += phase.eq(Phase.ROOT_WAIT)

            # r = isqrt(Q), latched in the last of root_wait cycles. The variance check:
            # p < 2**B and p**2 <= V in step 0; V <= n p**2 with bit n_j of n in step
            # j + 1 (d = -V in step 1), raised in step L + 1 if d < 0.
            with m.Case(Phase.ROOT_WAIT):
                m.d.sync += step.eq(step + 1)
                if "variance" in checks:
                    # p < 2**B (|y| <= 2**B - 1 fault-free), so p**2 is p[:B] squared: the
                    # multiplier keeps the datapath's operand widths. Step 0 squares p
                    # (weight 1), step j + 1 multiplies by n_j (weight 0 beyond n's bits).
                    k = index.bit_length()
                    weights = Cat(Const(1, 1), n, Const(0, (1 << k) - index - 1))
                    multiply(peak[:b], Mux(weights.bit_select(step[:k], 1), peak[:b], 0))
                    m.d.comb += [invert.eq(step <= 1), carry.eq(step == 1),
                                 extend.eq(step > 1)]
                    with m.If(step == 0):
                        m.d.comb += raised["variance"].eq(peak[b] | ~variance_sum[-1])
                    with m.Else():
                        m.d.sync += variance.eq(variance_sum[1:])
                    with m.If(step == index + 1):
                        m.d.comb += raised["variance"].eq(variance[-1])
                with m.If(step == self.root_wait - 1):
                    m.d.sync += root.eq(square_root.root)
                    m.d.sync += phase.eq(Phase.ROOT_CHECK)

            # l = bitlen(r'); the root check r = isqrt(Q) starts.
            with m.Case(Phase.ROOT_CHECK):
                m.d.comb += leading_zeros.value.eq(divisor_root)
                m.d.sync += root_length.eq(wide - leading_zeros.count)
                if "root" in checks:
                    # The root check: the square root runs again on Q (idle from here on).
                    m.d.comb += square_root.start.eq(1)
                m.d.sync += phase.eq(Phase.RECIPROCAL_LAUNCH)

            # t = max(l + c - s, 0); R = divide(2**(Z+c+l), r', Z + c + 2).
            with m.Case(Phase.RECIPROCAL_LAUNCH):
                exponent = root_length + c - scale
                m.d.sync += normalize_shift.eq(Mux(exponent < 0, 0, exponent))
                divide(reciprocal_dividend, divisor_root, self.reciprocal_bits, launch=True)
                if "normalized" in checks:
                    # The bound: r >> s (below 2**H), saturated to B + 1 bits.
                    m.d.comb += bounding.eq(1)
                    m.d.sync += peak.eq(Mux(normalize_shifted[b + 1:h] != 0, (1 << (b + 1)) - 1,
                                            normalize_shifted[:b + 1]))
                m.d.sync += phase.eq(Phase.RECIPROCAL_WAIT)
            with m.Case(Phase.RECIPROCAL_WAIT):
                divide(reciprocal_dividend, divisor_root, self.reciprocal_bits)
                with m.If(~divider.busy):
                    m.d.sync += [reciprocal.eq(divider.quotient[:self.reciprocal_bits]),
                                 step.eq(0), phase.eq(Phase.RECIPROCAL_CHECK)]

            # The reciprocal check: R again by the divider, launched in step 0; the root
            # check: r against the second square root. Both are done by the last step
            # (idle cycles without the checkers: one schedule).
            with m.Case(Phase.RECIPROCAL_CHECK):
                if "reciprocal" in checks:
                    divide(reciprocal_dividend, divisor_root, self.reciprocal_bits,
                           launch=step == 0)
                with m.If(step == self.recheck_wait - 1):
                    if "reciprocal" in checks:
                        m.d.comb += raised["reciprocal"].eq(
                            divider.quotient[:self.reciprocal_bits] != reciprocal)
                    if "root" in checks:
                        m.d.comb += raised["root"].eq(square_root.root != root)
                    m.d.sync += [step.eq(0), phase.eq(Phase.OUTPUT)]
                with m.Else():
                    m.d.sync += step.eq(step + 1)

            # Pass 3, element i: x_i read in steps 2i, 2i + 1; y_i latched in 2i + 1; z_i
            # (y R) in 2i + 2; a_i (z G + C) in 2i + 3, G_i and C_i read in 2i + 2; o_i in
            # 2i + 4; o_i written (and checked) in 2i + 5.
            with m.Case(Phase.OUTPUT):
                element = step >> 1
                m.d.comb += [input_read.addr.eq(element), input_read.en.eq(step < twice_n),
                             gain_read.addr.eq(element - 1), offset_read.addr.eq(element - 1),
                             output_write.addr.eq(element - 2), output_write.data.eq(output)]
                parameter_read = ~odd & (step >= 2) & (step <= twice_n)
                m.d.comb += [gain_read.en.eq(parameter_read), offset_read.en.eq(parameter_read)]
                with m.If(odd & (step < twice_n)):
                    m.d.sync += centred.eq(code - mean)
                with m.If(~odd & (step >= 2) & (step <= twice_n)):
                    multiply(centred, reciprocal)
                    m.d.sync += normalized.eq(_saturate(normalize_shifted, z + 2))
                    if "normalized" in checks:
                        # |y| << s <= r, as |y| <= r >> s (in peak since RECIPROCAL_LAUNCH).
                        m.d.comb += raised["normalized"].eq(above_peak)
                with m.If(odd & (step >= 3) & (step <= twice_n + 1)):
                    multiply(normalized, gain)
                    m.d.sync += affine.eq(affine_sum)
                    if "normalized" in checks:
                        # |z| <= 2**Z, from the top bits of z.
                        m.d.comb += raised["normalized"].eq(
                            Mux(normalized[-1], ~normalized[z],
                                normalized[z] & (normalized[:z] != 0)))
                    if "output" in checks:
                        # k_i = clamp(C_i >> W), by the output shifter (free in this cycle).
                        m.d.comb += shift_offset.eq(1)
                        m.d.sync += output_centre.eq(shifted)
                with m.If(~odd & (step >= 4) & (step <= twice_n + 2)):
                    m.d.sync += output.eq(shifted)
                    if "output" in checks:
                        # The far bound of element i - 1, clamp((C +- |G| 2**Z) >> W) on the
                        # side of z G, by the affine adder (free in this cycle: G, C and z
                        # still hold element i - 1) and a shifter of the check's own.
                        # The side of z G from the sign bits alone: z = 0 or G = 0 gives
                        # o = k fault-free, inside either side.
                        upper = normalized[-1] == gain[-1]
                        m.d.comb += affine_term.eq(Mux(upper ^ gain[-1], gain, -gain) << z)
                        m.d.sync += [
                            output_bound.eq(_saturate(affine_sum >> self.out_shift, 8,
                                                      symmetric=True)),
                            output_upper.eq(upper),
                        ]
                with m.If(odd & (step >= 5)):
                    m.d.comb += output_write.en.eq(1)
                    if "output" in checks:
                        low = Mux(output_upper, output_centre, output_bound)
                        high = Mux(output_upper, output_bound, output_centre)
                        m.d.comb += raised["output"].eq(less_than(output, low)
                                                        | less_than(high, output))
                with m.If(step == twice_n + 3):
                    m.d.sync += done.eq(1)
                    if checks:
                        for i, count in enumerate(counts):
                            count_row(m, count, flags_next[i])
                    m.d.sync += phase.eq(Phase.IDLE)
                with m.Else():
                    m.d.sync += step.eq(step + 1)

        with m.If(self.start & busy):
            m.d.sync += error.eq(1)
        m.d.comb += [busy.eq(phase != Phase.IDLE), self.busy.eq(busy)]
        self._registers = {Value.cast(register).name: register for register in registers}
        return m
