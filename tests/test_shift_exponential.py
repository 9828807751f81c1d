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
    """Every exponent for E = 8; for larger E the segment ends, powers of two, every integer
    part that matters with chosen and random fractions, and a random sample."""
    if exp_bits == 8:
        return list(range(1 << 13))
    e = exp_bits
    rng = random.Random(e)
    special = {0, 1, 2, (1 << (e - 1)) - 1, 1 << (e - 1), (1 << e) - 1, 1 << e,
               exponent_limit(e), exponent_limit(e) - 1, (1 << (e + 5)) - 1}
    fractions = [0, 1, 2, (1 << (e - 1)) - 1, 1 << (e - 1), (1 << e) - 1]
    fractions += [rng.randrange(1 << e) for _ in range(150)]
    fields = {(q << e) | t for q in (0, 1, 2, e, e + 1, 31) for t in fractions}
    return sorted(special | fields | {rng.getrandbits(e + 5) for _ in range(1500)}
                  | {rng.randrange(exponent_limit(e)) for _ in range(1500)})


@pytest.mark.parametrize("exp_bits", [8, 11, 12, 15])
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


def test_exponential_check_just_inside_and_outside_the_bounds_of_every_integer_part():
    """E = 15: for every ``q`` (0 .. 31), ``e`` at and beside each bound and at the extremes,
    with fraction 0 and not 0."""
    e_bits = 15
    rng = random.Random(e_bits)
    cases = []
    for q in range(32):
        low, high = (1 << (e_bits - 1)) >> q, (1 << e_bits) >> q
        candidates = {0, 1, low - 1, low, low + 1, high - 1, high, high + 1,
                      (1 << (e_bits + 1)) - 1, rng.randrange(1 << (e_bits + 1))}
        cases += [(q << e_bits | fraction, e) for e in sorted(candidates)
                  if 0 <= e < 1 << (e_bits + 1) for fraction in (0, rng.randrange(1, 1 << 15))]
    results = evaluate(ExponentialCheck(exp_bits=e_bits), ["exponent", "exponential"],
                       ["fail"], cases)
    assert [bool(fail) for fail, in results] == [twin_check_fails(u, e, e_bits)
                                                 for u, e in cases]


def test_the_exponential_of_every_exponent_up_to_the_limit_passes_the_check():
    values = list(range(exponent_limit(8) + 1))
    exponentials = exp2neg(torch.tensor(values), 8).tolist()
    results = evaluate(ExponentialCheck(exp_bits=8), ["exponent", "exponential"], ["fail"],
                       list(zip(values, exponentials, strict=True)))
    assert not any(fail for fail, in results)


@pytest.mark.parametrize("block, name", [(ShiftExponential, "Shift exponential"),
                                         (ExponentialCheck, "Exponential check")])
@pytest.mark.parametrize("exp_bits", [7, 16, True])
def test_exp_bits_is_checked(block, name, exp_bits):
    with pytest.raises(TypeError, match=f"^{name} exp_bits must be an integer from 8 to 15, "
                                        f"not {exp_bits}$"):
        block(exp_bits=exp_bits)
