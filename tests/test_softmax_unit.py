# amaranth: UnusedElaboratable=no
"""The softmax unit (hw/nonlinear/softmax.py) against its twin, in Amaranth's simulator.

The testbench is made of parts: a driver that loads a row and starts the unit (and, for a
fault, changes one register in the cycle :meth:`SoftmaxUnit.stage_cycle` names), a monitor
that reads the outputs, flags and counters, the twin (``sw.twin.nonlinear.softmax`` with a
hook that makes the same change) as the model, and the tests as checkers. Each
configuration is simulated once per test module for its clean rows.
"""

import random
from dataclasses import dataclass

import pytest
import torch
from amaranth.hdl import signed
from amaranth.sim import Simulator

from hw.nonlinear.softmax import SOFTMAX_CHECKS, SOFTMAX_REGISTERS, SoftmaxUnit
from sw.twin.nonlinear import SoftmaxParams, check_softmax, softmax
from tests.unit_registers import unit_registers

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: (bits, signed) of each stage register, as the twin fits them.
WIDTHS = {"maximum": (32, True), "difference": (33, True), "output": (8, True)}


def register_width(stage, length, exp_bits):
    index = length.bit_length()
    return WIDTHS.get(stage) or {"exponent": (exp_bits + 5, False),
                                 "exponential": (exp_bits + 1, False),
                                 "sum": (exp_bits + index, False),
                                 "reciprocal": (7 + index, False)}[stage]


def fit(value, bits, signed):
    value &= (1 << bits) - 1
    return value - (1 << bits) if signed and value >> (bits - 1) else value


@dataclass(frozen=True)
class Corruption:
    """``change`` applied to element ``index`` of ``stage`` (a register value in, out)."""
    stage: str
    index: int
    change: object


@dataclass(frozen=True)
class Job:
    row: tuple
    multiplier: int
    shift: int
    corruption: Corruption = None


@dataclass
class Record:
    """What the monitor saw for one row."""
    outputs: list
    flags: int
    counts: list
    done_cycle: int
    busy_cycles: int
    error: int = 0


# ---------------------------------------------------------------------------------------
# Driver and monitor
# ---------------------------------------------------------------------------------------

async def load_row(ctx, unit, row):
    for address, score in enumerate(row):
        ctx.set(unit.in_we, 1)
        ctx.set(unit.in_addr, address)
        ctx.set(unit.in_data, score)
        await ctx.tick()
    ctx.set(unit.in_we, 0)


async def read_outputs(ctx, unit, n):
    """The output buffer has one cycle of read latency."""
    outputs = []
    ctx.set(unit.out_addr, 0)
    await ctx.tick()
    for address in range(n):
        outputs.append(ctx.get(unit.out_data))
        ctx.set(unit.out_addr, min(address + 1, unit.length - 1))
        await ctx.tick()
    return outputs


async def run_row(ctx, unit, job, while_busy=None):
    """Load, start and wait for ``done``; apply the job's corruption in its cycle.

    ``while_busy(ctx)``, if given, runs in the first busy cycle (a start or a host write
    the unit must ignore) and returns the edges it waited for.
    """
    n = len(job.row)
    await load_row(ctx, unit, job.row)
    ctx.set(unit.n, n)
    ctx.set(unit.scale_m, job.multiplier)
    ctx.set(unit.scale_shift, job.shift)
    ctx.set(unit.start, 1)
    await ctx.tick()
    ctx.set(unit.start, 0)
    corrupt_at = None
    if job.corruption is not None:
        corruption = job.corruption
        corrupt_at = unit.stage_cycle(n, corruption.stage, corruption.index)
        register = unit.stage_registers[corruption.stage]
        bits, signed = register_width(corruption.stage, unit.length, unit.exp_bits)
    cycle, busy_cycles, limit = 1, 0, unit.latency(n) + 50
    if while_busy is not None:
        cycle += await while_busy(ctx)
    while not ctx.get(unit.done) and cycle < limit:
        busy_cycles += ctx.get(unit.busy)
        if cycle == corrupt_at:
            ctx.set(register, fit(corruption.change(ctx.get(register)), bits, signed))
        await ctx.tick()
        cycle += 1
    return Record(outputs=await read_outputs(ctx, unit, n), flags=ctx.get(unit.flags),
                  counts=list(ctx.get(unit.flag_counts)), done_cycle=cycle,
                  busy_cycles=busy_cycles, error=ctx.get(unit.error))


def simulate(unit, jobs):
    """Run ``jobs`` one after the other on one simulation of ``unit``: their records."""
    records = []

    async def testbench(ctx):
        for job in jobs:
            records.append(await run_row(ctx, unit, job))

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return records


# ---------------------------------------------------------------------------------------
# Model: the twin, with the same corruption through its hook
# ---------------------------------------------------------------------------------------

def twin_row(unit, job):
    """The twin's (outputs, flags word) for ``job`` on ``unit``."""
    params = SoftmaxParams(unit.length, job.multiplier, job.shift, unit.exp_bits)
    hook = None
    if job.corruption is not None:
        corruption = job.corruption

        def hook(stage, values):
            if stage != corruption.stage:
                return values
            values = values.clone()
            flat = values.view(-1)
            flat[corruption.index] = corruption.change(int(flat[corruption.index]))
            return values

    trace = softmax(torch.tensor(job.row, dtype=torch.int64), params, hook=hook)
    flags = check_softmax(trace, params)
    word = sum(int(bool(getattr(flags, name))) << bit for bit, name in enumerate(SOFTMAX_CHECKS))
    return trace.output.tolist(), word


def expected_counts(flag_words):
    counts = [0] * len(SOFTMAX_CHECKS)
    running = []
    for word in flag_words:
        counts = [count + ((word >> bit) & 1) for bit, count in enumerate(counts)]
        running.append(list(counts))
    return running


def flag_names(word):
    return {name for bit, name in enumerate(SOFTMAX_CHECKS) if (word >> bit) & 1}


# ---------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------

def csr(scale, length, exp_bits):
    params = SoftmaxParams.for_scale(scale, length, exp_bits)
    return params.multiplier, params.shift


def clean_jobs(length, exp_bits, seed, random_rows):
    """Realistic rows of every length, the extremes, a few CSR choices."""
    rng = random.Random(seed)
    typical = csr(1e-4, length, exp_bits)
    jobs = []
    for n in range(1, length + 1):
        spread = rng.choice([0.5, 2.0, 8.0])
        jobs.append(Job(tuple(round(rng.gauss(0, spread) / 1e-4) for _ in range(n)),
                        *typical))
    n = length
    extremes = [[0] * n, [INT32_MIN] * n, [INT32_MAX] * n,
                [INT32_MAX] + [INT32_MIN] * (n - 1), [INT32_MIN] * (n - 1) + [INT32_MAX],
                [INT32_MAX] * (n - 1) + [INT32_MIN], [5] * (n // 2) + [-5] * (n - n // 2),
                [rng.randrange(-1000, 1000) for _ in range(n - 1)] + [20000]]
    choices = [typical, csr(0.05, length, exp_bits), csr(1e-7, length, exp_bits),
               csr(3.0, length, exp_bits), (65535, 0), (0, 0), (1, 63), (40000, 20)]
    for choice in choices:
        jobs += [Job(tuple(row), *choice) for row in extremes[:3]]
    for row in extremes[3:]:
        jobs += [Job(tuple(row), *choice) for choice in choices[:4]]
    for _ in range(random_rows):
        n = rng.randrange(1, length + 1)
        row = tuple(rng.randrange(INT32_MIN, INT32_MAX + 1) for _ in range(n))
        jobs.append(Job(row, *rng.choice(choices)))
    return jobs


CONFIGURATIONS = {
    "length 8, E 15": {"length": 8, "exp_bits": 15, "seed": 1, "random_rows": 40},
    "length 12, E 8": {"length": 12, "exp_bits": 8, "seed": 2, "random_rows": 12},
    "length 1, E 11": {"length": 1, "exp_bits": 11, "seed": 3, "random_rows": 2},
}


@pytest.fixture(scope="module", params=list(CONFIGURATIONS))
def clean_run(request):
    config = dict(CONFIGURATIONS[request.param])
    jobs = clean_jobs(config["length"], config["exp_bits"], config.pop("seed"),
                      config.pop("random_rows"))
    unit = SoftmaxUnit(**config)
    return unit, jobs, simulate(unit, jobs)


# ---------------------------------------------------------------------------------------
# Clean rows
# ---------------------------------------------------------------------------------------

def test_outputs_equal_the_twin(clean_run):
    unit, jobs, records = clean_run
    assert [record.outputs for record in records] == [twin_row(unit, job)[0] for job in jobs]


def test_done_arrives_exactly_at_the_latency(clean_run):
    unit, jobs, records = clean_run
    assert [record.done_cycle for record in records] == [unit.latency(len(job.row))
                                                         for job in jobs]
    # busy from the cycle after the start edge until done.
    assert [record.busy_cycles for record in records] == [unit.latency(len(job.row)) - 1
                                                          for job in jobs]


def test_no_checker_raises_on_clean_rows(clean_run):
    unit, jobs, records = clean_run
    assert [twin_row(unit, job)[1] for job in jobs] == [0] * len(jobs)
    assert [record.flags for record in records] == [0] * len(jobs)
    assert records[-1].counts == [0] * len(SOFTMAX_CHECKS)


def test_the_latency_formula():
    unit = SoftmaxUnit(length=256)
    assert [unit.latency(n) for n in (1, 197, 256)] == [3 + 26, 3 * 197 + 26, 3 * 256 + 26]
    assert SoftmaxUnit(length=8, exp_bits=8).latency(8) == 3 * 8 + 4 + 17


def test_without_checkers_the_outputs_and_the_latency_are_the_same():
    jobs = clean_jobs(8, 15, seed=4, random_rows=4)[::2]
    jobs += [Job((3, 1, 4, 1, 5), 65535, 0, Corruption("sum", 0, flip(18)))]
    with_checkers = simulate(SoftmaxUnit(length=8), jobs)
    without = simulate(SoftmaxUnit(length=8, checkers=False), jobs)
    assert [record.outputs for record in without] == [record.outputs for record in
                                                      with_checkers]
    assert [record.done_cycle for record in without] == [record.done_cycle for record in
                                                         with_checkers]
    assert with_checkers[-1].flags != 0
    assert {record.flags for record in without} == {0}
    assert without[-1].counts == [0] * len(SOFTMAX_CHECKS)


# ---------------------------------------------------------------------------------------
# Corrupted registers: the unit's flags are the twin's
# ---------------------------------------------------------------------------------------

ROW = (30000, -2000, 5000, 12000, -30000, 100, 25000, 40000)
TYPICAL = csr(1e-4, 8, 15)
LARGEST = ROW.index(max(ROW))


def flip(bit):
    return lambda value: value ^ (1 << bit)


def add(delta):
    return lambda value: value + delta


#: (corruption, the checks that must raise); the full flag word must equal the twin's.
TARGETED = [
    (Corruption("maximum", 0, add(-1)), {"maximum"}),
    (Corruption("maximum", 0, add(1)), {"maximum"}),
    (Corruption("maximum", 0, flip(30)), {"maximum"}),
    (Corruption("difference", 3, flip(32)), {"maximum"}),
    (Corruption("difference", LARGEST, add(5000)), {"maximum"}),
    (Corruption("exponent", 2, flip(19)), {"exponential"}),
    (Corruption("exponential", 5, flip(15)), {"exponential"}),
    (Corruption("exponential", 0, flip(14)), {"exponential"}),
    (Corruption("sum", 0, flip(18)), {"sum", "total"}),
    (Corruption("sum", 0, flip(15)), {"sum", "reciprocal"}),    # the divider saturates
    (Corruption("sum", 0, flip(13)), {"total"}),
    (Corruption("reciprocal", 0, add(1)), {"reciprocal"}),
    (Corruption("reciprocal", 0, add(-1)), {"reciprocal"}),
    (Corruption("reciprocal", 0, add(64)), {"reciprocal"}),
    (Corruption("output", 1, flip(6)), {"total"}),
    (Corruption("output", LARGEST, add(-1)), {"peak"}),
    (Corruption("output", 4, flip(7)), {"total"}),
]


def random_corrupted_jobs(count, seed):
    """Single bit flips in random registers, on rows of random lengths and scales."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(count):
        n = rng.randrange(1, 9)
        row = tuple(round(rng.gauss(0, rng.choice([0.5, 2.0, 8.0])) / 1e-4) for _ in range(n))
        stage = rng.choice(sorted(SOFTMAX_REGISTERS))
        bits, _ = register_width(stage, 8, 15)
        index = rng.randrange(n) if stage in ("difference", "exponent", "exponential",
                                              "output") else 0
        jobs.append(Job(row, *csr(rng.choice([1e-4, 0.05, 1e-6]), 8, 15),
                        Corruption(stage, index, flip(rng.randrange(bits)))))
    return jobs


@pytest.fixture(scope="module")
def corrupted_run():
    unit = SoftmaxUnit(length=8)
    jobs = [Job(ROW, *TYPICAL)]
    jobs += [Job(ROW, *TYPICAL, corruption) for corruption, _ in TARGETED]
    jobs += random_corrupted_jobs(200, seed=5)
    return unit, jobs, simulate(unit, jobs)


def test_the_row_is_clean_before_corruption(corrupted_run):
    _, _, records = corrupted_run
    assert records[0].flags == 0


@pytest.mark.parametrize("case", range(len(TARGETED)))
def test_each_checker_raises_on_its_corruption_as_in_the_twin(corrupted_run, case):
    unit, jobs, records = corrupted_run
    job, record = jobs[1 + case], records[1 + case]
    outputs, word = twin_row(unit, job)
    assert TARGETED[case][1] <= flag_names(word)
    assert (record.outputs, flag_names(record.flags)) == (outputs, flag_names(word))


def test_random_bit_flips_give_the_twins_outputs_flags_and_counts(corrupted_run):
    unit, jobs, records = corrupted_run
    expected = [twin_row(unit, job) for job in jobs]
    assert [(record.outputs, record.flags) for record in records] == expected
    assert [record.counts for record in records] == \
        expected_counts([word for _, word in expected])
    assert [record.done_cycle for record in records] == [unit.latency(len(job.row))
                                                         for job in jobs]


def set_to(value):
    return lambda _: value


def test_the_reciprocal_check_at_the_widest_quotient_equals_the_twin():
    """length 256: R has 16 bits and R + 1 wraps at R = 65535 (a quotient that always
    fails the check, as the wrapped product 0 makes it)."""
    unit = SoftmaxUnit(length=256)
    row = (1200, -300, 4000, 0, 3900)
    multiplier, shift = csr(1e-3, 256, 15)
    corruptions = [None, Corruption("reciprocal", 0, set_to(65535)),
                   Corruption("reciprocal", 0, set_to(0)),
                   Corruption("reciprocal", 0, add(1)), Corruption("reciprocal", 0, add(-1)),
                   Corruption("sum", 0, set_to(32511)),         # the divider saturates
                   Corruption("sum", 0, set_to(32513)), Corruption("sum", 0, set_to(0))]
    jobs = [Job(row, multiplier, shift, corruption) for corruption in corruptions]
    records = simulate(unit, jobs)
    expected = [twin_row(unit, job) for job in jobs]
    assert [(record.outputs, record.flags) for record in records] == expected
    assert [("reciprocal" in flag_names(word)) for _, word in expected] == \
        [False, True, True, True, True, True, False, True]


@pytest.mark.parametrize("count_bits", [1, 2])
def test_the_counters_saturate_at_count_bits(count_bits):
    """Each counter of ``flag_counts`` stops at ``2^count_bits - 1``; a clean row leaves
    them alone."""
    unit = SoftmaxUnit(length=8, count_bits=count_bits)
    corrupted = Job(ROW, *TYPICAL, Corruption("sum", 0, flip(18)))
    jobs = [corrupted] * 4 + [Job(ROW, *TYPICAL)]
    records = simulate(unit, jobs)
    expected = [twin_row(unit, job) for job in jobs]
    top = (1 << count_bits) - 1
    assert [(record.outputs, record.flags) for record in records] == expected
    assert [record.counts for record in records] == \
        [[min(count, top) for count in counts]
         for counts in expected_counts([word for _, word in expected])]
    assert flag_names(expected[0][1]) == {"sum", "total"}


# ---------------------------------------------------------------------------------------
# Starts the unit refuses or ignores
# ---------------------------------------------------------------------------------------

def test_illegal_row_lengths_and_starts_while_busy_set_error():
    unit = SoftmaxUnit(length=8)
    job = Job(ROW[:5], *TYPICAL)
    seen = {}

    async def disturb(ctx):
        # A second start and a host write while busy: both ignored, the start flagged.
        ctx.set(unit.start, 1)
        ctx.set(unit.in_we, 1)
        ctx.set(unit.in_addr, 0)
        ctx.set(unit.in_data, INT32_MAX)
        await ctx.tick()
        ctx.set(unit.start, 0)
        ctx.set(unit.in_we, 0)
        return 1

    async def testbench(ctx):
        seen["first"] = await run_row(ctx, unit, job)
        for n in (0, 9, 15):
            ctx.set(unit.n, n)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            await ctx.tick()
            seen[n] = (ctx.get(unit.error), ctx.get(unit.done), ctx.get(unit.busy))
        seen["legal"] = await run_row(ctx, unit, job)
        seen["disturbed"] = await run_row(ctx, unit, job, while_busy=disturb)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    outputs, _ = twin_row(unit, job)
    assert seen["first"].outputs == outputs and seen["first"].error == 0
    assert [seen[n] for n in (0, 9, 15)] == [(1, 0, 0)] * 3
    assert seen["legal"].outputs == outputs and seen["legal"].error == 0
    assert seen["disturbed"].outputs == outputs and seen["disturbed"].error == 1
    assert seen["disturbed"].done_cycle == unit.latency(5)


def test_a_refused_start_leaves_the_flags_and_the_counters_alone():
    unit = SoftmaxUnit(length=8)
    job = Job(ROW, *TYPICAL, Corruption("sum", 0, flip(18)))
    seen = {}

    async def testbench(ctx):
        seen["row"] = await run_row(ctx, unit, job)
        ctx.set(unit.n, 0)
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        await ctx.tick()
        seen["refused"] = (ctx.get(unit.error), ctx.get(unit.done), ctx.get(unit.flags),
                           list(ctx.get(unit.flag_counts)))

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    row = seen["row"]
    assert flag_names(row.flags) == {"sum", "total"}
    assert seen["refused"] == (1, 0, row.flags, row.counts)


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------

def test_the_parameters_are_checked():
    with pytest.raises(TypeError, match=r"^Softmax length must be an integer from 1 to 511, "
                                        r"not 512$"):
        SoftmaxUnit(length=512)
    with pytest.raises(TypeError, match=r"^Softmax exp_bits must be an integer from 8 to "
                                        r"15, not 7$"):
        SoftmaxUnit(length=8, exp_bits=7)
    with pytest.raises(TypeError, match=r"^Softmax checkers must be a bool, not 1$"):
        SoftmaxUnit(length=8, checkers=1)
    with pytest.raises(TypeError, match=r"^Softmax count_bits must be an integer from 1 to "
                                        r"32, not 0$"):
        SoftmaxUnit(length=8, count_bits=0)
    unit = SoftmaxUnit(length=8)
    with pytest.raises(TypeError, match=r"^Softmax row length n must be an integer from 1 "
                                        r"to 8, not 9$"):
        unit.latency(9)
    with pytest.raises(TypeError, match=r"^Softmax stage index must be an integer from 0 "
                                        r"to 0, not 1$"):
        unit.stage_cycle(4, "sum", 1)
    with pytest.raises(TypeError, match=r"^Softmax stage must be one of \('maximum', "
                                        r"'difference', 'exponent', 'exponential', 'sum', "
                                        r"'reciprocal', 'output'\), not 'input'$"):
        unit.stage_cycle(4, "input")


def test_the_interface():
    unit = SoftmaxUnit(length=256)
    assert {name: (member.flow.name, member.shape) for name, member in
            unit.signature.members.items() if name != "flag_counts"} == {
        "start": ("In", 1), "busy": ("Out", 1), "done": ("Out", 1), "error": ("Out", 1),
        "n": ("In", range(257)), "in_we": ("In", 1), "in_addr": ("In", range(256)),
        "in_data": ("In", signed(32)), "out_addr": ("In", range(256)),
        "out_data": ("Out", signed(8)), "scale_m": ("In", 16), "scale_shift": ("In", 6),
        "flags": ("Out", 6)}
    assert unit.checks == SOFTMAX_CHECKS == ("maximum", "exponential", "sum", "reciprocal",
                                             "total", "peak")
    assert (unit.count_bits, len(unit.flag_counts[0]), len(unit.flag_counts)) == (8, 8, 6)
    assert len(SoftmaxUnit(length=8, count_bits=12).flag_counts[5]) == 12
    assert (unit.index_bits, unit.precision, unit.quotient_bits) == (9, 24, 16)
    assert {stage: register.name for stage, register in unit.stage_registers.items()} == \
        SOFTMAX_REGISTERS


def test_the_intermediates_are_flip_flops_named_after_them():
    widths = unit_registers(SoftmaxUnit(length=8))
    assert {path: widths.get(path) for path in (
        "maximum", "difference", "exponent", "exponential", "sum", "reciprocal",
        "output_code", "checker.output_excess", "checker.output_peak",
        "checker.exponent_integer", "divider.remainder", "divider.quotient",
        *(f"checker.{name}_flag" for name in SOFTMAX_CHECKS),
        *(f"checker.{name}_count" for name in SOFTMAX_CHECKS))} == {
        "maximum": 32, "difference": 33, "exponent": 20, "exponential": 16, "sum": 19,
        "reciprocal": 11, "output_code": 8, "checker.output_excess": 12,
        "checker.output_peak": 8, "checker.exponent_integer": 5, "divider.remainder": 19,
        "divider.quotient": 11, **{f"checker.{name}_flag": 1 for name in SOFTMAX_CHECKS},
        **{f"checker.{name}_count": 8 for name in SOFTMAX_CHECKS}}
    without = set(unit_registers(SoftmaxUnit(length=8, checkers=False)))
    assert not any(path.startswith("checker.") for path in without)
    assert set(SOFTMAX_REGISTERS.values()) <= without
