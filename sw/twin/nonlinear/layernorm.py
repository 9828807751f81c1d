"""Bit-exact twin of the integer LayerNorm unit and of its checkers (docs/nonlinear.md).

Signed B-bit codes in, int8 codes of the next GEMM's input scale out: rounded mean by
division, exact bit-serial square root of the (normalized) sum of squares plus epsilon, a
normalized reciprocal, and the affine part folded with the requantization into a
per-channel gain and offset.
"""

import math
from dataclasses import dataclass

import torch

from hw.validation import check_int
from sw.twin.nonlinear.arithmetic import (SCALE_SHIFT_MAX, bit_length, check_scale, divide,
                                          isqrt)
from sw.twin.nonlinear.rows import RowFlags, Stages, check_rows

__all__ = ["LayerNormParams", "LayerNormTrace", "LayerNormFlags", "LAYERNORM_STAGES",
           "MAX_LAYERNORM_LENGTH", "GUARD_BITS", "GAIN_LIMIT", "OUTPUT_LIMIT", "layernorm",
           "check_layernorm"]

#: Longest row (the mean's divisor 2n and the root stay narrow).
MAX_LAYERNORM_LENGTH = 1023
#: Guard bits ``c`` of the normalized reciprocal.
GUARD_BITS = 2
#: Largest |G|: the per-channel gain is a signed 16-bit word.
GAIN_LIMIT = (1 << 15) - 1
#: Outputs saturate to +-OUTPUT_LIMIT, the project's symmetric int8 codes.
OUTPUT_LIMIT = 127
#: The intermediates, in the order the unit computes them.
LAYERNORM_STAGES = ("input", "total", "mean", "centred", "variance", "root", "reciprocal",
                    "normalized", "affine", "output")

_OFFSET_MIN, _OFFSET_MAX = -(1 << 31), (1 << 31) - 1


@dataclass(frozen=True)
class LayerNormParams:
    """The LayerNorm unit's generator parameters, CSR and per-channel memories.

    Parameters
    ----------
    length : int
        Longest row, 1 .. 1023.
    gain, offset : tuple of int
        One per channel (the row has ``n = len(gain)`` elements): ``G`` signed 16-bit
        (|G| <= 32767) and ``C`` signed 32-bit, the affine part and the output scale.
    shift : int
        ``W``, 0 .. 63: the output is ``(z * G + C) >> W``.
    eps_term : int
        ``ε = round(n * eps / S**2)`` for inputs of scale ``S``, added to the sum of squares
        before the square root; below ``2**(2B + L - 2)``.
    input_bits : int
        ``B``, 2 .. 24: width of the signed input codes.
    norm_bits : int
        ``Z``, 4 .. 16: fraction bits of the normalized value.

    Raises
    ------
    TypeError
        A parameter, or one gain or offset, is not an integer in its range.
    ValueError
        ``gain`` and ``offset`` differ in length or exceed ``length``; ``eps_term`` does not
        fit.
    """
    length: int
    gain: tuple
    offset: tuple
    shift: int
    eps_term: int = 0
    input_bits: int = 16
    norm_bits: int = 14

    def __post_init__(self):
        check_int("layernorm length", self.length, 1, MAX_LAYERNORM_LENGTH)
        check_int("layernorm shift", self.shift, 0, SCALE_SHIFT_MAX)
        check_int("layernorm input_bits", self.input_bits, 2, 24)
        check_int("layernorm norm_bits", self.norm_bits, 4, 16)
        for name, low, high in (("gain", -GAIN_LIMIT, GAIN_LIMIT),
                                ("offset", _OFFSET_MIN, _OFFSET_MAX)):
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or not values:
                raise TypeError(f"layernorm {name} must be a non-empty tuple of integers, "
                                f"not {values!r}")
            for index, value in enumerate(values):
                check_int(f"layernorm {name}[{index}]", value, low, high)
            object.__setattr__(self, name, tuple(values))
        if len(self.gain) != len(self.offset):
            raise ValueError(f"layernorm gain has {len(self.gain)} channels but offset has "
                             f"{len(self.offset)}")
        if len(self.gain) > self.length:
            raise ValueError(f"layernorm rows of {len(self.gain)} channels exceed the unit's "
                             f"length {self.length}")
        check_int("layernorm eps_term", self.eps_term, 0, (1 << 62) - 1)
        if self.eps_term >= self.eps_limit:
            raise ValueError(f"layernorm eps_term {self.eps_term} does not fit below "
                             f"2**{self.eps_limit.bit_length() - 1} (input_bits "
                             f"{self.input_bits}, length {self.length})")

    @classmethod
    def for_affine(cls, weight, bias, input_scale, output_scale, length, eps=1e-6,
                   input_bits=16, norm_bits=14):
        """Parameters for a LayerNorm of affine ``weight``, ``bias`` (float sequences or
        tensors) and epsilon ``eps``, on codes of ``input_scale``, whose output is quantized
        with ``output_scale``: the largest ``W`` for which every ``G`` and ``C`` fits."""
        check_int("layernorm norm_bits", norm_bits, 4, 16)
        input_scale = check_scale("layernorm input_scale", input_scale)
        output_scale = check_scale("layernorm output_scale", output_scale)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps < 1:
            raise TypeError(f"layernorm eps must be a number from 0 to 1, not {eps!r}")
        weight = [float(value) for value in weight]
        bias = [float(value) for value in bias]
        if len(weight) != len(bias):
            raise ValueError(f"layernorm weight has {len(weight)} channels but bias has "
                             f"{len(bias)}")
        root_n = math.sqrt(len(weight))
        eps_term = _round(len(weight) * eps / input_scale ** 2)
        for shift in range(SCALE_SHIFT_MAX, -1, -1):
            gain = [_round(w * root_n / output_scale * 2.0 ** (shift - norm_bits))
                    for w in weight]
            half = 1 << (shift - 1) if shift else 0
            offset = [_round(b / output_scale * 2.0 ** shift) + half for b in bias]
            if (all(abs(g) <= GAIN_LIMIT for g in gain)
                    and all(_OFFSET_MIN <= c <= _OFFSET_MAX for c in offset)):
                return cls(length, tuple(gain), tuple(offset), shift, eps_term, input_bits,
                           norm_bits)
        raise ValueError(f"layernorm weight and bias do not fit 16-bit gains and 32-bit "
                         f"offsets at output_scale {output_scale!r}")

    @property
    def channels(self):
        """``n``, the number of elements of every row."""
        return len(self.gain)

    @property
    def index_bits(self):
        """``L = bitlen(length)``."""
        return self.length.bit_length()

    @property
    def root_bits(self):
        """``H = B + ceil(L / 2)``, the width of the square root."""
        return self.input_bits + (self.index_bits + 1) // 2

    @property
    def eps_limit(self):
        """``eps_term`` stays below ``2**(2B + L - 2)``."""
        return 1 << (2 * self.input_bits + self.index_bits - 2)

    def radicand(self, variance):
        """``P << 2s`` and ``s`` for ``P = min(V + ε, 2**(2B + L) - 1)``: the even shift
        that brings ``P > 0`` to ``2B + L - 1`` or ``2B + L`` bits before its square root
        (``s = 0`` for ``P = 0``)."""
        width = 2 * self.input_bits + self.index_bits
        padded = (variance + self.eps_term).clamp(max=(1 << width) - 1)
        scale = torch.where(padded > 0, (width - bit_length(padded.clamp(min=1))) >> 1, 0)
        return padded << (2 * scale), scale

    @property
    def registers(self):
        """(bits, signed) of each stage's register."""
        b, z, index = self.input_bits, self.norm_bits, self.index_bits
        return {"input": (b, True), "total": (b + index, False), "mean": (b, True),
                "centred": (b + 1, True), "variance": (2 * b + index, False),
                "root": (self.root_bits, False), "reciprocal": (z + GUARD_BITS + 2, False),
                "normalized": (z + 2, True), "affine": (max(z + 16, 31) + 2, True),
                "output": (8, True)}


def _round(value):
    return math.floor(value + 0.5)


@dataclass(frozen=True)
class LayerNormTrace:
    """Output and intermediates of one call; row values keep a last axis of 1."""
    input: torch.Tensor
    total: torch.Tensor
    mean: torch.Tensor
    centred: torch.Tensor
    variance: torch.Tensor
    root: torch.Tensor
    reciprocal: torch.Tensor
    normalized: torch.Tensor
    affine: torch.Tensor
    output: torch.Tensor


@dataclass(frozen=True)
class LayerNormFlags(RowFlags):
    """Per-row checker flags of the LayerNorm unit (True: raised)."""
    mean: torch.Tensor
    variance: torch.Tensor
    root: torch.Tensor
    reciprocal: torch.Tensor
    normalized: torch.Tensor
    output: torch.Tensor


def layernorm(codes, params, hook=None):
    """The unit on signed ``codes`` (..., n), ``n = params.channels``: a
    :class:`LayerNormTrace`, output int8 codes.

    ``hook(stage, values)``, if given, sees each stage of :data:`LAYERNORM_STAGES` in order
    and returns the values the unit goes on with.
    """
    if not isinstance(params, LayerNormParams):
        raise TypeError(f"layernorm params must be LayerNormParams, not {params!r}")
    b, z = params.input_bits, params.norm_bits
    codes = check_rows("layernorm", codes, -(1 << (b - 1)), (1 << (b - 1)) - 1, params.length)
    n = codes.shape[-1]
    if n != params.channels:
        raise ValueError(f"layernorm rows of {n} elements do not match the {params.channels} "
                         f"channels of gain and offset")
    stage = Stages("layernorm", params.registers, hook)
    gain = torch.tensor(params.gain, dtype=torch.int64)
    offset = torch.tensor(params.offset, dtype=torch.int64)
    values = stage("input", codes)
    total = stage("total", (values + (1 << (b - 1))).sum(dim=-1, keepdim=True))
    mean = stage("mean", divide(2 * total + n, torch.full_like(total, 2 * n), b)
                 - (1 << (b - 1)))
    centred = stage("centred", values - mean)
    variance = stage("variance", (centred * centred).sum(dim=-1, keepdim=True))
    radicand, scale = params.radicand(variance)
    root = stage("root", isqrt(radicand))
    divisor = root.clamp(min=1)
    root_length = bit_length(divisor)
    reciprocal = stage("reciprocal", divide(torch.ones_like(divisor)
                                            << (z + GUARD_BITS + root_length),
                                            divisor, z + GUARD_BITS + 2))
    normalize = (root_length + GUARD_BITS - scale).clamp(min=0)
    normalized = stage("normalized", ((centred * reciprocal) >> normalize)
                       .clamp(-(1 << (z + 1)), (1 << (z + 1)) - 1))
    affine = stage("affine", normalized * gain + offset)
    output = stage("output", (affine >> params.shift).clamp(-OUTPUT_LIMIT, OUTPUT_LIMIT))
    return LayerNormTrace(values, total, mean, centred, variance, root, reciprocal,
                          normalized, affine, output.to(torch.int8))


def check_layernorm(trace, params):
    """The checkers on a (possibly corrupted) :class:`LayerNormTrace`:
    :class:`LayerNormFlags`."""
    b, z = params.input_bits, params.norm_bits
    n = trace.input.shape[-1]
    centred = trace.centred
    centred_sum = 2 * centred.sum(dim=-1)
    mean = ~((centred_sum >= -n) & (centred_sum < n))
    variance = trace.variance[..., 0]
    peak = centred.abs().amax(dim=-1)
    square = peak * peak
    spread = ~((peak < 1 << b) & (square <= variance) & (variance <= n * square))
    radicand, scale = params.radicand(variance)
    root = trace.root[..., 0]
    exact_root = ~((root * root <= radicand) & (radicand <= root * root + 2 * root))
    divisor = root.clamp(min=1)
    dividend = torch.ones_like(divisor) << (z + GUARD_BITS + bit_length(divisor))
    reciprocal = trace.reciprocal[..., 0]
    quotient = ~((reciprocal * divisor <= dividend) & (dividend < (reciprocal + 1) * divisor))
    normalized = ~(((centred.abs() << scale[..., None]) <= trace.root).all(dim=-1)
                   & (trace.normalized.abs() <= 1 << z).all(dim=-1))
    gain = torch.tensor(params.gain, dtype=torch.int64)
    offset = torch.tensor(params.offset, dtype=torch.int64)
    reach = gain.abs() << z
    low = ((offset - reach) >> params.shift).clamp(-OUTPUT_LIMIT, OUTPUT_LIMIT)
    high = ((offset + reach) >> params.shift).clamp(-OUTPUT_LIMIT, OUTPUT_LIMIT)
    centre = (offset >> params.shift).clamp(-OUTPUT_LIMIT, OUTPUT_LIMIT)
    normalized_value = trace.normalized
    upper_side = (normalized_value < 0) == (gain < 0)
    output = trace.output.to(torch.int64)
    in_range = ~torch.where(upper_side, (output >= centre) & (output <= high),
                            (output >= low) & (output <= centre)).all(dim=-1)
    return LayerNormFlags(mean, spread, exact_root, quotient, normalized, in_range)
