# amaranth: UnusedElaboratable=no
"""The LayerNorm unit (hw/nonlinear/layernorm.py) against the bit-exact twin, in Amaranth's
simulator: outputs, intermediates, checker flags and counters, timing, corrupted registers.

The testbench is made of parts: :func:`load` (driver: the memories and CSRs), :func:`run_row`
(start, the monitor of the pass-3 intermediates, the fault injector, the read-back),
:func:`twin_row` (the model: ``sw.twin.nonlinear.layernorm`` with the same corruption
through its hook) and :func:`assert_matches_twin` (the checker). Rows run one after the
other in one simulation per unit, so that the counters see them all.
"""

import random
from dataclasses import dataclass, replace

import pytest
import torch
from amaranth.hdl import Value, signed
from amaranth.sim import Simulator

from hw.nonlinear.layernorm import LAYERNORM_CHECKS, LayerNormUnit, Phase
from sw.twin.nonlinear.layernorm import LayerNormParams, check_layernorm, layernorm
from tests.unit_registers import unit_registers

torch.set_num_threads(1)

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: The per-row registers read, each in the cycle it holds its stage's final value (a
#: register may hold other values later: ``total`` is the mean check's running sum in
#: pass 2).
SCALARS = {"total": (Phase.MEAN_LAUNCH, None), "mean": (Phase.VARIANCE, 0),
           "variance": (Phase.PAD, None), "root": (Phase.ROOT_CHECK, None),
           "reciprocal": (Phase.RECIPROCAL_CHECK, None)}


@dataclass(frozen=True)
class Row:
    """One call: the codes, the per-channel memories, the CSRs and the corruption.

    ``flips`` are ``(stage, element, bit)``: bit ``bit`` of element ``element`` of the twin
    stage ``stage`` is inverted, in the register that holds it, when it holds it."""
    codes: tuple
    gain: tuple
    offset: tuple
    shift: int
    eps_term: int = 0
    flips: tuple = ()

    @property
    def n(self):
        return len(self.codes)


@dataclass(frozen=True)
class Observed:
    """What the testbench saw of one row (``cycles``: clock edges from the one that samples
    ``start`` to the one after which ``done`` is high, both included)."""
    cycles: int
    output: list
    flags: dict
    scalars: dict
    normalized: list
    affine: list


# ---------------------------------------------------------------------------------------
# Driver, monitor, fault injector
# ---------------------------------------------------------------------------------------

def to_signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def flipped(register, value, bit):
    """``value`` of ``register`` with ``bit`` inverted, as the register's two's complement."""
    shape = Value.cast(register).shape()
    assert bit < shape.width
    raw = (value & ((1 << shape.width) - 1)) ^ (1 << bit)
    return to_signed(raw, shape.width) if shape.signed else raw


def flip_points(stage, element, checkers):
    """The cycles, as (phase, step or None), in which ``stage``'s register holds ``element``
    and the unit has not used it yet (the documented schedule)."""
    return {
        "total": [(Phase.MEAN_LAUNCH, None)],
        "mean": [(Phase.VARIANCE, 0)],
        # y is recomputed in pass 3: the twin's one corrupted y is corrupted in both passes.
        "centred": [(Phase.VARIANCE, element + 2), (Phase.OUTPUT, 2 * element + 2)],
        "variance": [(Phase.PAD, None)],
        "root": [(Phase.ROOT_CHECK, None)],
        "reciprocal": [(Phase.RECIPROCAL_CHECK, None) if checkers else (Phase.OUTPUT, 0)],
        "normalized": [(Phase.OUTPUT, 2 * element + 3)],
        "affine": [(Phase.OUTPUT, 2 * element + 4)],
        "output": [(Phase.OUTPUT, 2 * element + 5)],
    }[stage]


async def load(ctx, unit, row, rng):
    """Write the row, gains and offsets (one word of each per cycle) and the CSRs. The bits
    of ``in_data`` above ``B`` are random: the unit ignores them."""
    b = unit.input_bits
    for i in range(row.n):
        noise = rng.getrandbits(32 - b) << b if b < 32 else 0
        ctx.set(unit.in_we, 1)
        ctx.set(unit.in_addr, i)
        ctx.set(unit.in_data, to_signed((row.codes[i] & ((1 << b) - 1)) | noise, 32))
        ctx.set(unit.gain_we, 1)
        ctx.set(unit.gain_addr, i)
        ctx.set(unit.gain_data, row.gain[i])
        ctx.set(unit.offset_we, 1)
        ctx.set(unit.offset_addr, i)
        ctx.set(unit.offset_data, row.offset[i])
        await ctx.tick()
    for we in (unit.in_we, unit.gain_we, unit.offset_we):
        ctx.set(we, 0)
    ctx.set(unit.n, row.n)
    ctx.set(unit.out_shift, row.shift)
    ctx.set(unit.epsilon, row.eps_term)


async def read_outputs(ctx, unit, n):
    """The output buffer, reading a new address every cycle: ``out_data`` is the word at
    the previous cycle's ``out_addr`` (one cycle of latency)."""
    ctx.set(unit.out_addr, 0)
    await ctx.tick()
    values = []
    for i in range(n):
        values.append(ctx.get(unit.out_data))
        ctx.set(unit.out_addr, (i + 1) % unit.length)
        await ctx.tick()
    return values


async def run_row(ctx, unit, row, rng, during=None):
    """Load, start and run ``row`` to ``done`` (injecting its flips, recording ``z`` and ``a``
    as they pass), then read it back. ``during(ctx, cycle)`` runs in every busy cycle."""
    await load(ctx, unit, row, rng)
    registers = unit.registers
    phase, step = registers["phase"], registers["step"]
    pending = {}
    for stage, element, bit in row.flips:
        for point in flip_points(stage, element, unit.checkers):
            pending.setdefault(point, []).append((registers[stage], bit))
    normalized, affine, scalars = [None] * row.n, [None] * row.n, {}

    ctx.set(unit.start, 1)
    await ctx.tick()
    ctx.set(unit.start, 0)
    cycles = 1
    while not ctx.get(unit.done):
        assert ctx.get(unit.busy) and not ctx.get(unit.error) or during is not None
        now, index = ctx.get(phase), ctx.get(step)
        for point in ((now, index), (now, None)):
            for register, bit in pending.pop(point, ()):
                ctx.set(register, flipped(register, ctx.get(register), bit))
        for name, point in SCALARS.items():
            if point in ((now, index), (now, None)) and name not in scalars:
                scalars[name] = ctx.get(registers[name])
        if now == Phase.OUTPUT and index >= 3 and index % 2 == 1 and index <= 2 * row.n + 1:
            normalized[(index - 3) // 2] = ctx.get(registers["normalized"])
        if now == Phase.OUTPUT and index >= 4 and index % 2 == 0 and index <= 2 * row.n + 2:
            affine[(index - 4) // 2] = ctx.get(registers["affine"])
        if during is not None:
            during(ctx, cycles - 1)
        await ctx.tick()
        cycles += 1
        assert cycles <= 4 * unit.length + 400, "done never rose"
    for signal in (unit.start, unit.in_we, unit.gain_we, unit.offset_we):
        ctx.set(signal, 0)      # the driver releases what ``during`` may have set
    assert not ctx.get(unit.busy)
    assert not pending, f"flip points never reached: {pending}"
    flag_bits = ctx.get(unit.flags)
    flags = {check: bool(flag_bits >> i & 1) for i, check in enumerate(LAYERNORM_CHECKS)}
    output = await read_outputs(ctx, unit, row.n)
    return Observed(cycles, output, flags, scalars, normalized, affine)


def simulate(unit, rows, seed=0, bench=None):
    """Run ``rows`` one after the other on ``unit``: the list of :class:`Observed` and the
    final flag counters. ``bench(ctx, unit, rng)``, if given, runs instead of the rows."""
    rng = random.Random(seed)
    observed, counts = [], []

    async def testbench(ctx):
        if bench is not None:
            await bench(ctx, unit, rng)
            return
        for row in rows:
            observed.append(await run_row(ctx, unit, row, rng))
        counts.extend(ctx.get(unit.flag_counts[i]) for i in range(len(LAYERNORM_CHECKS)))

    simulator = Simulator(unit)
    simulator.add_clock(1e-6)
    simulator.add_testbench(testbench)
    simulator.run()
    return observed, counts


# ---------------------------------------------------------------------------------------
# Model and checker
# ---------------------------------------------------------------------------------------

def flip_hook(flips):
    def hook(stage, values):
        for flip_stage, element, bit in flips:
            if flip_stage == stage:
                values = values.clone()
                values.view(-1)[element] ^= 1 << bit
        return values
    return hook


def twin_params(unit, row):
    return LayerNormParams(unit.length, row.gain, row.offset, row.shift, row.eps_term,
                           input_bits=unit.input_bits, norm_bits=unit.norm_bits)


def twin_row(unit, row):
    """The twin's trace and flags for ``row`` (with its flips through the hook)."""
    params = twin_params(unit, row)
    trace = layernorm(torch.tensor([row.codes]), params, hook=flip_hook(row.flips))
    flags = check_layernorm(trace, params)
    return trace, {name: bool(getattr(flags, name)[0]) for name in flags.names}


def assert_matches_twin(unit, row, seen):
    trace, flags = twin_row(unit, row)
    assert seen.output == trace.output[0].tolist()
    assert seen.scalars == {name: int(getattr(trace, name)[0, 0]) for name in SCALARS}
    assert seen.normalized == trace.normalized[0].tolist()
    assert seen.affine == trace.affine[0].tolist()
    assert seen.cycles == unit.latency(row.n)
    if unit.checkers:
        assert seen.flags == flags
    else:
        assert seen.flags == dict.fromkeys(LAYERNORM_CHECKS, False)
    return flags


def assert_rows_match(unit, rows, quiet=True):
    observed, counts = simulate(unit, rows)
    expected_counts = [0] * len(LAYERNORM_CHECKS)
    for row, seen in zip(rows, observed):
        flags = assert_matches_twin(unit, row, seen)
        if quiet:
            assert not any(flags.values()), f"the twin raised {flags} on a clean row"
        expected_counts = [count + flags[check]
                           for count, check in zip(expected_counts, LAYERNORM_CHECKS)]
    assert counts == (expected_counts if unit.checkers else [0] * len(LAYERNORM_CHECKS))
    return observed


# ---------------------------------------------------------------------------------------
# Rows: random and extreme
# ---------------------------------------------------------------------------------------

def random_affine(rng, n, b, length):
    """Gains, offsets, W and ε as random as their registers allow, extremes included."""
    eps_limit = 1 << (2 * b + length.bit_length() - 2)
    gain = tuple(rng.choice([rng.randint(-32767, 32767), 32767, -32767, 0, 1])
                 for _ in range(n))
    offset = tuple(rng.choice([rng.randint(INT32_MIN, INT32_MAX), INT32_MIN, INT32_MAX, 0])
                   for _ in range(n))
    eps_term = rng.choice([0, rng.randrange(eps_limit), eps_limit - 1])
    return gain, offset, rng.randint(0, 63), eps_term


def calibrated_affine(rng, n, b, length):
    """Gains, offsets, W and ε of a real LayerNorm (``for_affine``): unsaturated outputs."""
    weight = [rng.uniform(0.5, 1.5) for _ in range(n)]
    bias = [rng.uniform(-0.3, 0.3) for _ in range(n)]
    input_scale = 2.0 / (1 << (b - 1))
    params = LayerNormParams.for_affine(weight, bias, input_scale, 0.03, length, eps=1e-5,
                                        input_bits=b)
    return params.gain, params.offset, params.shift, params.eps_term


def extreme_rows(n, b):
    low, high = -(1 << (b - 1)), (1 << (b - 1)) - 1
    rows = [[0] * n, [low] * n, [high] * n, [low, high] * (n // 2) + [low] * (n % 2),
            [high] + [low] * (n - 1), [low] + [high] * (n - 1), [min(5, high)] * (n - 1) + [low],
            [min(3, high)] + [0] * (n - 1), [1] * (n - 1) + [0]]
    return [tuple(row) for row in rows]


def random_codes(rng, n, b, kind):
    low, high = -(1 << (b - 1)), (1 << (b - 1)) - 1
    if kind == "full_range":
        return tuple(rng.randint(low, high) for _ in range(n))
    centre = rng.uniform(-0.4, 0.4) * (1 << (b - 1))
    spread = rng.choice([0.01, 0.1, 0.3]) * (1 << (b - 1))
    return tuple(min(max(round(rng.gauss(centre, spread)), low), high) for _ in range(n))


def rows_for(length, b, seed, count):
    """``count`` random rows of random lengths, then every extreme row, each with random or
    calibrated affine parts; constant rows appear with ε = 0 and ε > 0."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        n = rng.randint(1, length)
        kind = ("realistic", "full_range")[index % 2]
        affine = (random_affine, calibrated_affine)[index // 2 % 2](rng, n, b, length)
        rows.append(Row(random_codes(rng, n, b, kind), *affine))
    for codes in extreme_rows(length, b):
        gain, offset, shift, _ = random_affine(rng, length, b, length)
        for eps_term in (0, rng.randrange(1, 1 << (2 * b + length.bit_length() - 2))):
            rows.append(Row(codes, gain, offset, shift, eps_term))
    return rows


# ---------------------------------------------------------------------------------------
# Bit-exact against the twin, clean rows quiet, timing
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, input_bits, norm_bits, count", [
    (16, 16, 14, 24),   # the default widths
    (12, 8, 4, 12),
    (9, 2, 10, 12),     # B = 2: the variance check's L + 2 steps set the root wait
    (5, 24, 16, 12),    # the widest codes and normalized values
    (6, 24, 4, 8),      # H > 2Z + 11: the second square root sets the recheck wait
    (1, 16, 14, 4),     # a one-word buffer
])
def test_unit_equals_the_twin_and_no_checker_raises(length, input_bits, norm_bits, count):
    unit = LayerNormUnit(length=length, input_bits=input_bits, norm_bits=norm_bits)
    rows = rows_for(length, input_bits, seed=length + input_bits, count=count)
    assert_rows_match(unit, rows)


def test_every_row_length_up_to_the_unit_length():
    rng = random.Random(8)
    unit = LayerNormUnit(length=8)
    rows = []
    for n in range(1, 9):
        for kind in ("realistic", "full_range"):
            rows.append(Row(random_codes(rng, n, 16, kind), *calibrated_affine(rng, n, 16, 8)))
        rows.append(Row(extreme_rows(n, 16)[4], *random_affine(rng, n, 16, 8)))
    assert_rows_match(unit, rows)


def test_latency_formula():
    unit = LayerNormUnit(length=768)
    assert (unit.index_bits, unit.root_bits, unit.multiplier_bits) == (10, 21, 22)
    # 4n + B + Z + 20 + max(H + 1, L + 2) + max(Z + c + 4, H - Z - c - 3), with or without
    # the checkers.
    assert unit.root_wait == 22
    assert [unit.latency(n) for n in (1, 197, 768)] == [4 + 92, 4 * 197 + 92, 4 * 768 + 92]
    assert LayerNormUnit(length=768, checkers=False).latency(197) == 4 * 197 + 92
    assert LayerNormUnit(length=256).latency(256) == 4 * 256 + 92
    # B = 2, length 9: L + 2 = 6 > H + 1 = 5, the variance check's steps are the longer.
    unit = LayerNormUnit(length=9, input_bits=2, norm_bits=10)
    assert (unit.root_wait, unit.latency(3)) == (6, 12 + 2 + 10 + 42)
    # B = 24, Z = 4, length 6: H - Z - c - 3 = 17 > Z + c + 4, the second square root waits.
    unit = LayerNormUnit(length=6, input_bits=24, norm_bits=4)
    assert (unit.root_wait, unit.recheck_wait, unit.latency(6)) == (27, 17, 24 + 24 + 4 + 64)


def test_checkers_off_computes_the_same_outputs_and_raises_nothing():
    unit = LayerNormUnit(length=12, input_bits=16, norm_bits=14, checkers=False)
    rows = rows_for(12, 16, seed=5, count=8)
    # Corruptions change the outputs exactly as in the twin, and still raise nothing.
    first = rows[0]
    rows.append(Row(first.codes, first.gain, first.offset, first.shift, first.eps_term,
                    flips=(("root", 0, 3),)))
    assert_rows_match(unit, rows, quiet=False)
    assert "flags" not in unit.registers and "peak" not in unit.registers


# ---------------------------------------------------------------------------------------
# Corrupted registers: the unit's checkers raise as the twin's do
# ---------------------------------------------------------------------------------------

FAULT_LENGTH = 16


def fault_row(seed=11, n=12):
    rng = random.Random(seed)
    codes = random_codes(random.Random(seed), n, 16, "realistic")
    return Row(codes, *calibrated_affine(rng, n, 16, FAULT_LENGTH))


# (stage, element, bit) and the checker that must raise.
TARGETED = [
    (("total", 0, 13), "mean"),
    (("mean", 0, 3), "mean"),
    (("centred", 4, 12), "mean"),
    (("variance", 0, 35), "variance"),
    (("root", 0, 2), "root"),
    (("root", 0, 17), "root"),
    (("reciprocal", 0, 0), "reciprocal"),
    (("reciprocal", 0, 15), "reciprocal"),
    (("normalized", 5, 15), "normalized"),
    (("normalized", 2, 14), "normalized"),
    (("affine", 7, 32), "output"),
    (("output", 3, 7), "output"),
]


def test_each_checker_raises_on_its_corrupted_register_as_the_twin_does():
    base = fault_row()
    unit = LayerNormUnit(length=FAULT_LENGTH)
    rows = [base] + [Row(base.codes, base.gain, base.offset, base.shift, base.eps_term,
                         flips=(flip,)) for flip, _ in TARGETED] + [base]
    observed = assert_rows_match(unit, rows, quiet=False)
    assert not any(observed[0].flags.values()) and not any(observed[-1].flags.values())
    for (flip, check), seen in zip(TARGETED, observed[1:]):
        assert seen.flags[check], f"{flip} did not raise {check}: {seen.flags}"


def test_the_variance_check_is_exact_at_v_equal_to_n_p_squared():
    """Rows whose every |y| is p have V = n p**2: quiet. V + 1 (bit 0 of the even V set)
    raises ``variance``, though floor((V + 1) / n) = p**2 (the divide check let it pass)."""
    unit = LayerNormUnit(length=FAULT_LENGTH)
    rng = random.Random(5)
    rows = []
    for n, a in ((12, 1000), (10, 32767), (16, 1), (2, 7)):
        codes = tuple(a if i % 2 else -a for i in range(n))          # μ = 0, y = +-a
        assert (n * a * a) % 2 == 0 and (n * a * a + 1) // n == a * a
        clean = Row(codes, *calibrated_affine(rng, n, 16, FAULT_LENGTH))
        rows += [clean, Row(clean.codes, clean.gain, clean.offset, clean.shift,
                            clean.eps_term, flips=(("variance", 0, 0),))]
    observed = assert_rows_match(unit, rows, quiet=False)
    for row, seen in zip(rows, observed):
        assert seen.flags["variance"] == bool(row.flips), (row.n, seen.flags)
        assert not any(flag for check, flag in seen.flags.items() if check != "variance")


def test_random_bit_flips_in_every_stage_match_the_twin():
    rng = random.Random(17)
    unit = LayerNormUnit(length=FAULT_LENGTH)
    base = fault_row(seed=3, n=10)
    registers = twin_params(unit, base).registers
    widths = {stage: registers[stage][0] for stage in (
        "total", "mean", "centred", "variance", "root", "reciprocal", "normalized", "affine",
        "output")}
    per_element = {"centred", "normalized", "affine", "output"}
    rows = []
    for stage, width in widths.items():
        for _ in range(4):
            element = rng.randrange(base.n) if stage in per_element else 0
            rows.append(Row(base.codes, base.gain, base.offset, base.shift, base.eps_term,
                            flips=((stage, element, rng.randrange(width)),)))
    observed = assert_rows_match(unit, rows, quiet=False)
    assert sum(any(seen.flags.values()) for seen in observed) >= len(rows) // 2


@pytest.mark.parametrize("count_bits", [2, 8])
def test_counters_count_flagged_rows_and_saturate(count_bits):
    unit = LayerNormUnit(length=8, count_bits=count_bits)
    clean = fault_row(seed=4, n=6)
    faulty = Row(clean.codes, clean.gain, clean.offset, clean.shift, clean.eps_term,
                 flips=(("mean", 0, 5),))
    seen = {}

    async def bench(ctx, unit, rng):
        count = unit.registers["mean_count"]
        first = await run_row(ctx, unit, faulty, rng)
        ctx.set(count, (1 << count_bits) - 2)
        for row in (faulty, clean, faulty):
            await run_row(ctx, unit, row, rng)
        seen["flags"] = first.flags
        seen["counts"] = [ctx.get(unit.flag_counts[i]) for i in range(6)]

    simulate(unit, [], bench=bench)
    assert seen["flags"]["mean"]
    assert seen["counts"][0] == (1 << count_bits) - 1
    raised_by_fault = [int(twin_row(unit, faulty)[1][check]) for check in LAYERNORM_CHECKS]
    assert seen["counts"][1:] == [3 * flag for flag in raised_by_fault[1:]]


# ---------------------------------------------------------------------------------------
# The twin's stages in their registers (stage_registers, stage_cycle): the campaigns'
# twin check
# ---------------------------------------------------------------------------------------

PER_ROW_STAGES = ("total", "mean", "variance", "root", "reciprocal")
#: The stages mapped with the checkers; without them ``total`` too.
MAPPED_STAGES = ("mean", "variance", "root", "reciprocal", "normalized", "affine", "output")


def stage_indices(stage, n):
    return range(1) if stage in PER_ROW_STAGES else range(n)


def simulate_stage_upsets(unit, rows):
    """Run ``rows`` on ``unit`` through what it tells a fault injector only (its
    ``stage_registers`` and ``stage_cycle``, as the GELU's bench): each stage register read
    in its stage cycle for each element, each of the row's ``flips`` made there after the
    read; ``done`` exactly at the latency. A (stages, output, flags) per row."""
    registers = unit.stage_registers
    results = []

    async def bench(ctx, unit, rng):
        for row in rows:
            reads, upsets = {}, {}
            for stage in registers:
                for index in stage_indices(stage, row.n):
                    reads.setdefault(unit.stage_cycle(row.n, stage, index), []).append(
                        (stage, index))
            for stage, index, bit in row.flips:
                upsets.setdefault(unit.stage_cycle(row.n, stage, index), []).append(
                    (stage, bit))
            await load(ctx, unit, row, rng)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            stages = {stage: [None] * len(stage_indices(stage, row.n)) for stage in registers}
            for cycle in range(1, unit.latency(row.n)):
                assert not ctx.get(unit.done)
                for stage, index in reads.get(cycle, ()):
                    stages[stage][index] = ctx.get(registers[stage])
                for stage, bit in upsets.get(cycle, ()):
                    register = registers[stage]
                    ctx.set(register, flipped(register, ctx.get(register), bit))
                await ctx.tick()
            assert ctx.get(unit.done)
            flags = ctx.get(unit.flags)
            results.append((stages, await read_outputs(ctx, unit, row.n),
                            {check: bool(flags >> i & 1)
                             for i, check in enumerate(LAYERNORM_CHECKS)}))

    simulate(unit, [], bench=bench)
    return results


def assert_stage_upsets_match_the_twin(unit, rows):
    """:func:`simulate_stage_upsets` on ``rows`` against the twin with the same flips
    through its hook: codes, flags (none without the checkers) and the stage registers,
    each read before its own flip (the hooked trace, but the clean value where the flip
    is). The (codes corrupted, flags raised) of each row with a flip."""
    outcomes = []
    for row, (stages, output, flags) in zip(rows, simulate_stage_upsets(unit, rows),
                                            strict=True):
        trace, expected = twin_row(unit, row)
        if not unit.checkers:
            expected = dict.fromkeys(LAYERNORM_CHECKS, False)
        assert (output, flags) == (trace.output[0].tolist(), expected), row
        clean, _ = twin_row(unit, replace(row, flips=()))
        held = {stage: getattr(trace, stage)[0].tolist() for stage in stages}
        for stage, index, _ in row.flips:
            held[stage][index] = int(getattr(clean, stage)[0, index])
        assert stages == held, row
        if row.flips:
            outcomes.append((output != clean.output[0].tolist(),
                             {check for check, flag in flags.items() if flag}))
    return outcomes


def three_bit_flips(unit, rows, rng):
    """The low, middle and top bit of every stage register flipped (one a row) on rows and
    elements drawn from ``rows``, the last element among them."""
    flips = []
    for stage, register in unit.stage_registers.items():
        for bit in sorted({0, len(register) // 2, len(register) - 1}):
            row = rng.choice(rows)
            index = rng.choice((0, row.n - 1, rng.randrange(row.n)))
            flips.append(replace(row, flips=((stage, index if stage not in PER_ROW_STAGES
                                              else 0, bit),)))
    return flips


@pytest.mark.parametrize("checkers", [True, False])
def test_stage_registers_in_their_stage_cycles_are_the_twins_stages(checkers):
    """Clean rows: each stage register in its stage cycle holds the twin's trace. One bit
    flipped there (every bit of every stage register, and the low, middle and top bit on
    other rows and elements): the twin's codes and flags with that bit flipped through its
    hook, also as the campaign's :class:`UpsetTwin` predicts them at the site
    ``layernorm.<stage>``, which it does not in another cycle."""
    from sim.nonlinear_campaign import UpsetTwin

    unit = LayerNormUnit(length=6, checkers=checkers)
    assert tuple(unit.stage_registers) == (MAPPED_STAGES if checkers
                                           else ("total", *MAPPED_STAGES))
    rng = random.Random(23)
    clean = rows_for(6, 16, seed=9, count=4)
    base = Row(random_codes(rng, 6, 16, "realistic"), *calibrated_affine(rng, 6, 16, 6))
    flips = [replace(base, flips=((stage, bit % base.n if stage not in PER_ROW_STAGES else 0,
                                   bit),))
             for stage, register in unit.stage_registers.items()
             for bit in range(len(register))]
    flips += three_bit_flips(unit, clean, rng)
    outcomes = assert_stage_upsets_match_the_twin(unit, [base, *clean, *flips])

    twin = UpsetTwin("layernorm", unit.length, checkers)
    for row in flips:
        [(stage, index, bit)] = row.flips
        cycle = unit.stage_cycle(row.n, stage, index)
        params = twin_params(unit, row)
        trace, flags = twin_row(unit, row)
        assert twin.predict(params, list(row.codes), f"layernorm.{stage}", bit, cycle) == (
            trace.output[0].tolist(), [checkers and flags[check] for check in LAYERNORM_CHECKS])
        assert twin.predict(params, list(row.codes), f"layernorm.{stage}", bit,
                            cycle - 1) is None
    # Registers that hold no stage exactly are not the twin's to predict.
    params, n = twin_params(unit, base), base.n
    unmapped = {"layernorm.centred": range(1, unit.latency(n) + 1)}
    if checkers:
        unmapped["layernorm.total"] = [n + 2]
    for path, cycles in unmapped.items():
        assert {twin.predict(params, list(base.codes), path, 0, cycle)
                for cycle in cycles} == {None}
    # Meaningful: flips of every stage corrupt codes; the checkers raise each of their
    # flags on some, and the twin check then sees them too.
    corrupting = {row.flips[0][0] for row, (wrong, _) in zip(flips, outcomes) if wrong}
    assert corrupting == set(unit.stage_registers)
    raised = set().union(*(checks for _, checks in outcomes))
    assert raised == (set(LAYERNORM_CHECKS) if checkers else set())


@pytest.mark.parametrize("length, input_bits, norm_bits", [
    (9, 2, 10),     # ROOT_WAIT is the variance check's L + 2 steps
    (6, 24, 4),     # RECIPROCAL_CHECK waits for the second square root
    (12, 8, 4),
])
@pytest.mark.parametrize("checkers", [True, False])
def test_stage_cycles_hold_for_other_widths(length, input_bits, norm_bits, checkers):
    """The stage cycles follow B, the root wait and the recheck wait: the trace in clean
    rows, the twin's codes and flags under low, middle and top bit flips."""
    unit = LayerNormUnit(length=length, input_bits=input_bits, norm_bits=norm_bits,
                         checkers=checkers)
    rng = random.Random(length)
    clean = rows_for(length, input_bits, seed=length + input_bits, count=4)[:8]
    assert_stage_upsets_match_the_twin(unit, clean + three_bit_flips(unit, clean, rng))


@pytest.mark.parametrize("checkers", [True, False])
def test_stage_registers_are_the_twins_widths_and_fault_sites(checkers):
    """Each stage register is the twin's register of its stage (width and signedness:
    every bit an upset can flip, the hook can) and a fault site named after it."""
    unit = LayerNormUnit(length=8, checkers=checkers)
    registers = LayerNormParams(8, (0,), (0,), 0).registers
    sites = unit_registers(unit)
    for stage, register in unit.stage_registers.items():
        shape = Value.cast(register).shape()
        assert (shape.width, shape.signed) == registers[stage], stage
        assert sites[stage] == shape.width and register.name == stage
    # With the checkers total is 3 bits wider (the mean check's sum): not the twin's.
    assert (sites["total"] == registers["total"][0]) != checkers


def test_stage_cycle_checks_its_arguments():
    unit = LayerNormUnit(length=4)
    with pytest.raises(TypeError, match="^LayerNorm row length n must be an integer from 1 "
                                        "to 4, not 5$"):
        unit.stage_cycle(5, "mean")
    with pytest.raises(TypeError, match="^LayerNorm stage index must be an integer from 0 to "
                                        "0, not 1$"):
        unit.stage_cycle(3, "root", 1)
    with pytest.raises(TypeError, match="^LayerNorm stage index must be an integer from 0 to "
                                        "2, not 3$"):
        unit.stage_cycle(3, "affine", 3)
    stages = r"\('mean', 'variance', 'root', 'reciprocal', 'normalized', 'affine', 'output'\)"
    for stage in ("total", "centred", "input", "padded", 0):
        with pytest.raises(TypeError, match=f"^LayerNorm stage must be one of {stages}, not "
                                            f"{stage!r}$"):
            unit.stage_cycle(3, stage)
    assert LayerNormUnit(length=4, checkers=False).stage_cycle(3, "total") == 5


# ---------------------------------------------------------------------------------------
# The interface: refused and repeated starts, writes while busy
# ---------------------------------------------------------------------------------------

def test_start_with_n_zero_or_above_length_is_refused():
    """Refused: idle, done cleared, error set; the flags and the counters are left alone;
    the next accepted start clears error."""
    unit = LayerNormUnit(length=8)
    row = fault_row(seed=6, n=5)
    faulty = Row(row.codes, row.gain, row.offset, row.shift, row.eps_term,
                 flips=(("root", 0, 1),))

    async def bench(ctx, unit, rng):
        await run_row(ctx, unit, faulty, rng)
        flags, counts = ctx.get(unit.flags), list(ctx.get(unit.flag_counts))
        assert ctx.get(unit.done) and flags and not ctx.get(unit.error)
        for n in (0, 9, 15):
            ctx.set(unit.n, n)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            for _ in range(3):
                assert (ctx.get(unit.busy), ctx.get(unit.done), ctx.get(unit.error),
                        ctx.get(unit.flags), list(ctx.get(unit.flag_counts))) == \
                    (0, 0, 1, flags, counts)
                await ctx.tick()
        seen = await run_row(ctx, unit, row, rng)
        assert_matches_twin(unit, row, seen)
        assert not ctx.get(unit.error)

    simulate(unit, [], bench=bench)


def test_start_and_writes_while_busy_are_ignored():
    unit = LayerNormUnit(length=8)
    row = fault_row(seed=7, n=7)

    def meddle(ctx, cycle):
        # Every cycle of the row: a start, another n, and writes of garbage to all three
        # memories.
        ctx.set(unit.start, 1)
        ctx.set(unit.n, cycle % 9)
        for we, addr, value in ((unit.in_we, unit.in_addr, unit.in_data),
                                (unit.gain_we, unit.gain_addr, unit.gain_data),
                                (unit.offset_we, unit.offset_addr, unit.offset_data)):
            ctx.set(we, 1)
            ctx.set(addr, cycle % 8)
            ctx.set(value, -1 - cycle)

    async def bench(ctx, unit, rng):
        seen = await run_row(ctx, unit, row, rng, during=meddle)
        assert_matches_twin(unit, row, seen)
        assert ctx.get(unit.error)
        # The memories still hold the row: run it again without loading.
        ctx.set(unit.n, row.n)
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        assert not ctx.get(unit.error)
        while not ctx.get(unit.done):
            await ctx.tick()
        assert await read_outputs(ctx, unit, row.n) == seen.output

    simulate(unit, [], bench=bench)


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: LayerNormUnit(length=0),
     "LayerNorm length must be an integer from 1 to 1023, not 0"),
    (lambda: LayerNormUnit(length=1024),
     "LayerNorm length must be an integer from 1 to 1023, not 1024"),
    (lambda: LayerNormUnit(length=8, input_bits=25),
     "LayerNorm input_bits must be an integer from 2 to 24, not 25"),
    (lambda: LayerNormUnit(length=8, norm_bits=3),
     "LayerNorm norm_bits must be an integer from 4 to 16, not 3"),
    (lambda: LayerNormUnit(length=8, checkers=1),
     "LayerNorm checkers must be a bool, not 1"),
    (lambda: LayerNormUnit(length=8, count_bits=33),
     "LayerNorm count_bits must be an integer from 1 to 32, not 33"),
    (lambda: LayerNormUnit(length=8).latency(9),
     "LayerNorm row length n must be an integer from 1 to 8, not 9"),
])
def test_parameter_errors(make, message):
    with pytest.raises(TypeError) as info:
        make()
    assert str(info.value) == message


def test_the_interface():
    """The common unit interface (hw/nonlinear/interface.py), the parameter ports and the
    per-channel memories' write ports."""
    unit = LayerNormUnit(length=768)
    assert {name: (member.flow.name, member.shape) for name, member in
            unit.signature.members.items() if name != "flag_counts"} == {
        "start": ("In", 1), "busy": ("Out", 1), "done": ("Out", 1), "error": ("Out", 1),
        "n": ("In", range(769)), "in_we": ("In", 1), "in_addr": ("In", range(768)),
        "in_data": ("In", signed(32)), "out_addr": ("In", range(768)),
        "out_data": ("Out", signed(8)), "out_shift": ("In", 6), "epsilon": ("In", 40),
        "flags": ("Out", 6), "gain_we": ("In", 1), "gain_addr": ("In", range(768)),
        "gain_data": ("In", signed(16)), "offset_we": ("In", 1),
        "offset_addr": ("In", range(768)), "offset_data": ("In", signed(32))}
    assert unit.checks == LAYERNORM_CHECKS == ("mean", "variance", "root", "reciprocal",
                                               "normalized", "output")
    assert (unit.count_bits, len(unit.flag_counts[0]), len(unit.flag_counts)) == (8, 8, 6)
    assert len(LayerNormUnit(length=8, count_bits=12).flag_counts[5]) == 12


def test_the_registers_are_flip_flops_named_after_them():
    """docs/nonlinear.md, "Example widths" (length 768, B 16, Z 14), through the netlist's
    fault-site walk (no fault_class attribute; readable names)."""
    widths = unit_registers(LayerNormUnit(length=768))
    datapath = {"total": 26, "mean": 16, "centred": 17, "variance": 42, "padded": 42,
                "scale": 5, "radicand": 42, "root": 21, "root_length": 5,
                "normalize_shift": 5, "reciprocal": 18, "normalized": 16, "affine": 33,
                "output": 8}
    control = {"phase": 4, "step": 11, "row_length": 10, "done": 1, "error": 1,
               "divider.quotient": 18, "divider.remainder": 21, "divider.count": 5,
               "divider.saturated": 1, "square_root.root": 21, "square_root.remainder": 23,
               "square_root.count": 5}
    # With the mean check total is 3 bits wider: also 2 sum y + n, in pass 2.
    checker = {"total": 29, "flags": 6, "peak": 17, "output_centre": 8,
               "output_bound": 8, "output_upper": 1,
               **{f"{check}_count": 8 for check in LAYERNORM_CHECKS}}
    assert widths == {**datapath, **control, **checker}
    bare = unit_registers(LayerNormUnit(length=768, checkers=False))
    assert bare == {**datapath, **control}
