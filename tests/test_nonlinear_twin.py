"""The nonlinear units' twin against a scalar reference written from docs/nonlinear.md.

The reference below uses plain Python integers and loops, one row at a time, and restates
every width, divider and square root of the specification itself (a literal restoring
divider, a literal bit-serial square root). With ``strict`` registers it also asserts the
specification's claim that no fault-free value ever wraps or saturates a register.
"""

import math
import random
import re

import pytest
import torch
from torch.nn import functional

from sw.twin.nonlinear import (GeluParams, LayerNormParams, SoftmaxParams, check_gelu,
                               check_layernorm, check_softmax, gelu, layernorm, softmax)
from sw.twin.nonlinear.arithmetic import bit_length, divide, exp2neg, isqrt
from sw.twin.nonlinear.gelu import GELU_STAGES
from sw.twin.nonlinear.layernorm import LAYERNORM_STAGES
from sw.twin.nonlinear.softmax import SOFTMAX_STAGES

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---------------------------------------------------------------------------------------
# The scalar reference, straight from docs/nonlinear.md
# ---------------------------------------------------------------------------------------

def reference_fit(value, bits, signed):
    value &= (1 << bits) - 1
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def reference_fits(value, bits, signed):
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return low <= value <= high


class Registers:
    """Each stage's register: asserts clean values fit (``strict``), applies bit flips."""

    def __init__(self, widths, flips=(), strict=True):
        self.widths = widths
        self.flips = flips
        self.strict = strict
        self.order = []

    def __call__(self, stage, values):
        self.order.append(stage)
        bits, signed = self.widths[stage]
        if self.strict:
            assert all(reference_fits(value, bits, signed) for value in values), stage
        values = [reference_fit(value, bits, signed) for value in values]
        for flip_stage, index, bit in self.flips:
            if flip_stage == stage:
                values[index] = reference_fit(values[index] ^ (1 << bit), bits, signed)
        return values


def reference_divide(dividend, divisor, quotient_bits):
    """The restoring divider, one quotient bit per iteration, saturating."""
    if divisor == 0 or (dividend >> quotient_bits) >= divisor:
        return (1 << quotient_bits) - 1
    remainder, quotient = dividend >> quotient_bits, 0
    for bit in reversed(range(quotient_bits)):
        remainder = 2 * remainder + ((dividend >> bit) & 1)
        if remainder >= divisor:
            remainder -= divisor
            quotient |= 1 << bit
        assert 0 <= remainder < divisor
    return quotient


def reference_isqrt(value):
    """The bit-serial restoring square root, one root bit per iteration."""
    root = remainder = 0
    for pair in reversed(range((value.bit_length() + 1) // 2)):
        remainder = (remainder << 2) | ((value >> (2 * pair)) & 3)
        trial = (root << 2) | 1
        root <<= 1
        if remainder >= trial:
            remainder -= trial
            root |= 1
    return root


def reference_exp2neg(exponent, e):
    integer, fraction, half = exponent >> e, exponent & ((1 << e) - 1), 1 << (e - 1)
    if fraction < half:
        t = fraction
        mantissa = (1 << e) - (t >> 1) - (t >> 4) - (t >> 5) + (t >> 7)
    else:
        t = fraction - half
        mantissa_half = (1 << e) - (1 << (e - 2)) - (1 << (e - 5)) - (1 << (e - 6)) \
            + (1 << (e - 8))
        mantissa = mantissa_half - (t >> 2) - (t >> 3) - (t >> 5) - (t >> 7)
    return mantissa >> integer


def clamp(value, low, high):
    return min(max(value, low), high)


def softmax_widths(length, e):
    index = length.bit_length()
    return {"input": (32, True), "maximum": (32, True), "difference": (33, True),
            "exponent": (e + 5, False), "exponential": (e + 1, False),
            "sum": (e + index, False), "reciprocal": (7 + index, False), "output": (8, True)}


def reference_softmax(row, length, multiplier, shift, e, registers):
    index = length.bit_length()
    precision, limit = e + index, (e + 1) << e
    x = registers("input", row)
    (maximum,) = registers("maximum", [max(x)])
    difference = registers("difference", [maximum - value for value in x])
    exponent = registers("exponent", [clamp((d * multiplier) >> shift, 0, limit)
                                      for d in difference])
    exponential = registers("exponential", [reference_exp2neg(u, e) for u in exponent])
    (total,) = registers("sum", [sum(exponential)])
    (reciprocal,) = registers("reciprocal", [reference_divide(127 << precision, total,
                                                              7 + index)])
    output = registers("output", [min((value * reciprocal + (1 << (precision - 1)))
                                      >> precision, 127) for value in exponential])
    return {"input": x, "maximum": [maximum], "difference": difference, "exponent": exponent,
            "exponential": exponential, "sum": [total], "reciprocal": [reciprocal],
            "output": output}


def reference_softmax_flags(stages, length, e):
    n, index = len(stages["input"]), length.bit_length()
    precision, limit = e + index, (e + 1) << e
    (total,), (reciprocal,) = stages["sum"], stages["reciprocal"]
    dividend = 127 << precision
    output_sum = sum(stages["output"])
    return {
        "maximum": not (all(d >= 0 for d in stages["difference"])
                        and any(d == 0 for d in stages["difference"])),
        "exponential": not all(u <= limit and ((1 << (e - 1)) >> (u >> e)) <= value
                               <= ((1 << e) >> (u >> e))
                               for u, value in zip(stages["exponent"], stages["exponential"])),
        "sum": not (1 << e) <= total <= n << e,
        "reciprocal": not (reciprocal * total <= dividend < (reciprocal + 1) * total),
        "total": not 127 - (n + 1) // 2 <= output_sum <= 127 + n // 2,
        "peak": max(stages["output"]) != (reciprocal + (1 << (index - 1))) >> index,
    }


def gelu_widths(e, k):
    return {"input": (8, True), "exponent": (e + 5, False), "exponential": (e + 1, False),
            "quotient": (k, False), "sigmoid": (k + 1, False), "output": (8, True)}


def reference_gelu(row, multiplier, shift, e, k, registers):
    limit = (e + 1) << e
    x = registers("input", row)
    exponent = registers("exponent", [min((abs(v) * multiplier) >> shift, limit) for v in x])
    exponential = registers("exponential", [reference_exp2neg(u, e) for u in exponent])
    quotient = registers("quotient", [reference_divide(v << k, (1 << e) + v, k)
                                      for v in exponential])
    sigmoid = registers("sigmoid", [(1 << k) - g if v >= 0 else g
                                    for v, g in zip(x, quotient)])
    output = registers("output", [clamp((v * s + (1 << (k - 1))) >> k, -127, 127)
                                  for v, s in zip(x, sigmoid)])
    return {"input": x, "exponent": exponent, "exponential": exponential,
            "quotient": quotient, "sigmoid": sigmoid, "output": output}


def reference_gelu_flags(stages, e, k):
    limit, half = (e + 1) << e, 1 << (k - 1)
    elements = list(zip(stages["input"], stages["exponent"], stages["exponential"],
                        stages["quotient"], stages["sigmoid"], stages["output"]))
    return {
        "exponential": any(not (u <= limit and ((1 << (e - 1)) >> (u >> e)) <= v
                                <= ((1 << e) >> (u >> e))) for _, u, v, _, _, _ in elements),
        "quotient": any(not (v >> (e + 1 - k)) <= g <= (v >> (e - k))
                        for _, _, v, g, _, _ in elements),
        "sigmoid": any(not (half <= s <= 1 << k if x >= 0 else s <= half)
                       for x, _, _, _, s, _ in elements),
        "output": any(not (x + 1) >> 1 <= o <= max(x, 0) for x, _, _, _, _, o in elements),
    }


def layernorm_widths(length, b, z):
    index = length.bit_length()
    return {"input": (b, True), "total": (b + index, False), "mean": (b, True),
            "centred": (b + 1, True), "variance": (2 * b + index, False),
            "root": (b + (index + 1) // 2, False), "reciprocal": (z + 4, False),
            "normalized": (z + 2, True), "affine": (max(z + 16, 31) + 2, True),
            "output": (8, True)}


def radicand(variance, eps_term, width):
    """``P << 2s``, ``s`` with ``P = min(V + eps, 2^width - 1)`` and ``s`` the even shift to
    ``width - 1`` or ``width`` bits (0 for ``P = 0``)."""
    padded = min(variance + eps_term, (1 << width) - 1)
    scale = (width - padded.bit_length()) >> 1 if padded else 0
    return padded << (2 * scale), scale


def reference_layernorm(row, length, gain, offset, shift, eps_term, b, z, registers):
    n, c = len(row), 2
    x = registers("input", row)
    (total,) = registers("total", [sum(v + (1 << (b - 1)) for v in x)])
    (mean,) = registers("mean", [reference_divide(2 * total + n, 2 * n, b) - (1 << (b - 1))])
    centred = registers("centred", [v - mean for v in x])
    (variance,) = registers("variance", [sum(y * y for y in centred)])
    scaled, scale = radicand(variance, eps_term, 2 * b + length.bit_length())
    (root,) = registers("root", [reference_isqrt(scaled)])
    divisor = max(root, 1)
    (reciprocal,) = registers("reciprocal", [reference_divide(
        1 << (z + c + divisor.bit_length()), divisor, z + c + 2)])
    normalize = max(divisor.bit_length() + c - scale, 0)
    normalized = registers("normalized", [clamp((y * reciprocal) >> normalize, -(1 << (z + 1)),
                                                (1 << (z + 1)) - 1) for y in centred])
    affine = registers("affine", [v * g + o for v, g, o in zip(normalized, gain, offset)])
    output = registers("output", [clamp(a >> shift, -127, 127) for a in affine])
    return {"input": x, "total": [total], "mean": [mean], "centred": centred,
            "variance": [variance], "root": [root], "reciprocal": [reciprocal],
            "normalized": normalized, "affine": affine, "output": output}


def reference_layernorm_flags(stages, length, gain, offset, shift, eps_term, b, z):
    n = len(stages["input"])
    centred = stages["centred"]
    (variance,), (root,), (reciprocal,) = stages["variance"], stages["root"], \
        stages["reciprocal"]
    peak = max(abs(y) for y in centred)
    scaled, scale = radicand(variance, eps_term, 2 * b + length.bit_length())
    divisor = max(root, 1)
    dividend = 1 << (z + 2 + divisor.bit_length())

    def output_ok(value, normalized, g, o):
        low = clamp((o - (abs(g) << z)) >> shift, -127, 127)
        high = clamp((o + (abs(g) << z)) >> shift, -127, 127)
        centre = clamp(o >> shift, -127, 127)
        upper = (normalized < 0) == (g < 0)
        return centre <= value <= high if upper else low <= value <= centre

    return {
        "mean": not -n <= 2 * sum(centred) < n,
        "variance": not (peak < 1 << b and peak * peak <= variance <= n * peak * peak),
        "root": not root * root <= scaled <= root * root + 2 * root,
        "reciprocal": not reciprocal * divisor <= dividend < (reciprocal + 1) * divisor,
        "normalized": not (all(abs(y) << scale <= root for y in centred)
                           and all(abs(v) <= 1 << z for v in stages["normalized"])),
        "output": not all(output_ok(*element) for element in zip(
            stages["output"], stages["normalized"], gain, offset)),
    }


# ---------------------------------------------------------------------------------------
# Comparing the twin with the reference
# ---------------------------------------------------------------------------------------

def flip_hook(flips):
    """A twin hook that XORs ``1 << bit`` into element ``index`` of ``stage``."""
    def hook(stage, values):
        for flip_stage, index, bit in flips:
            if flip_stage == stage:
                values = values.clone()
                values.view(-1)[index] ^= 1 << bit
        return values
    return hook


def row_stages(trace, stages, row):
    return {stage: getattr(trace, stage)[row].tolist() for stage in stages}


def row_flags(flags, row):
    return {name: bool(getattr(flags, name)[row]) for name in flags.names}


def softmax_case(rows, params):
    trace = softmax(rows, params)
    flags = check_softmax(trace, params)
    for row in range(rows.shape[0]):
        registers = Registers(softmax_widths(params.length, params.exp_bits))
        expected = reference_softmax(rows[row].tolist(), params.length, params.multiplier,
                                     params.shift, params.exp_bits, registers)
        assert row_stages(trace, SOFTMAX_STAGES, row) == expected
        assert row_flags(flags, row) == reference_softmax_flags(expected, params.length,
                                                                params.exp_bits)
    return trace, flags


def gelu_case(rows, params):
    trace = gelu(rows, params)
    flags = check_gelu(trace, params)
    for row in range(rows.shape[0]):
        registers = Registers(gelu_widths(params.exp_bits, params.sigmoid_bits))
        expected = reference_gelu(rows[row].tolist(), params.multiplier, params.shift,
                                  params.exp_bits, params.sigmoid_bits, registers)
        assert row_stages(trace, GELU_STAGES, row) == expected
        assert row_flags(flags, row) == reference_gelu_flags(expected, params.exp_bits,
                                                             params.sigmoid_bits)
    return trace, flags


def layernorm_case(rows, params):
    trace = layernorm(rows, params)
    flags = check_layernorm(trace, params)
    for row in range(rows.shape[0]):
        registers = Registers(layernorm_widths(params.length, params.input_bits,
                                               params.norm_bits))
        expected = reference_layernorm(rows[row].tolist(), params.length, params.gain,
                                       params.offset, params.shift, params.eps_term,
                                       params.input_bits, params.norm_bits, registers)
        assert row_stages(trace, LAYERNORM_STAGES, row) == expected
        assert row_flags(flags, row) == reference_layernorm_flags(
            expected, params.length, params.gain, params.offset, params.shift,
            params.eps_term, params.input_bits, params.norm_bits)
    return trace, flags


def assert_quiet(flags):
    raised = {name: int(getattr(flags, name).sum()) for name in flags.names}
    assert raised == {name: 0 for name in flags.names}
    assert not flags.alarm.any()


# ---------------------------------------------------------------------------------------
# Row sets: random and extreme
# ---------------------------------------------------------------------------------------

def generator(seed):
    return torch.Generator().manual_seed(seed)


def softmax_rows(kind, n, seed=0):
    g = generator(seed)
    if kind == "realistic":
        spread = torch.tensor([0.5, 2.0, 8.0]).repeat_interleave(4)[:, None]
        return (torch.randn(12, n, generator=g) * spread / 1e-4).round().to(torch.int64)
    if kind == "full_range":
        return torch.randint(INT32_MIN, INT32_MAX + 1, (12, n), generator=g)
    rows = [[0] * n, [INT32_MIN] * n, [INT32_MAX] * n,
            [INT32_MAX] + [INT32_MIN] * (n - 1), [INT32_MIN] * (n - 1) + [INT32_MAX],
            [INT32_MAX] * (n - 1) + [INT32_MIN], [5] * (n // 2) + [-5] * (n - n // 2)]
    return torch.tensor(rows, dtype=torch.int64)


SOFTMAX_SCALES = (1e-7, 1e-4, 0.05, 3.0, 1e3)


@pytest.mark.parametrize("scale", SOFTMAX_SCALES)
@pytest.mark.parametrize("kind", ["realistic", "full_range", "extreme"])
def test_softmax_equals_the_reference_and_no_checker_raises(kind, scale):
    params = SoftmaxParams.for_scale(scale, 32)
    _, flags = softmax_case(softmax_rows(kind, 17), params)
    assert_quiet(flags)


@pytest.mark.parametrize("exp_bits", [8, 11, 15])
def test_softmax_every_row_length_up_to_the_unit_length(exp_bits):
    for n in range(1, 9):
        for kind in ("realistic", "full_range", "extreme"):
            params = SoftmaxParams.for_scale(1e-4, 8, exp_bits)
            _, flags = softmax_case(softmax_rows(kind, n, seed=n), params)
            assert_quiet(flags)


def test_softmax_longest_rows():
    params = SoftmaxParams.for_scale(1e-4, 511)
    rows = torch.cat([softmax_rows("realistic", 511)[::4], softmax_rows("extreme", 511)[:4]])
    _, flags = softmax_case(rows, params)
    assert_quiet(flags)


def gelu_rows(seed=0):
    g = generator(seed)
    everything = torch.arange(-128, 128)[None, :]
    extremes = torch.tensor([[-128] * 256, [127] * 256, [0] * 256, [-1, 1] * 128])
    return torch.cat([everything, extremes, torch.randint(-128, 128, (4, 256), generator=g)])


@pytest.mark.parametrize("scale", [1e-3, 0.02, 6 / 127, 0.5, 4.0])
@pytest.mark.parametrize("exp_bits, sigmoid_bits", [(15, 8), (15, 15), (8, 2), (12, 10)])
def test_gelu_equals_the_reference_and_no_checker_raises(scale, exp_bits, sigmoid_bits):
    params = GeluParams.for_scale(scale, 256, exp_bits, sigmoid_bits)
    _, flags = gelu_case(gelu_rows(), params)
    assert_quiet(flags)


def test_gelu_every_row_length_up_to_the_unit_length():
    params = GeluParams.for_scale(6 / 127, 8)
    for n in range(1, 9):
        rows = torch.randint(-128, 128, (6, n), generator=generator(n))
        _, flags = gelu_case(rows, params)
        assert_quiet(flags)


def random_affine(n, b, length, seed):
    rng = random.Random(seed)
    eps_limit = 1 << (2 * b + length.bit_length() - 2)
    eps_term = rng.choice([0, rng.randrange(eps_limit), eps_limit - 1])
    gain = [rng.choice([rng.randint(-32767, 32767), 32767, -32767, 0, 1])
            for _ in range(n)]
    offset = [rng.choice([rng.randint(INT32_MIN, INT32_MAX), INT32_MIN, INT32_MAX, 0])
              for _ in range(n)]
    return gain, offset, rng.randint(0, 63), eps_term


def layernorm_rows(kind, n, b, seed=0):
    g = generator(seed)
    low, high = -(1 << (b - 1)), (1 << (b - 1)) - 1
    if kind == "realistic":
        spread = torch.tensor([0.02, 0.1, 0.3])[:, None, None] * (1 << (b - 1))
        centre = torch.tensor([0.0, 0.3, -0.4])[None, :, None] * (1 << (b - 1))
        rows = (torch.randn(3, 3, n, generator=g) * spread + centre).round()
        return rows.reshape(9, n).clamp(low, high).to(torch.int64)
    if kind == "full_range":
        return torch.randint(low, high + 1, (8, n), generator=g)
    rows = [[0] * n, [low] * n, [high] * n, [low, high] * (n // 2) + [low] * (n % 2),
            [high] + [low] * (n - 1), [low] + [high] * (n - 1), [min(3, high)] + [0] * (n - 1),
            [1] * (n - 1) + [0]]
    return torch.tensor(rows, dtype=torch.int64)


@pytest.mark.parametrize("input_bits, norm_bits", [(16, 14), (8, 4), (24, 16), (2, 10)])
@pytest.mark.parametrize("kind", ["realistic", "full_range", "extreme"])
def test_layernorm_equals_the_reference_and_no_checker_raises(kind, input_bits, norm_bits):
    for seed, (n, length) in enumerate([(64, 64), (33, 1023), (7, 8)]):
        gain, offset, shift, eps_term = random_affine(n, input_bits, length, seed)
        params = LayerNormParams(length, gain, offset, shift, eps_term, input_bits=input_bits,
                                 norm_bits=norm_bits)
        _, flags = layernorm_case(layernorm_rows(kind, n, input_bits, seed), params)
        assert_quiet(flags)


def test_layernorm_every_row_length_up_to_the_unit_length():
    for n in range(1, 9):
        weight, bias = torch.linspace(0.5, 1.5, n), torch.linspace(-0.2, 0.2, n)
        params = LayerNormParams.for_affine(weight, bias, 1e-4, 0.05, 8)
        for kind in ("realistic", "full_range", "extreme"):
            _, flags = layernorm_case(layernorm_rows(kind, n, 16, seed=n), params)
            assert_quiet(flags)


# ---------------------------------------------------------------------------------------
# The shared pieces
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("e", range(8, 16))
def test_shift_exponential_has_the_properties_the_checkers_rely_on(e):
    exponents = torch.arange(0, ((e + 1) << e) + 1)
    values = exp2neg(exponents, e)
    sample = list(range(0, (e + 1) << e, 97)) + [(e + 1) << e, (1 << e) - 1, 1 << (e - 1)]
    assert [reference_exp2neg(u, e) for u in sample] == values[sample].tolist()
    integer = exponents >> e
    mantissa = values << integer
    first = integer == 0
    assert bool((values[1:] <= values[:-1]).all())
    assert bool(((values >= (1 << (e - 1)) >> integer) & (values <= (1 << e) >> integer)).all())
    assert bool((mantissa[first] > 1 << (e - 1)).all())
    assert int(mantissa[0]) == 1 << e and bool((mantissa[first] <= 1 << e).all())
    assert values[-1] == 0
    exact = 2.0 ** (e - exponents[first].double() / (1 << e))
    chord, truncation = 0.0153, 8.0 / (1 << e)
    assert float(((values[first] - exact) / exact).abs().max()) < chord + truncation


def test_divider_is_the_saturating_restoring_divider():
    rng = random.Random(1)
    cases = [(0, 0, 4), (5, 0, 4), (15, 1, 4), (16, 1, 4), (1 << 40, 3, 40), (7, 7, 1),
             (127 << 24, 1 << 15, 16), (127 << 24, (1 << 15) - 1, 16)]
    cases += [(rng.randrange(1 << rng.randint(1, 45)), rng.randrange(1 << rng.randint(1, 24)),
               rng.randint(1, 33)) for _ in range(2000)]
    dividend, divisor, bits = zip(*cases)
    for quotient_bits in set(bits):
        chosen = [index for index, value in enumerate(bits) if value == quotient_bits]
        twin = divide(torch.tensor([dividend[i] for i in chosen]),
                      torch.tensor([divisor[i] for i in chosen]), quotient_bits)
        assert twin.tolist() == [reference_divide(dividend[i], divisor[i], quotient_bits)
                                 for i in chosen]


def test_square_root_is_the_exact_floor():
    rng = random.Random(2)
    roots = [rng.randrange(1 << 29) for _ in range(500)] + [0, 1, (1 << 29) - 1]
    values = [r * r + delta for r in roots for delta in (-1, 0, 1, 2 * r) if r * r + delta >= 0]
    values += [rng.randrange(1 << 58) for _ in range(1000)] + [(1 << 58) - 1]
    assert isqrt(torch.tensor(values)).tolist() == [reference_isqrt(v) for v in values]
    assert [reference_isqrt(v) for v in values] == [math.isqrt(v) for v in values]
    assert bit_length(torch.tensor([1, 2, 3, 4, (1 << 40) - 1])).tolist() == [1, 2, 2, 3, 40]


# ---------------------------------------------------------------------------------------
# Faults: the twin stays bit-exact, and each checker catches what it must
# ---------------------------------------------------------------------------------------

def random_flips(widths, n, per_row, rng, count):
    """``count`` random (stage, element, bit) flips; ``per_row`` stages hold one value."""
    flips = []
    for _ in range(count):
        stage = rng.choice(sorted(widths))
        index = 0 if stage in per_row else rng.randrange(n)
        flips.append((stage, index, rng.randrange(widths[stage][0])))
    return tuple(flips)


def test_softmax_twin_and_reference_agree_under_bit_flips():
    rng = random.Random(3)
    params = SoftmaxParams.for_scale(1e-4, 32)
    widths = softmax_widths(32, 15)
    rows = softmax_rows("realistic", 17, seed=3)
    for trial in range(300):
        row = rows[trial % rows.shape[0]]
        flips = random_flips(widths, 17, {"maximum", "sum", "reciprocal"}, rng,
                             1 + trial % 3)
        trace = softmax(row, params, hook=flip_hook(flips))
        expected = reference_softmax(row.tolist(), 32, params.multiplier, params.shift, 15,
                                     Registers(widths, flips, strict=False))
        assert {stage: getattr(trace, stage).tolist() for stage in SOFTMAX_STAGES} == expected
        flags = check_softmax(trace, params)
        assert {name: bool(getattr(flags, name)) for name in flags.names} == \
            reference_softmax_flags(expected, 32, 15)


def test_gelu_twin_and_reference_agree_under_bit_flips():
    rng = random.Random(4)
    params = GeluParams.for_scale(6 / 127, 256)
    widths = gelu_widths(15, 8)
    rows = gelu_rows(seed=4)
    for trial in range(200):
        row = rows[trial % rows.shape[0]]
        flips = random_flips(widths, 256, set(), rng, 1 + trial % 4)
        trace = gelu(row, params, hook=flip_hook(flips))
        expected = reference_gelu(row.tolist(), params.multiplier, params.shift, 15, 8,
                                  Registers(widths, flips, strict=False))
        assert {stage: getattr(trace, stage).tolist() for stage in GELU_STAGES} == expected
        flags = check_gelu(trace, params)
        assert {name: bool(getattr(flags, name)) for name in flags.names} == \
            reference_gelu_flags(expected, 15, 8)


def test_layernorm_twin_and_reference_agree_under_bit_flips():
    rng = random.Random(5)
    weight, bias = torch.linspace(0.2, 1.8, 64), torch.linspace(-1.0, 1.0, 64)
    params = LayerNormParams.for_affine(weight, bias, 1e-4, 0.03, 64)
    widths = layernorm_widths(64, 16, 14)
    rows = torch.cat([layernorm_rows("realistic", 64, 16, seed=5),
                      layernorm_rows("extreme", 64, 16)])
    for trial in range(300):
        row = rows[trial % rows.shape[0]]
        flips = random_flips(widths, 64, {"total", "mean", "variance", "root", "reciprocal"},
                             rng, 1 + trial % 3)
        trace = layernorm(row, params, hook=flip_hook(flips))
        expected = reference_layernorm(row.tolist(), 64, params.gain, params.offset,
                                       params.shift, params.eps_term, 16, 14,
                                       Registers(widths, flips, strict=False))
        assert {stage: getattr(trace, stage).tolist() for stage in LAYERNORM_STAGES} == expected
        flags = check_layernorm(trace, params)
        assert {name: bool(getattr(flags, name)) for name in flags.names} == \
            reference_layernorm_flags(expected, 64, params.gain, params.offset, params.shift,
                                      params.eps_term, 16, 14)


def replace(stage, change):
    """A hook that applies ``change(values)`` (on a copy) to one stage."""
    def hook(name, values):
        return change(values.clone()) if name == stage else values
    return hook


def raised(flags):
    return {name for name in flags.names if bool(getattr(flags, name).any())}


def with_element(values, index, value):
    values.view(-1)[index] = value
    return values


SOFTMAX_PARAMS = SoftmaxParams.for_scale(1e-4, 32)
SOFTMAX_ROW = torch.tensor([30000, -2000, 5000, 12000, -30000, 100, 25000, 0, 7000, -100,
                            2000, 29000, -5000, 15000, 3, 8000, 40000])


def softmax_flags_after(stage, change):
    trace = softmax(SOFTMAX_ROW, SOFTMAX_PARAMS, hook=replace(stage, change))
    return raised(check_softmax(trace, SOFTMAX_PARAMS))


def test_softmax_row_is_clean_before_corruption():
    assert raised(check_softmax(softmax(SOFTMAX_ROW, SOFTMAX_PARAMS), SOFTMAX_PARAMS)) == set()


@pytest.mark.parametrize("change", [lambda m: m - 1, lambda m: m + 1,
                                    lambda m: m ^ (1 << 30)])
def test_softmax_maximum_checker_catches_a_wrong_maximum(change):
    assert "maximum" in softmax_flags_after("maximum", change)


@pytest.mark.parametrize("index", range(17))
def test_softmax_exponential_checker_catches_the_top_bit_flipped(index):
    flags = softmax_flags_after("exponential",
                                lambda e: with_element(e, index, e[index] ^ (1 << 15)))
    assert "exponential" in flags


def test_softmax_sum_checker_catches_the_top_bit_flipped():
    assert {"sum", "total"} <= softmax_flags_after("sum", lambda s: s ^ (1 << 20))


@pytest.mark.parametrize("bit", range(15, 20))
def test_softmax_sum_flips_above_the_exponential_raise_an_alarm(bit):
    assert softmax_flags_after("sum", lambda s: s ^ (1 << bit))


@pytest.mark.parametrize("delta", [1, -1, 64])
def test_softmax_reciprocal_checker_catches_a_wrong_quotient(delta):
    assert "reciprocal" in softmax_flags_after("reciprocal", lambda r: r + delta)


def test_softmax_total_checker_catches_a_high_bit_flip_in_an_output():
    flags = softmax_flags_after("output", lambda o: o ^ ((o < 64).to(o.dtype) << 6))
    assert "total" in flags


def test_softmax_peak_checker_catches_a_lowered_largest_output():
    largest = int(SOFTMAX_ROW.argmax())
    flags = softmax_flags_after("output", lambda o: with_element(o, largest, o[largest] - 1))
    assert flags == {"peak"}


GELU_PARAMS = GeluParams.for_scale(6 / 127, 256)
GELU_CODES = torch.arange(-128, 128)


def gelu_element_flags(stage, value_of):
    """Per element: the checks raised when ``stage`` holds ``value_of(clean trace, element)``
    instead of its clean value."""
    clean = gelu(GELU_CODES, GELU_PARAMS)
    result = []
    for element in range(256):
        value = int(value_of(clean, element))
        hook = replace(stage, lambda values, value=value: torch.full_like(values, value))
        trace = gelu(GELU_CODES[element:element + 1], GELU_PARAMS, hook=hook)
        result.append(raised(check_gelu(trace, GELU_PARAMS)))
    return result


def test_gelu_exponential_checker_catches_an_exponential_above_its_exponent():
    flags = gelu_element_flags("exponential",
                               lambda c, i: ((1 << 15) >> int(c.exponent[i] >> 15)) + 1)
    assert all("exponential" in element for element in flags)


def test_gelu_quotient_checker_catches_a_quotient_off_its_exponential():
    exponential = gelu(GELU_CODES, GELU_PARAMS).exponential
    above = gelu_element_flags("quotient", lambda c, i: min(int(c.exponential[i] >> 7) + 1,
                                                            255))
    assert all("quotient" in element for i, element in enumerate(above)
               if exponential[i] >> 7 <= 254)
    cleared = gelu_element_flags("quotient", lambda c, i: 0)
    assert [("quotient" in element) for element in cleared] == \
        (exponential >= 1 << 8).tolist()


def test_gelu_sigmoid_checker_catches_the_top_bits_flipped():
    flags = gelu_element_flags("sigmoid", lambda c, i: int(c.sigmoid[i])
                               ^ (1 << 8 if GELU_CODES[i] < 0 else 1 << 7))
    assert all("sigmoid" in element for element in flags)


def test_gelu_output_checker_catches_a_sign_flip_and_an_output_above_its_input():
    flipped = gelu_element_flags("output", lambda c, i: int(c.output[i]) ^ (1 << 7))
    assert all("output" in element for element in flipped)
    above = gelu_element_flags("output", lambda c, i: max(int(GELU_CODES[i]), 0) + 1)
    assert all("output" in element for i, element in enumerate(above) if GELU_CODES[i] < 127)


LAYERNORM_PARAMS = LayerNormParams.for_affine(torch.linspace(0.02, 0.2, 64) *
                                              torch.tensor([1.0, -1.0]).repeat(32),
                                              torch.linspace(-0.5, 0.5, 64), 1e-4, 0.05, 64)
LAYERNORM_ROWS = torch.cat([layernorm_rows("realistic", 64, 16, seed=7),
                            layernorm_rows("full_range", 64, 16, seed=7)])


def layernorm_flags_after(stage, change):
    trace = layernorm(LAYERNORM_ROWS, LAYERNORM_PARAMS, hook=replace(stage, change))
    flags = check_layernorm(trace, LAYERNORM_PARAMS)
    return {name: getattr(flags, name) for name in flags.names}


def test_layernorm_rows_are_clean_before_corruption():
    assert_quiet(check_layernorm(layernorm(LAYERNORM_ROWS, LAYERNORM_PARAMS),
                                 LAYERNORM_PARAMS))


@pytest.mark.parametrize("delta", [1, -1, 1000])
def test_layernorm_mean_checker_catches_a_wrong_mean(delta):
    assert bool(layernorm_flags_after("mean", lambda m: m + delta)["mean"].all())


def test_layernorm_variance_checker_catches_the_top_bit_flipped():
    assert bool(layernorm_flags_after("variance", lambda v: v ^ (1 << 38))["variance"].all())


def test_layernorm_variance_checker_catches_a_cleared_top_bit_in_a_row_with_an_outlier():
    rows = torch.zeros(4, 64, dtype=torch.int64)
    rows[:, 9] = torch.tensor([40, 1000, 30000, -32768])
    trace = layernorm(rows, LAYERNORM_PARAMS)
    top = bit_length(trace.variance) - 1
    hook = replace("variance", lambda v: v ^ (1 << top))
    flags = check_layernorm(layernorm(rows, LAYERNORM_PARAMS, hook=hook), LAYERNORM_PARAMS)
    assert bool(flags.variance.all())


def test_layernorm_variance_checker_catches_a_centred_value_beyond_any_input():
    # |y| <= 2**B - 1 for B-bit codes and mean: y = -2**B (the sign bit of y's B + 1 set,
    # the rest clear) is a peak no row has, whatever V it leaves.
    def beyond(centred):
        centred[..., 5] = -(1 << 16)
        return centred
    assert bool(layernorm_flags_after("centred", beyond)["variance"].all())


@pytest.mark.parametrize("delta", [1, -1])
def test_layernorm_root_checker_catches_a_root_off_by_one(delta):
    assert bool(layernorm_flags_after("root", lambda r: r + delta)["root"].all())


@pytest.mark.parametrize("delta", [1, -1])
def test_layernorm_reciprocal_checker_catches_a_quotient_off_by_one(delta):
    assert bool(layernorm_flags_after("reciprocal", lambda r: r + delta)["reciprocal"].all())


def test_layernorm_normalized_checker_catches_the_sign_bit_flipped_and_a_zero_root():
    assert bool(layernorm_flags_after("normalized", lambda z: z ^ (1 << 15))["normalized"].all())
    assert bool(layernorm_flags_after("root", lambda r: r * 0)["normalized"].all())


def test_layernorm_output_checker_catches_an_output_on_the_wrong_side():
    clean = layernorm(LAYERNORM_ROWS, LAYERNORM_PARAMS).output.to(torch.int64)
    offset = torch.tensor(LAYERNORM_PARAMS.offset)
    centre = (offset >> LAYERNORM_PARAMS.shift).clamp(-127, 127)
    mirrored = 2 * centre - clean
    catchable = (clean != centre) & (mirrored.abs() <= 127)
    first = catchable.to(torch.int64).argmax(dim=-1, keepdim=True)
    assert bool(catchable.any(dim=-1).all())
    flags = layernorm_flags_after("output", lambda o: o.scatter(
        -1, first, mirrored.gather(-1, first)))
    assert bool(flags["output"].all())


def test_layernorm_output_checker_catches_an_output_beyond_its_reach():
    clean = layernorm(LAYERNORM_ROWS, LAYERNORM_PARAMS)
    gain, offset = torch.tensor(LAYERNORM_PARAMS.gain), torch.tensor(LAYERNORM_PARAMS.offset)
    high = ((offset + (gain.abs() << 14)) >> LAYERNORM_PARAMS.shift).clamp(-127, 127)
    channel = int(high.argmin())
    assert int(high[channel]) < 127
    flags = layernorm_flags_after("output", lambda o: torch.where(
        torch.arange(64) == channel, high[channel] + 1, o))
    assert bool(flags["output"].all())
    assert not bool((clean.output[:, channel] > high[channel]).any())


# ---------------------------------------------------------------------------------------
# Accuracy against float
# ---------------------------------------------------------------------------------------

def test_softmax_is_within_one_code_of_float_on_typical_scores():
    scale = 2e-4
    for n, spread in ((17, 1.0), (17, 4.0), (64, 2.0), (197, 3.0)):
        scores = torch.randn(400, n, generator=generator(n)) * spread
        codes = (scores / scale).round().to(torch.int64)
        params = SoftmaxParams.for_scale(scale, 256)
        output = softmax(codes, params).output.double() / 127
        error = (output - torch.softmax(codes.double() * scale, dim=-1)).abs()
        assert float(error.max()) < 1.0 / 127
        assert float(error.mean()) < 0.3 / 127


def test_gelu_is_within_a_code_and_the_sigmoid_form_of_float():
    for max_abs in (3.0, 6.0, 12.0):
        scale = max_abs / 127
        codes = torch.arange(-127, 128)
        params = GeluParams.for_scale(scale, 256)
        output = gelu(codes, params).output.double() * scale
        values = codes.double() * scale
        error = (output - functional.gelu(values)).abs()
        sigmoid_form = (values * torch.sigmoid(1.702 * values) - functional.gelu(values)).abs()
        assert float(sigmoid_form.max()) < 0.021
        assert float(error.max()) < 0.021 + 0.75 * scale
        assert float(error.mean()) < 0.01 + 0.25 * scale


def test_layernorm_is_within_one_code_of_float_on_typical_rows():
    g = generator(11)
    for n in (8, 64, 768):
        weight = 1.0 + 0.3 * torch.randn(n, generator=g)
        bias = 0.2 * torch.randn(n, generator=g)
        spread = 0.5 + 3.5 * torch.rand(300, 1, generator=g)
        values = torch.randn(300, n, generator=g) * spread + torch.randn(300, 1, generator=g)
        input_scale = float(values.abs().max()) / 32767
        codes = (values / input_scale).round().to(torch.int64)
        exact = functional.layer_norm(codes.double() * input_scale, (n,), weight.double(),
                                      bias.double(), eps=1e-6)
        output_scale = float(exact.abs().max()) / 127
        params = LayerNormParams.for_affine(weight, bias, input_scale, output_scale, 1023)
        output = layernorm(codes, params).output.double() * output_scale
        error = (output - exact).abs() / output_scale
        assert float(error.max()) < 0.75
        assert float(error.mean()) < 0.3


# ---------------------------------------------------------------------------------------
# Parameters, inputs and hooks
# ---------------------------------------------------------------------------------------

def test_scale_constructors_give_the_closest_16_bit_multiplier():
    for scale, unit, slope in ((1e-7, SoftmaxParams, 1.0), (1e-4, SoftmaxParams, 1.0),
                               (1.0, SoftmaxParams, 1.0), (1e-7, GeluParams, 1.702),
                               (0.05, GeluParams, 1.702), (0.5, GeluParams, 1.702)):
        params = unit.for_scale(scale, 32)
        target = slope * scale / math.log(2) * 2 ** 15
        assert 32768 <= params.multiplier <= 65535
        assert abs(params.multiplier / 2 ** params.shift / target - 1) < 2 ** -16
    assert (SoftmaxParams.for_scale(1e9, 32).multiplier,
            SoftmaxParams.for_scale(1e9, 32).shift) == (65535, 0)


def test_layernorm_for_affine_folds_gamma_beta_and_the_output_scale():
    weight, bias = [0.5, -1.25, 2.0], [0.1, 0.0, -0.3]
    params = LayerNormParams.for_affine(weight, bias, 1e-3, 0.02, 4)
    w, z = params.shift, params.norm_bits
    for g, c, gamma, beta in zip(params.gain, params.offset, weight, bias):
        assert g == round(gamma * math.sqrt(3) / 0.02 * 2 ** (w - z))
        assert c == round(beta / 0.02 * 2 ** w) + 2 ** (w - 1)
    assert max(abs(g) for g in params.gain) > 16383
    assert params.eps_term == round(3 * 1e-6 / 1e-3 ** 2)
    with pytest.raises(ValueError, match=r"^layernorm weight has 2 channels but bias has 1$"):
        LayerNormParams.for_affine([1.0, 1.0], [0.0], 1e-3, 0.02, 4)


@pytest.mark.parametrize("build, error, message", [
    (lambda: SoftmaxParams(0, 1, 1), TypeError,
     "softmax length must be an integer from 1 to 511, not 0"),
    (lambda: SoftmaxParams(512, 1, 1), TypeError,
     "softmax length must be an integer from 1 to 511, not 512"),
    (lambda: SoftmaxParams(8, 65536, 1), TypeError,
     "softmax multiplier must be an integer from 0 to 65535, not 65536"),
    (lambda: SoftmaxParams(8, 1, 64), TypeError,
     "softmax shift must be an integer from 0 to 63, not 64"),
    (lambda: SoftmaxParams(8, 1, 1, exp_bits=16), TypeError,
     "softmax exp_bits must be an integer from 8 to 15, not 16"),
    (lambda: SoftmaxParams.for_scale(-1.0, 8), TypeError,
     "softmax scale must be a positive finite number, not -1.0"),
    (lambda: SoftmaxParams.for_scale(True, 8), TypeError,
     "softmax scale must be a positive finite number, not True"),
    (lambda: GeluParams(8, 1, 1, exp_bits=10, sigmoid_bits=11), ValueError,
     "gelu sigmoid_bits 11 exceeds exp_bits 10"),
    (lambda: GeluParams(8, 1, 1, sigmoid_bits=1), TypeError,
     "gelu sigmoid_bits must be an integer from 2 to 15, not 1"),
    (lambda: GeluParams.for_scale(float("nan"), 8), TypeError,
     "gelu scale must be a positive finite number, not nan"),
    (lambda: LayerNormParams(8, (1, 2), (0,), 0), ValueError,
     "layernorm gain has 2 channels but offset has 1"),
    (lambda: LayerNormParams(2, (1, 2, 3), (0, 0, 0), 0), ValueError,
     "layernorm rows of 3 channels exceed the unit's length 2"),
    (lambda: LayerNormParams(8, (1, 32768), (0, 0), 0), TypeError,
     "layernorm gain[1] must be an integer from -32767 to 32767, not 32768"),
    (lambda: LayerNormParams(8, (), (), 0), TypeError,
     "layernorm gain must be a non-empty tuple of integers, not ()"),
    (lambda: LayerNormParams(8, (1,), (1 << 31,), 0), TypeError,
     "layernorm offset[0] must be an integer from -2147483648 to 2147483647, not 2147483648"),
    (lambda: LayerNormParams(8, (1,), (0,), 0, input_bits=25), TypeError,
     "layernorm input_bits must be an integer from 2 to 24, not 25"),
    (lambda: LayerNormParams(8, (1,), (0,), 0, eps_term=1 << 12, input_bits=4), ValueError,
     "layernorm eps_term 4096 does not fit below 2**10 (input_bits 4, length 8)"),
    (lambda: LayerNormParams.for_affine([1.0], [0.0], 1e-3, 0.02, 4, eps=-1.0), TypeError,
     "layernorm eps must be a number from 0 to 1, not -1.0"),
])
def test_parameters_are_validated(build, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        build()


@pytest.mark.parametrize("call, error, message", [
    (lambda: softmax(torch.zeros(2, 33, dtype=torch.int32), SoftmaxParams(32, 1, 1)),
     ValueError, "softmax rows of 33 elements exceed the unit's length 32"),
    (lambda: softmax(torch.zeros(2, 3), SoftmaxParams(32, 1, 1)), TypeError,
     "softmax input must be an integer tensor, not a torch.float32 tensor"),
    (lambda: softmax(torch.zeros(2, 0, dtype=torch.int32), SoftmaxParams(32, 1, 1)),
     TypeError, ("softmax input must have rows of at least one element on its last axis, "
                 "not shape (2, 0)")),
    (lambda: softmax(torch.tensor([1 << 31]), SoftmaxParams(32, 1, 1)), ValueError,
     ("softmax input values must lie in [-2147483648, 2147483647], not "
      "[2147483648, 2147483648]")),
    (lambda: gelu(torch.tensor([0, 128]), GeluParams(32, 1, 1)), ValueError,
     "gelu input values must lie in [-128, 127], not [0, 128]"),
    (lambda: gelu([1, 2], GeluParams(32, 1, 1)), TypeError,
     "gelu input must be an integer tensor, not [1, 2]"),
    (lambda: layernorm(torch.zeros(2, 3, dtype=torch.int16), LayerNormParams(8, (1, 1), (0, 0),
                                                                            0)),
     ValueError, ("layernorm rows of 3 elements do not match the 2 channels of gain and "
                  "offset")),
    (lambda: layernorm(torch.zeros(2, 2, dtype=torch.int16), "params"), TypeError,
     "layernorm params must be LayerNormParams, not 'params'"),
    (lambda: gelu(torch.zeros(3, dtype=torch.int8), GeluParams(8, 1, 1), hook=3), TypeError,
     "gelu hook must be callable or None, not 3"),
    (lambda: gelu(torch.zeros(3, dtype=torch.int8), GeluParams(8, 1, 1),
                  hook=lambda stage, values: values.double()), TypeError,
     ("gelu hook must return an integer tensor of shape (3,) for stage 'input', not a "
      "torch.float64 tensor")),
])
def test_inputs_and_hooks_are_validated(call, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


@pytest.mark.parametrize("unit, params, codes, stages", [
    (softmax, SoftmaxParams(8, 1, 1), torch.zeros(2, 4, dtype=torch.int32), SOFTMAX_STAGES),
    (gelu, GeluParams(8, 1, 1), torch.zeros(2, 4, dtype=torch.int8), GELU_STAGES),
    (layernorm, LayerNormParams(8, (1,) * 4, (0,) * 4, 0), torch.zeros(2, 4, dtype=torch.int16),
     LAYERNORM_STAGES),
])
def test_the_hook_sees_every_stage_in_order_as_registers_hold_them(unit, params, codes, stages):
    seen = []

    def hook(stage, values):
        seen.append((stage, values.dtype, tuple(values.shape)))
        return values

    trace = unit(codes, params, hook=hook)
    assert [stage for stage, _, _ in seen] == list(stages)
    assert all(dtype == torch.int64 for _, dtype, _ in seen)
    assert [shape for _, _, shape in seen] == [tuple(getattr(trace, stage).shape)
                                               for stage in stages]
    assert trace.output.dtype == torch.int8
    assert set(params.registers) == set(stages)


def test_a_hook_cannot_exceed_the_register():
    params = SoftmaxParams.for_scale(1e-4, 8)
    row = torch.tensor([0, 1000, -1000])
    trace = softmax(row, params, hook=replace("sum", lambda s: s + (1 << (15 + 4))))
    assert trace.sum.tolist() == softmax(row, params).sum.tolist()
