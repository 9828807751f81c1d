# amaranth: UnusedElaboratable=no
"""The shift exponential and its check (hw/nonlinear/shift_exponential.py) against the twin."""

import random

import pytest
import torch
from amaranth.sim import Simulator

from hw.nonlinear.shift_exponential import ExponentialCheck, ShiftExponential, exponent_limit
from sw.twin.nonlinear.arithmetic import exp2neg

torch.set_num_threads(1)


def evaluate(component, inputs, outputs, cases):
    """The ``outputs`` of the combinational ``component`` for each tuple of ``inputs``."""
    results = []

    async def bench(ctx):
        for case in cases:
            for name, value in zip(inputs, case, strict=True):
                ctx.set(getattr(component, name), value)
            results.append(tuple(ctx.get(getattr(component, name)) for name in outputs))

    simulator = Simulator(component)
    simulator.add_testbench(bench)
    simulator.run()
    return results


def exponents(exp_bits):
    """Every exponent for E = 8; for larger E the segment ends, powers of two and a sample."""
    if exp_bits == 8:
        return list(range(1 << 13))
    e = exp_bits
    rng = random.Random(e)
    special = {0, 1, 2, (1 << (e - 1)) - 1, 1 << (e - 1), (1 << e) - 1, 1 << e,
               exponent_limit(e), exponent_limit(e) - 1, (1 << (e + 5)) - 1}
    return sorted(special | {rng.getrandbits(e + 5) for _ in range(1500)}
                  | {rng.randrange(exponent_limit(e)) for _ in range(1500)})


@pytest.mark.parametrize("exp_bits", [8, 11, 15])
def test_shift_exponential_equals_the_twin(exp_bits):
    cases = exponents(exp_bits)
    results = evaluate(ShiftExponential(exp_bits=exp_bits), ["exponent"], ["exponential"],
                       [(u,) for u in cases])
    assert [e for e, in results] == exp2neg(torch.tensor(cases), exp_bits).tolist()


def twin_check_fails(u, e, exp_bits):
    q = u >> exp_bits
    return not (u <= exponent_limit(exp_bits)
                and ((1 << (exp_bits - 1)) >> q) <= e <= ((1 << exp_bits) >> q))


@pytest.mark.parametrize("exp_bits", [8, 15])
def test_exponential_check_is_the_specification(exp_bits):
    rng = random.Random(exp_bits)
    clean = [(u, int(exp2neg(torch.tensor(u), exp_bits))) for u in exponents(exp_bits)[::7]
             if u <= exponent_limit(exp_bits)]   # the units saturate u at U_MAX
    bounds = []
    for u in [rng.randrange(exponent_limit(exp_bits) + 1) for _ in range(200)]:
        q = u >> exp_bits
        for e in (((1 << (exp_bits - 1)) >> q) - 1, (1 << (exp_bits - 1)) >> q,
                  (1 << exp_bits) >> q, ((1 << exp_bits) >> q) + 1):
            if e >= 0:
                bounds.append((u, e))
    noise = [(rng.getrandbits(exp_bits + 5), rng.getrandbits(exp_bits + 1)) for _ in range(500)]
    cases = clean + bounds + noise
    results = evaluate(ExponentialCheck(exp_bits=exp_bits), ["exponent", "exponential"],
                       ["fail"], cases)
    assert [bool(fail) for fail, in results] == [twin_check_fails(u, e, exp_bits)
                                                 for u, e in cases]
    assert not any(fail for fail, in results[:len(clean)])


def test_exponential_check_on_every_integer_part_and_exponential():
    """E = 8: every ``q`` (0 .. 31) with every ``e`` (0 .. 511), fraction 0 and not 0."""
    rng = random.Random(0)
    cases = [(q << 8 | fraction, e) for q in range(32) for e in range(512)
             for fraction in (0, rng.randrange(1, 256))]
    results = evaluate(ExponentialCheck(exp_bits=8), ["exponent", "exponential"], ["fail"],
                       cases)
    assert [bool(fail) for fail, in results] == [twin_check_fails(u, e, 8) for u, e in cases]
