# amaranth: UnusedElaboratable=no
"""The GELU unit (hw/nonlinear/gelu.py) in Amaranth's simulator against the bit-exact twin.

The bench is made of parts: a driver that writes a row into the input buffer, sets the
CSRs and pulses ``start``; a monitor that reads every stage register in the cycle it holds
each element (``GeluUnit.register_cycle``), upsets registers there when a row asks for it,
watches ``busy``/``done`` and reads the output buffer; the model (the twin,
``sw.twin.nonlinear.gelu``, given the same upsets through its hook); and the comparisons.
"""

import random
from dataclasses import dataclass

import pytest
import torch
from amaranth.sim import Simulator

from hw.nonlinear.gelu import GELU_CHECKS, GELU_STAGE_REGISTERS, GeluUnit
from sw.twin.nonlinear import GeluParams, check_gelu, gelu
from sw.twin.nonlinear.arithmetic import fit
from sw.twin.nonlinear.gelu import GELU_STAGES
from tests.unit_registers import unit_registers

torch.set_num_threads(1)


@dataclass(frozen=True)
class Row:
    """One call of the unit: the codes (``n`` is their number), the CSRs, upsets
    ``(stage, element, bit)`` and corruptions ``(stage, element, value)`` (the register is
    overwritten with ``value``)."""
    codes: tuple
    multiplier: int
    shift: int
    flips: tuple = ()
    sets: tuple = ()


@dataclass(frozen=True)
class RowResult:
    output: list
    stages: dict
    flags: set
    flag_counts: list


# ---------------------------------------------------------------------------------------
# Driver and monitor
# ---------------------------------------------------------------------------------------

async def load_row(ctx, unit, codes, noise):
    """Write ``codes`` into the input buffer, one per cycle."""
    for address, code in enumerate(codes):
        ctx.set(unit.in_we, 1)
        ctx.set(unit.in_addr, address)
        # The upper 24 bits of the word are ignored: fill them with noise.
        ctx.set(unit.in_data, int(fit(noise.getrandbits(24) << 8 | code & 0xFF, 32, True)))
        await ctx.tick()
    ctx.set(unit.in_we, 0)


async def start_row(ctx, unit, n, multiplier, shift):
    """Set the CSRs and pulse ``start`` for one edge (edge 1 of the row)."""
    ctx.set(unit.n, n)
    ctx.set(unit.scale_m, multiplier)
    ctx.set(unit.scale_shift, shift)
    ctx.set(unit.start, 1)
    await ctx.tick()
    ctx.set(unit.start, 0)


async def read_output(ctx, unit, n):
    """The first ``n`` codes of the output buffer (one cycle of read latency)."""
    output = []
    for address in range(n + 1):
        if address < n:
            ctx.set(unit.out_addr, address)
        if address:
            output.append(ctx.get(unit.out_data))
        await ctx.tick()
    return output


def run_bench(unit, bench):
    simulator = Simulator(unit)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()


def simulate(unit, rows, before=None):
    """Run ``rows`` one after the other on ``unit``; a :class:`RowResult` each.

    ``before(ctx)``, if given, runs once before the first row (to preset registers)."""
    registers = unit.registers
    widths = {stage: (len(registers[name]), registers[name].shape().signed)
              for stage, name in GELU_STAGE_REGISTERS.items()}
    results = []
    noise = random.Random(len(rows))

    async def bench(ctx):
        if before is not None:
            before(ctx)
        for row in rows:
            results.append(await run_row(ctx, row))

    async def run_row(ctx, row):
        n = len(row.codes)
        await load_row(ctx, unit, row.codes, noise)
        await start_row(ctx, unit, n, row.multiplier, row.shift)
        watch, held, upsets = {}, {}, {}
        for stage, name in GELU_STAGE_REGISTERS.items():
            for index in range(n):
                cycle = unit.register_cycle(name, index)
                watch.setdefault(cycle, []).append((stage, index))
                if name != "g":            # the others hold their value for a period
                    held.setdefault(cycle + unit.period - 1, []).append((stage, index))
        for index in range(n):                 # x_back: x again, for the back stages
            for cycle in (0, unit.period - 1):
                cycle += unit.register_cycle("x_back", index)
                held.setdefault(cycle, []).append(("input", index))
        for stage, index, bit in row.flips:
            cycle = unit.register_cycle(GELU_STAGE_REGISTERS[stage], index)
            upsets.setdefault(cycle, []).append((stage, lambda value, bit=bit: value ^ 1 << bit))
        for stage, index, new in row.sets:
            cycle = unit.register_cycle(GELU_STAGE_REGISTERS[stage], index)
            upsets.setdefault(cycle, []).append((stage, lambda value, new=new: new))
        stages = {stage: [None] * n for stage in GELU_STAGES}
        latency = unit.latency(n)
        for cycle in range(1, latency + 1):
            assert (ctx.get(unit.busy), ctx.get(unit.done), ctx.get(unit.error)) == \
                ((1, 0, 0) if cycle < latency else (0, 1, 0)), cycle
            for stage, change in upsets.get(cycle, ()):
                register = registers[GELU_STAGE_REGISTERS[stage]]
                ctx.set(register, int(fit(change(ctx.get(register)), *widths[stage])))
            for stage, index in watch.get(cycle, ()):
                stages[stage][index] = ctx.get(registers[GELU_STAGE_REGISTERS[stage]])
            for stage, index in held.get(cycle, ()):
                name = GELU_STAGE_REGISTERS[stage]
                if stage == "input" and cycle >= unit.register_cycle("x_back", index):
                    name = "x_back"
                assert ctx.get(registers[name]) == stages[stage][index], (name, index)
            if cycle < latency:
                await ctx.tick()
        output = await read_output(ctx, unit, n)
        assert ctx.get(unit.done) and not ctx.get(unit.busy)   # sticky
        flags = ctx.get(unit.flags)
        return RowResult(output, stages, {name for i, name in enumerate(GELU_CHECKS)
                                          if flags >> i & 1},
                         [ctx.get(unit.flag_counts[i]) for i in range(len(GELU_CHECKS))])

    run_bench(unit, bench)
    return results


# ---------------------------------------------------------------------------------------
# Model and comparison
# ---------------------------------------------------------------------------------------

def upset_hook(flips, sets):
    def hook(stage, values):
        values = values.clone()
        for flip_stage, index, bit in flips:
            if flip_stage == stage:
                values[index] ^= 1 << bit
        for set_stage, index, value in sets:
            if set_stage == stage:
                values[index] = value
        return values
    return hook


def twin_row(unit, row):
    """The twin's stages, output and raised checks for ``row``."""
    params = GeluParams(unit.length, row.multiplier, row.shift, unit.exp_bits,
                        unit.sigmoid_bits)
    trace = gelu(torch.tensor(row.codes, dtype=torch.int64), params,
                 hook=upset_hook(row.flips, row.sets))
    flags = check_gelu(trace, params)
    return ({stage: getattr(trace, stage).tolist() for stage in GELU_STAGES},
            {name for name in GELU_CHECKS if bool(getattr(flags, name))})


def assert_matches_twin(unit, rows, results, checkers=True):
    counts = [0] * len(GELU_CHECKS)
    for row, result in zip(rows, results, strict=True):
        stages, raised = twin_row(unit, row)
        assert result.output == stages["output"], row
        assert result.stages == stages, row
        assert result.flags == (raised if checkers else set()), row
        for index, name in enumerate(GELU_CHECKS):
            counts[index] += checkers and name in raised
        assert result.flag_counts == counts, row


def run_and_compare(unit, rows, checkers=True):
    results = simulate(unit, rows)
    assert_matches_twin(unit, rows, results, checkers)
    return results


# ---------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------

#: CSR pairs (M, sh): typical scales from the host's rule, and the corners (u saturated
#: for every x != 0, u = 0 for every x, M = 0).
def csr_choices(exp_bits):
    typical = [GeluParams.for_scale(scale, 1, exp_bits, exp_bits)
               for scale in (6 / 127, 0.5, 0.004)]
    return [(p.multiplier, p.shift) for p in typical] + [(65535, 0), (40000, 63), (0, 0)]


def every_code_rows(length, seed):
    codes = list(range(-128, 128))
    random.Random(seed).shuffle(codes)
    return [tuple(codes[i:i + length]) for i in range(0, len(codes), length)]


def random_codes(rng, n):
    extremes = (-128, 127, 0, -1, 1)
    return tuple(rng.choice(extremes) if rng.random() < 0.25 else rng.randint(-128, 127)
                 for _ in range(n))


# ---------------------------------------------------------------------------------------
# Clean rows: bit-exact, latency, quiet checkers
# ---------------------------------------------------------------------------------------

def test_every_code_with_every_csr_choice_equals_the_twin_and_raises_no_flag():
    unit = GeluUnit(length=8)
    rows = [Row(codes, m, sh) for m, sh in csr_choices(15)
            for codes in every_code_rows(8, seed=1)]
    for result in run_and_compare(unit, rows):
        assert result.flags == set()
        assert result.flag_counts == [0, 0, 0, 0]


def test_every_row_length_equals_the_twin():
    unit = GeluUnit(length=8)
    rng = random.Random(2)
    m, sh = csr_choices(15)[0]
    rows = [Row(random_codes(rng, n), m, sh) for n in range(1, 9) for _ in range(2)]
    run_and_compare(unit, rows)


@pytest.mark.parametrize("length, exp_bits, sigmoid_bits", [(1, 15, 8), (5, 8, 2),
                                                            (3, 15, 15), (6, 12, 5)])
def test_other_generator_parameters_equal_the_twin(length, exp_bits, sigmoid_bits):
    unit = GeluUnit(length=length, exp_bits=exp_bits, sigmoid_bits=sigmoid_bits)
    rng = random.Random(length)
    rows = [Row(random_codes(rng, rng.randint(1, length)), m, sh)
            for m, sh in csr_choices(exp_bits) for _ in range(3)]
    rows += [Row(codes, *csr_choices(exp_bits)[0])
             for codes in every_code_rows(length, seed=3)[:12]]
    for result in run_and_compare(unit, rows):
        assert result.flags == set()


def test_latency_is_the_schedule():
    unit = GeluUnit(length=8, sigmoid_bits=8)
    assert [unit.latency(n) for n in (1, 8)] == [17, 87]
    assert GeluUnit(length=3, exp_bits=8, sigmoid_bits=2).latency(3) == 19
    assert unit.period == 10
    assert [unit.register_cycle(name, 2) for name in ("x", "u", "e", "g", "sigma", "o")] == \
        [23, 24, 25, 34, 35, 36]


def test_register_widths_are_the_twins():
    unit = GeluUnit(length=4, exp_bits=13, sigmoid_bits=6)
    params = GeluParams(4, 1, 1, 13, 6)
    registers = unit.registers
    for stage, (bits, signed) in params.registers.items():
        register = registers[GELU_STAGE_REGISTERS[stage]]
        assert (len(register), register.shape().signed) == (bits, signed), stage


# ---------------------------------------------------------------------------------------
# Starts the unit refuses or ignores
# ---------------------------------------------------------------------------------------

def flip_register(ctx, unit, name, bit):
    register = unit.registers[name]
    ctx.set(register, ctx.get(register) ^ 1 << bit)


def test_illegal_row_lengths_are_refused_and_set_error():
    """``n = 0`` and ``n > length`` (the port of ``length = 5`` holds up to 7): the unit
    stays idle, ``done`` falls, ``error`` rises; the previous row's flags and the counters
    stay. The next accepted ``start`` clears ``error`` and runs its row."""
    unit = GeluUnit(length=5)
    m, sh = csr_choices(15)[0]
    codes = (-5, 6, -7, 8, 9)
    upset = Row(codes, m, sh, flips=(("exponential", 1, 15),))
    seen = {}

    def state(ctx):
        return (ctx.get(unit.error), ctx.get(unit.done), ctx.get(unit.busy),
                ctx.get(unit.flags), list(ctx.get(unit.flag_counts)))

    async def bench(ctx):
        await load_row(ctx, unit, codes, random.Random(0))
        await start_row(ctx, unit, 5, m, sh)
        for cycle in range(1, unit.latency(5)):
            if cycle == unit.register_cycle("e", 1):
                flip_register(ctx, unit, "e", 15)
            await ctx.tick()
        seen["upset"] = state(ctx)
        for n in (0, 6, 7):
            await start_row(ctx, unit, n, m, sh)
            await ctx.tick()
            seen[n] = state(ctx)
        await start_row(ctx, unit, 5, m, sh)
        seen["accepted"] = state(ctx)
        await ctx.tick().repeat(unit.latency(5) - 1)
        seen["legal"] = state(ctx), await read_output(ctx, unit, 5)

    run_bench(unit, bench)
    _, raised = twin_row(unit, upset)
    flags = sum(1 << i for i, name in enumerate(GELU_CHECKS) if name in raised)
    counts = [int(name in raised) for name in GELU_CHECKS]
    assert flags != 0
    assert seen["upset"] == (0, 1, 0, flags, counts)
    assert [seen[n] for n in (0, 6, 7)] == [(1, 0, 0, flags, counts)] * 3
    assert seen["accepted"] == (0, 0, 1, 0, counts)
    stages, _ = twin_row(unit, Row(codes, m, sh))
    assert seen["legal"] == ((0, 1, 0, 0, counts), stages["output"])


@pytest.mark.parametrize("when", ["first", "middle", "last"])
def test_a_start_and_a_write_while_busy_are_ignored_and_the_start_sets_error(when):
    """A second ``start`` (with another ``n``) and a write of the input buffer in the
    first, a middle or the last busy cycle: the row goes on as if neither came (outputs,
    flags, counts, latency); ``error`` is set from the next edge until the next accepted
    ``start``, which finds the input buffer as it was."""
    unit = GeluUnit(length=4)
    m, sh = csr_choices(15)[0]
    codes = (-100, 50, 3, 127)
    upset = Row(codes, m, sh, flips=(("exponential", 2, 15),))
    latency = unit.latency(4)
    disturb = {"first": 1, "middle": 20, "last": latency - 1}[when]
    seen = {"trace": []}

    async def bench(ctx):
        await load_row(ctx, unit, codes, random.Random(0))
        await start_row(ctx, unit, 4, m, sh)
        for cycle in range(1, latency):
            if cycle == unit.register_cycle("e", 2):
                flip_register(ctx, unit, "e", 15)
            if cycle == disturb:
                ctx.set(unit.start, 1)
                ctx.set(unit.n, 1)
                ctx.set(unit.in_we, 1)
                ctx.set(unit.in_addr, 3)
                ctx.set(unit.in_data, -128)
            await ctx.tick()
            ctx.set(unit.start, 0)
            ctx.set(unit.in_we, 0)
            seen["trace"].append((ctx.get(unit.busy), ctx.get(unit.done), ctx.get(unit.error)))
        seen["upset"] = (await read_output(ctx, unit, 4), ctx.get(unit.flags),
                         list(ctx.get(unit.flag_counts)))
        await start_row(ctx, unit, 4, m, sh)
        assert not ctx.get(unit.error)
        await ctx.tick().repeat(latency - 1)
        seen["again"] = (await read_output(ctx, unit, 4), ctx.get(unit.flags),
                         list(ctx.get(unit.flag_counts)), ctx.get(unit.error))

    run_bench(unit, bench)
    stages, raised = twin_row(unit, upset)
    flags = sum(1 << i for i, name in enumerate(GELU_CHECKS) if name in raised)
    counts = [int(name in raised) for name in GELU_CHECKS]
    assert flags != 0
    assert seen["trace"] == [(1, 0, int(cycle > disturb)) for cycle in range(2, latency)] + \
        [(0, 1, 1)]
    assert seen["upset"] == (stages["output"], flags, counts)
    clean, _ = twin_row(unit, Row(codes, m, sh))
    assert seen["again"] == (clean["output"], 0, counts, 0)


# ---------------------------------------------------------------------------------------
# Upsets: the same corruption in the unit and in the twin
# ---------------------------------------------------------------------------------------

UPSET_CODES = (-128, -3, 0, 5, 127)
#: The check that reads each stage register it is meant to watch.
STAGE_CHECK = {"exponent": "exponential", "exponential": "exponential",
               "quotient": "quotient", "sigmoid": "sigmoid", "output": "output"}


def upset_rows(unit, element):
    """One row per bit of every stage register of ``element``, for two CSR choices."""
    params = GeluParams(unit.length, 1, 1, unit.exp_bits, unit.sigmoid_bits)
    m, sh = csr_choices(unit.exp_bits)[0]
    return [Row(UPSET_CODES, m, sh, flips=((stage, element, bit),))
            for stage, (bits, _) in params.registers.items() for bit in range(bits)]


@pytest.mark.parametrize("element", [1, 3])
def test_every_single_bit_upset_of_a_stage_register_equals_the_twin(element):
    unit = GeluUnit(length=5)
    rows = upset_rows(unit, element)
    results = run_and_compare(unit, rows)
    raised = {}
    for row, result in zip(rows, results, strict=True):
        raised.setdefault(row.flips[0][0], set()).update(result.flags)
    # Each checker catches some upset of the register it watches.
    for stage, check in STAGE_CHECK.items():
        assert check in raised[stage], stage


def bound_rows(unit, codes, multiplier, shift):
    """For every element, one row per value just inside and just outside each bound of
    each check, written into the register the check reads."""
    e, k = unit.exp_bits, unit.sigmoid_bits
    params = GeluParams(unit.length, multiplier, shift, e, k)
    clean = gelu(torch.tensor(codes), params)
    rows = []
    for index, x in enumerate(codes):
        q = int(clean.exponent[index]) >> e
        exponential = int(clean.exponential[index])
        half = 1 << (k - 1)
        values = {
            "exponential": [(1 << (e - 1)) >> q, ((1 << (e - 1)) >> q) - 1,
                            (1 << e) >> q, ((1 << e) >> q) + 1],
            "exponent": [(e + 1) << e, ((e + 1) << e) + 1],
            "quotient": [exponential >> (e + 1 - k), (exponential >> (e + 1 - k)) - 1,
                         exponential >> (e - k), (exponential >> (e - k)) + 1],
            "sigmoid": [half - 1, half, half + 1, 1 << k, (1 << k) + 1],
            "output": [(x + 1) >> 1, ((x + 1) >> 1) - 1, max(x, 0), max(x, 0) + 1],
        }
        rows += [Row(codes, multiplier, shift, sets=((stage, index, value),))
                 for stage, choices in values.items() for value in choices if value >= -128]
    return rows


@pytest.mark.parametrize("exp_bits, sigmoid_bits", [(15, 8), (9, 9)])
def test_corruptions_at_the_checkers_bounds_equal_the_twin(exp_bits, sigmoid_bits):
    unit = GeluUnit(length=4, exp_bits=exp_bits, sigmoid_bits=sigmoid_bits)
    rows = []
    for m, sh in csr_choices(exp_bits)[:2]:
        rows += bound_rows(unit, (-128, -1, 0, 127), m, sh)
    results = run_and_compare(unit, rows)
    # Both sides of every bound occur: the check raises on some values and not on others.
    sides = {}
    for row, result in zip(rows, results, strict=True):
        stage = row.sets[0][0]
        sides.setdefault(stage, set()).add(STAGE_CHECK[stage] in result.flags)
    assert sides == {stage: {False, True} for stage in STAGE_CHECK}


def test_upsets_of_several_stages_and_elements_equal_the_twin():
    unit = GeluUnit(length=8, exp_bits=10, sigmoid_bits=4)
    rng = random.Random(5)
    params = GeluParams(8, 1, 1, 10, 4)
    rows = []
    for _ in range(24):
        n = rng.randint(1, 8)
        flips = tuple((stage, rng.randrange(n), rng.randrange(params.registers[stage][0]))
                      for stage in rng.sample(GELU_STAGES, 2))
        rows.append(Row(random_codes(rng, n), *rng.choice(csr_choices(10)), flips=flips))
    run_and_compare(unit, rows)


def simulate_stage_upsets(unit, rows):
    """Run ``rows`` on ``unit`` through what it tells a fault injector only (its
    ``stage_registers`` and ``stage_cycle``, as the softmax's bench): each stage register
    read in its stage cycle for each element, each of the row's ``flips`` made there after
    the read. A (stages, output, flags) per row."""
    registers = unit.stage_registers
    results = []

    async def bench(ctx):
        for row in rows:
            n = len(row.codes)
            reads, upsets = {}, {}
            for stage in registers:
                for index in range(n):
                    reads.setdefault(unit.stage_cycle(n, stage, index), []).append(
                        (stage, index))
            for stage, index, bit in row.flips:
                upsets.setdefault(unit.stage_cycle(n, stage, index), []).append((stage, bit))
            await load_row(ctx, unit, row.codes, random.Random(0))
            await start_row(ctx, unit, n, row.multiplier, row.shift)
            stages = {stage: [None] * n for stage in registers}
            for cycle in range(1, unit.latency(n)):
                for stage, index in reads.get(cycle, ()):
                    stages[stage][index] = ctx.get(registers[stage])
                for stage, bit in upsets.get(cycle, ()):
                    register = registers[stage]
                    ctx.set(register, int(fit(ctx.get(register) ^ 1 << bit, len(register),
                                              register.shape().signed)))
                await ctx.tick()
            assert ctx.get(unit.done)
            flags = ctx.get(unit.flags)
            results.append((stages, await read_output(ctx, unit, n),
                            {name for i, name in enumerate(GELU_CHECKS) if flags >> i & 1}))

    run_bench(unit, bench)
    return results


def test_stage_registers_in_their_stage_cycles_are_the_twins_stages():
    """Clean rows: each stage register in its stage cycle holds the twin's trace. One bit
    flipped there (every bit of every stage, and the low, middle and top bit on other rows
    and elements): the twin with that bit flipped through its hook, also as the
    campaign's :class:`UpsetTwin` predicts it at the site ``gelu.<stage_paths>``."""
    from sim.nonlinear_campaign import UpsetTwin

    unit = GeluUnit(length=5)
    assert set(unit.stage_registers) == set(GELU_STAGES)
    assert {stage: unit.stage_cycle(5, stage, 3) for stage in GELU_STAGES} == {
        stage: unit.register_cycle(name, 3) for stage, name in GELU_STAGE_REGISTERS.items()}
    rng = random.Random(8)
    clean = [Row(UPSET_CODES, m, sh) for m, sh in csr_choices(15)]
    clean += [Row(random_codes(rng, n), *csr_choices(15)[0]) for n in (1, 2, 5)]
    flips = []
    for number, (stage, register) in enumerate(unit.stage_registers.items()):
        for bit in range(len(register)):    # every bit, of elements 1 and 3
            flips.append(Row(UPSET_CODES, *csr_choices(15)[0],
                             flips=((stage, 1 + 2 * (bit % 2), bit),)))
        for bit in sorted({0, len(register) // 2, len(register) - 1}):
            row = clean[1 + (number + bit) % (len(clean) - 1)]
            index = (3 * number + bit) % len(row.codes)
            flips.append(Row(row.codes, row.multiplier, row.shift,
                             flips=((stage, index, bit),)))
    rows = clean + flips
    results = simulate_stage_upsets(unit, rows)
    twin = UpsetTwin("gelu", unit.length, checkers=True)
    outcomes = set()
    for row, (stages, output, flags) in zip(rows, results, strict=True):
        expected, raised = twin_row(unit, row)
        assert (output, flags) == (expected["output"], raised), row
        if not row.flips:
            assert stages == {stage: expected[stage] for stage in stages}, row
            continue
        [(stage, index, bit)] = row.flips
        params = GeluParams(unit.length, row.multiplier, row.shift)
        predicted = twin.predict(params, list(row.codes), f"gelu.{unit.stage_paths[stage]}",
                                 bit, unit.stage_cycle(len(row.codes), stage, index))
        assert predicted == (output, [name in flags for name in GELU_CHECKS]), row
        golden, _ = twin_row(unit, Row(row.codes, row.multiplier, row.shift))
        outcomes.add((output != golden["output"], bool(flags)))
    # Meaningful: some flips corrupt the codes, and the checkers catch some.
    assert (True, True) in outcomes and any(wrong for wrong, _ in outcomes)


@pytest.mark.parametrize("count_bits", [None, 1, 16])
def test_flag_counts_saturate_and_are_kept_across_rows(count_bits):
    """``count_bits`` wide counters (8 by default) stop at ``2^count_bits - 1``."""
    if count_bits is None:
        unit = GeluUnit(length=2)
        assert unit.count_bits == 8
    else:
        unit = GeluUnit(length=2, count_bits=count_bits)
    assert len(unit.flag_counts[0]) == unit.count_bits
    m, sh = csr_choices(15)[0]
    top = (1 << unit.count_bits) - 1

    def preset(ctx):
        ctx.set(unit.registers["exponential_count"], top - 1)

    upset = Row((7, -7), m, sh, flips=(("exponential", 0, 15),))
    results = simulate(unit, [upset, upset, Row((7, -7), m, sh)], before=preset)
    assert [result.flag_counts[0] for result in results] == [top, top, top]
    assert [result.flags for result in results][2] == set()


# ---------------------------------------------------------------------------------------
# Fault sites: every register under its own name in the netlist
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("checkers", [True, False])
def test_the_netlist_names_every_register(checkers):
    sites = unit_registers(GeluUnit(length=8, checkers=checkers))
    expected = {"x": 8, "x_back": 8, "u": 20, "e": 16, "divider.quotient": 8,
                "divider.remainder": 17, "divider.saturated": 1, "sigma": 9, "o": 8,
                "divider.count": 4, "phase": 4, "element": 4, "row_length": 4, "busy": 1,
                "done": 1, "error": 1}
    if checkers:
        expected["flags"] = 4
        expected.update({f"{name}_count": 8 for name in GELU_CHECKS})
    assert sites == expected
    # The stage registers' paths, as a campaign's twin check finds their sites.
    unit = GeluUnit(length=8, checkers=checkers)
    assert {path: sites[path] for path in unit.stage_paths.values()} == {
        unit.stage_paths[stage]: len(register)
        for stage, register in unit.stage_registers.items()}


# ---------------------------------------------------------------------------------------
# Without checkers
# ---------------------------------------------------------------------------------------

def test_without_checkers_the_outputs_are_the_same_and_flags_read_zero():
    unit = GeluUnit(length=5, checkers=False)
    assert "flags" not in unit.registers and "exponential_count" not in unit.registers
    rng = random.Random(6)
    rows = [Row(random_codes(rng, rng.randint(1, 5)), m, sh) for m, sh in csr_choices(15)]
    rows += upset_rows(unit, 2)[::3]
    results = run_and_compare(unit, rows, checkers=False)
    assert all(result.flags == set() for result in results)


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"length": 0}, TypeError, "GELU length must be an integer from 1 to 65535, not 0"),
    ({"length": 65536}, TypeError,
     "GELU length must be an integer from 1 to 65535, not 65536"),
    ({"length": 8, "exp_bits": 16}, TypeError,
     "GELU exp_bits must be an integer from 8 to 15, not 16"),
    ({"length": 8, "sigmoid_bits": 1}, TypeError,
     "GELU sigmoid_bits must be an integer from 2 to 15, not 1"),
    ({"length": 8, "exp_bits": 9, "sigmoid_bits": 10}, ValueError,
     "GELU sigmoid_bits 10 exceeds exp_bits 9"),
    ({"length": 8, "checkers": 1}, TypeError, "GELU checkers must be a bool, not 1"),
    ({"length": 8, "count_bits": 0}, TypeError,
     "GELU count_bits must be an integer from 1 to 32, not 0"),
    ({"length": 8, "count_bits": 33}, TypeError,
     "GELU count_bits must be an integer from 1 to 32, not 33"),
])
def test_parameter_errors_name_the_parameter(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        GeluUnit(**kwargs)


def test_latency_and_register_cycle_check_their_arguments():
    unit = GeluUnit(length=4)
    with pytest.raises(TypeError, match="^GELU row length n must be an integer from 1 to 4, "
                                        "not 5$"):
        unit.latency(5)
    with pytest.raises(TypeError, match="^GELU register name must be one of"):
        unit.register_cycle("phase", 0)
    with pytest.raises(TypeError, match="^GELU stage index must be an integer from 0 to 2, "
                                        "not 3$"):
        unit.stage_cycle(3, "quotient", 3)
    with pytest.raises(TypeError, match="^GELU row length n must be an integer from 1 to 4, "
                                        "not 0$"):
        unit.stage_cycle(0, "input")
    with pytest.raises(TypeError, match=r"^GELU stage must be one of \('input', 'exponent', "
                                        r"'exponential', 'quotient', 'sigmoid', 'output'\), "
                                        r"not 'g'$"):
        unit.stage_cycle(3, "g")
