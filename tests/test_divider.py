# amaranth: UnusedElaboratable=no
"""The saturating restoring divider (hw/nonlinear/divider.py) against the twin's divide."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from hw.nonlinear.divider import RestoringDivider
from sw.twin.nonlinear.arithmetic import divide


def run_divisions(divider, cases):
    """Each ``(dividend, divisor)`` through the divider: (quotient, saturated, busy cycles)."""
    results = []

    async def testbench(ctx):
        for dividend, divisor in cases:
            ctx.set(divider.dividend, dividend)
            ctx.set(divider.divisor, divisor)
            ctx.set(divider.start, 1)
            await ctx.tick()
            ctx.set(divider.start, 0)
            busy = 0
            while ctx.get(divider.busy):
                busy += 1
                await ctx.tick()
            results.append((ctx.get(divider.quotient), ctx.get(divider.saturated), busy))

    sim = Simulator(divider)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


@pytest.mark.parametrize(("dividend_bits", "divisor_bits", "quotient_bits"),
                         [(7 + 24, 24, 16), (24, 17, 8), (5, 3, 1), (4, 6, 8)])
def test_quotients_equal_the_twin_including_the_saturating_cases(dividend_bits, divisor_bits,
                                                                 quotient_bits):
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
    dividends = torch.tensor([case[0] for case in cases])
    divisors = torch.tensor([case[1] for case in cases])
    expected = divide(dividends, divisors, quotient_bits).tolist()
    assert [result[0] for result in results] == expected
    full = (1 << quotient_bits) - 1
    assert [bool(result[1]) for result in results] == \
        [divisor == 0 or dividend >> quotient_bits >= divisor for dividend, divisor in cases]
    assert [result[0] for result in results if result[1]] == \
        [full] * sum(result[1] for result in results)
    assert {result[2] for result in results} == {divider.cycles} == {quotient_bits}


def test_the_parameters_are_checked():
    with pytest.raises(TypeError, match=r"^Divider quotient_bits must be an integer from 1 "
                                        r"to 64, not 0$"):
        RestoringDivider(dividend_bits=8, divisor_bits=8, quotient_bits=0)
    with pytest.raises(TypeError, match=r"^Divider divisor_bits must be an integer from 1 "
                                        r"to 64, not True$"):
        RestoringDivider(dividend_bits=8, divisor_bits=True, quotient_bits=4)
