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
    """(quotient, remainder, saturated) of each (D, s), and busy in every cycle."""
    results = []

    async def bench(ctx):
        for dividend, divisor in operands:
            ctx.set(divider.dividend, dividend)
            ctx.set(divider.divisor, divisor)
            ctx.set(divider.start, 1)
            await ctx.tick()                     # edge 1: start sampled, operands loaded
            ctx.set(divider.start, 0)
            ctx.set(divider.dividend, 0)         # the dividend is not needed any more
            for _ in range(divider.cycles - 1):
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


def test_every_small_division_equals_the_twin():
    divider = RestoringDivider(dividend_bits=7, divisor_bits=4, quotient_bits=4)
    operands = [(d, s) for d in range(128) for s in range(16)]
    results = run_divisions(divider, operands)
    assert [q for q, _, _ in results] == expected(operands, 4)
    for (dividend, divisor), (_, remainder, saturated) in zip(operands, results, strict=True):
        overflow = divisor == 0 or dividend >> 4 >= divisor
        assert saturated == overflow
        if not overflow:
            assert remainder == dividend % divisor


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
        await ctx.tick().repeat(2)            # restarted at the second edge
        ctx.set(divider.start, 0)
        await ctx.tick().repeat(divider.cycles - 1)
        quotients.append(ctx.get(divider.quotient))

    simulator = Simulator(divider)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert quotients == [100 // 9]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"dividend_bits": 0, "divisor_bits": 4, "quotient_bits": 4}, TypeError,
     "Divider dividend_bits must be an integer from 1 to 128, not 0"),
    ({"dividend_bits": 8, "divisor_bits": 4, "quotient_bits": 0}, TypeError,
     "Divider quotient_bits must be an integer from 1 to 64, not 0"),
    ({"dividend_bits": 3, "divisor_bits": 4, "quotient_bits": 4}, ValueError,
     "Divider dividend_bits 3 is less than quotient_bits 4"),
])
def test_parameter_errors_name_the_parameter(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        RestoringDivider(**kwargs)
