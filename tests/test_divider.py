# amaranth: UnusedElaboratable=no
"""The saturating restoring divider (hw/nonlinear/divider.py) against the twin's ``divide``."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from hw.nonlinear.divider import RestoringDivider
from sw.twin.nonlinear.arithmetic import divide

torch.set_num_threads(1)


def run_divisions(divider, operands):
    """(quotient, remainder, saturated) of each (D, s); ``busy`` is checked in every cycle
    (high for ``Q`` cycles after the ``start`` edge, low once the result is held)."""
    results = []

    async def bench(ctx):
        for dividend, divisor in operands:
            ctx.set(divider.dividend, dividend)
            ctx.set(divider.divisor, divisor)
            ctx.set(divider.start, 1)
            await ctx.tick()                     # edge 1: start sampled, operands loaded
            ctx.set(divider.start, 0)
            ctx.set(divider.dividend, 0)         # the dividend is not needed any more
            for _ in range(divider.latency - 1):
                assert ctx.get(divider.busy)
                await ctx.tick()
            assert not ctx.get(divider.busy)
            results.append((ctx.get(divider.quotient), ctx.get(divider.remainder),
                            ctx.get(divider.saturated)))

    simulator = Simulator(divider)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    return results


def expected(operands, quotient_bits):
    dividends = torch.tensor([d for d, _ in operands])
    divisors = torch.tensor([s for _, s in operands])
    return divide(dividends, divisors, quotient_bits).tolist()


def overflows(dividend, divisor, quotient_bits):
    return divisor == 0 or dividend >> quotient_bits >= divisor


def test_every_small_division_equals_the_twin():
    divider = RestoringDivider(dividend_bits=7, divisor_bits=4, quotient_bits=4)
    operands = [(d, s) for d in range(128) for s in range(16)]
    results = run_divisions(divider, operands)
    assert [q for q, _, _ in results] == expected(operands, 4)
    for (dividend, divisor), (_, remainder, saturated) in zip(operands, results, strict=True):
        overflow = overflows(dividend, divisor, 4)
        assert saturated == overflow
        if not overflow:
            assert remainder == dividend % divisor


@pytest.mark.parametrize(("dividend_bits", "divisor_bits", "quotient_bits"),
                         [(7 + 24, 24, 16), (24, 17, 8), (5, 3, 1), (4, 6, 8)])
def test_quotients_equal_the_twin_including_the_saturating_cases(dividend_bits, divisor_bits,
                                                                 quotient_bits):
    """The softmax's widths (E 15, length 256), the GELU's (E 15, K 8), one quotient bit,
    and a dividend narrower than the quotient."""
    rng = random.Random(dividend_bits)
    cases = [(rng.randrange(1 << dividend_bits), rng.randrange(1 << divisor_bits))
             for _ in range(60)]
    cases += [(0, 0), (0, 1), ((1 << dividend_bits) - 1, 1), ((1 << dividend_bits) - 1, 0),
              ((1 << dividend_bits) - 1, (1 << divisor_bits) - 1)]
    # Quotients just below and at 2**Q: the pre-check's boundary.
    for divisor in (1, 3, (1 << divisor_bits) - 1):
        for quotient in ((1 << quotient_bits) - 1, 1 << quotient_bits):
            if quotient * divisor < 1 << dividend_bits:
                cases.append((quotient * divisor, divisor))
    divider = RestoringDivider(dividend_bits=dividend_bits, divisor_bits=divisor_bits,
                               quotient_bits=quotient_bits)
    results = run_divisions(divider, cases)
    assert [q for q, _, _ in results] == expected(cases, quotient_bits)
    assert [bool(saturated) for _, _, saturated in results] == \
        [overflows(dividend, divisor, quotient_bits) for dividend, divisor in cases]
    full = (1 << quotient_bits) - 1
    assert {q for q, _, saturated in results if saturated} <= {full}
    assert divider.latency == quotient_bits + 1


def test_the_gelu_divider_on_random_and_saturating_operands():
    divider = RestoringDivider(dividend_bits=24, divisor_bits=17, quotient_bits=8)
    rng = random.Random(1)
    operands = [(e << 8, (1 << 15) + e) for e in (0, 1, 1 << 14, 1 << 15, (1 << 16) - 1)]
    operands += [(rng.getrandbits(24), rng.getrandbits(17)) for _ in range(200)]
    operands += [(s << 8, s) for s in (1, 5, (1 << 16) - 1)] + [((s << 8) - 1, s)
                                                                  for s in (1, 5, 1 << 16)]
    operands += [(rng.getrandbits(24), 0)]
    results = run_divisions(divider, operands)
    assert [q for q, _, _ in results] == expected(operands, 8)


def test_a_start_while_busy_restarts():
    divider = RestoringDivider(dividend_bits=8, divisor_bits=4, quotient_bits=4)
    quotients = []

    async def bench(ctx):
        ctx.set(divider.dividend, 200)
        ctx.set(divider.divisor, 15)
        ctx.set(divider.start, 1)
        await ctx.tick()
        ctx.set(divider.dividend, 100)
        ctx.set(divider.divisor, 9)
        await ctx.tick().repeat(2)            # restarted at the second and third edges
        ctx.set(divider.start, 0)
        await ctx.tick().repeat(divider.latency - 1)
        quotients.append(ctx.get(divider.quotient))

    simulator = Simulator(divider)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert quotients == [100 // 9]


def test_a_variable_divider_divides_aligned_dividends_in_k_iterations():
    """``iterations`` ``k``: the dividend ``D << (Q - k)`` gives ``divide(D, s, k)`` in
    ``quotient[:k]`` after ``k`` busy cycles (the whole register without saturation)."""
    quotient_bits, divisor_bits = 9, 5
    divider = RestoringDivider(dividend_bits=14, divisor_bits=divisor_bits,
                               quotient_bits=quotient_bits, variable=True)
    rng = random.Random(4)
    cases = []
    for _ in range(300):
        k = rng.randint(1, quotient_bits)
        cases.append((rng.randrange(1 << (k + divisor_bits)),
                      rng.choice([0, 1, rng.randrange(1 << divisor_bits)]), k))
    cases += [((1 << k) * 7 - 1, 7, k) for k in (1, 4, 9)] + [((1 << k) * 7, 7, k)
                                                              for k in (1, 4, 9)]
    seen = []

    async def bench(ctx):
        for dividend, divisor, k in cases:
            ctx.set(divider.dividend, dividend << (quotient_bits - k))
            ctx.set(divider.divisor, divisor)
            ctx.set(divider.iterations, k)
            ctx.set(divider.start, 1)
            await ctx.tick()
            ctx.set(divider.start, 0)
            ctx.set(divider.dividend, 0)
            busy = 0
            while ctx.get(divider.busy):
                busy += 1
                await ctx.tick()
            seen.append((busy, ctx.get(divider.quotient), ctx.get(divider.remainder),
                         ctx.get(divider.saturated)))

    simulator = Simulator(divider)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    for (dividend, divisor, k), (busy, quotient, remainder, saturated) in zip(cases, seen,
                                                                            strict=True):
        assert busy == k
        assert quotient & ((1 << k) - 1) == expected([(dividend, divisor)], k)[0]
        assert saturated == overflows(dividend, divisor, k)
        if not saturated:
            assert (quotient, remainder) == divmod(dividend, divisor)
    assert not hasattr(RestoringDivider(dividend_bits=8, divisor_bits=4, quotient_bits=4),
                       "iterations")


@pytest.mark.parametrize("kwargs, message", [
    ({"dividend_bits": 0, "divisor_bits": 4, "quotient_bits": 4},
     "Divider dividend_bits must be an integer from 1 to 128, not 0"),
    ({"dividend_bits": 8, "divisor_bits": 4, "quotient_bits": 0},
     "Divider quotient_bits must be an integer from 1 to 64, not 0"),
    ({"dividend_bits": 8, "divisor_bits": True, "quotient_bits": 4},
     "Divider divisor_bits must be an integer from 1 to 64, not True"),
    ({"dividend_bits": 8, "divisor_bits": 4, "quotient_bits": 4, "variable": 1},
     "Divider variable must be a bool, not 1"),
])
def test_parameter_errors_name_the_parameter(kwargs, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        RestoringDivider(**kwargs)
