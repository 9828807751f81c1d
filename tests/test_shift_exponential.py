# amaranth: UnusedElaboratable=no
"""The shift exponential and its bounds check (hw/nonlinear/shift_exponential.py)."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from hw.nonlinear.shift_exponential import ExponentialCheck, ShiftExponential, exponent_limit
from sw.twin.nonlinear.arithmetic import exp2neg


def evaluate(component, inputs, outputs, cases):
    """Set ``inputs`` to each case's values and read ``outputs`` (combinational)."""
    results = []

    async def testbench(ctx):
        for case in cases:
            for name, value in zip(inputs, case):
                ctx.set(getattr(component, name), value)
            results.append(tuple(ctx.get(getattr(component, name)) for name in outputs))

    sim = Simulator(component)
    sim.add_testbench(testbench)
    sim.run()
    return results


def exponents(exp_bits):
    """Every fraction for E = 8 (all ``u`` up to past ``U_MAX``); a sample for larger E."""
    top = (1 << (exp_bits + 5)) - 1
    if exp_bits == 8:
        return list(range(exponent_limit(8) + 300)) + [top]
    rng = random.Random(exp_bits)
    fractions = [0, 1, 2, (1 << (exp_bits - 1)) - 1, 1 << (exp_bits - 1), (1 << exp_bits) - 1]
    fractions += [rng.randrange(1 << exp_bits) for _ in range(150)]
    return [(q << exp_bits) | t for q in (0, 1, 2, exp_bits, exp_bits + 1, 31)
            for t in fractions]


@pytest.mark.parametrize("exp_bits", [8, 12, 15])
def test_the_exponential_equals_the_twin(exp_bits):
    values = exponents(exp_bits)
    results = evaluate(ShiftExponential(exp_bits=exp_bits), ["exponent"],
                       ["integer", "exponential"], [(u,) for u in values])
    expected = exp2neg(torch.tensor(values), exp_bits).tolist()
    assert [result[1] for result in results] == expected
    assert [result[0] for result in results] == [u >> exp_bits for u in values]


@pytest.mark.parametrize("exp_bits", [8, 15])
def test_the_check_passes_exactly_between_the_bounds(exp_bits):
    rng = random.Random(exp_bits)
    cases = []
    for q in range(32):
        low, high = (1 << (exp_bits - 1)) >> q, (1 << exp_bits) >> q
        candidates = {0, 1, low - 1, low, low + 1, high - 1, high, high + 1,
                      (1 << (exp_bits + 1)) - 1, rng.randrange(1 << (exp_bits + 1))}
        cases += [(q, e) for e in sorted(candidates) if 0 <= e < 1 << (exp_bits + 1)]
    results = evaluate(ExponentialCheck(exp_bits=exp_bits), ["integer", "exponential"],
                       ["in_bounds"], cases)
    assert [bool(result[0]) for result in results] == \
        [((1 << (exp_bits - 1)) >> q) <= e <= ((1 << exp_bits) >> q) for q, e in cases]


def test_the_exponential_of_every_exponent_passes_the_check():
    values = exponents(8)
    exponentials = exp2neg(torch.tensor(values), 8).tolist()
    results = evaluate(ExponentialCheck(exp_bits=8), ["integer", "exponential"],
                       ["in_bounds"], [(u >> 8, e) for u, e in zip(values, exponentials)])
    assert all(result[0] for result in results)


def test_exp_bits_is_checked():
    with pytest.raises(TypeError, match=r"^Exponential exp_bits must be an integer from 8 "
                                        r"to 15, not 16$"):
        ShiftExponential(exp_bits=16)
