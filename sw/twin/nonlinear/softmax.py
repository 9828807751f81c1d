"""Bit-exact twin of the integer softmax unit and of its checkers (docs/nonlinear.md).

int32 attention scores in, int8 probabilities of scale 1/127 out: shift exponential of the
scaled distance to the row maximum, one division per row, rounded products.
"""

from dataclasses import dataclass

import torch

from hw.validation import check_int
from sw.twin.nonlinear.arithmetic import (LOG2_E, SCALE_MULTIPLIER_MAX, SCALE_SHIFT_MAX,
                                          check_scale, divide, exp2neg, exponent_limit,
                                          scale_multiplier)
from sw.twin.nonlinear.rows import RowFlags, Stages, check_rows

__all__ = ["SoftmaxParams", "SoftmaxTrace", "SoftmaxFlags", "SOFTMAX_STAGES", "ONE",
           "MAX_SOFTMAX_LENGTH", "softmax", "check_softmax"]

#: The output code of probability 1: outputs have scale 1 / ONE.
ONE = 127
#: Longest row: the reciprocal (7 + L bits) must fit the multiplier's 16-bit port.
MAX_SOFTMAX_LENGTH = 511
#: The intermediates, in the order the unit computes them.
SOFTMAX_STAGES = ("input", "maximum", "difference", "exponent", "exponential", "sum",
                  "reciprocal", "output")


@dataclass(frozen=True)
class SoftmaxParams:
    """The softmax unit's generator parameters (``length``, ``exp_bits``) and CSRs.

    Parameters
    ----------
    length : int
        Longest row, 1 .. 511.
    multiplier, shift : int
        Scale CSRs ``M`` (0 .. 65535) and ``sh`` (0 .. 63): ``(d * M) >> sh`` is the
        base-2 exponent of a score distance ``d``, with ``exp_bits`` fraction bits.
    exp_bits : int
        ``E``, 8 .. 15: fraction bits of the exponent and the exponential.

    Raises
    ------
    TypeError
        A parameter is not an integer in its range.
    """
    length: int
    multiplier: int
    shift: int
    exp_bits: int = 15

    def __post_init__(self):
        check_int("softmax length", self.length, 1, MAX_SOFTMAX_LENGTH)
        check_int("softmax multiplier", self.multiplier, 0, SCALE_MULTIPLIER_MAX)
        check_int("softmax shift", self.shift, 0, SCALE_SHIFT_MAX)
        check_int("softmax exp_bits", self.exp_bits, 8, 15)

    @classmethod
    def for_scale(cls, scale, length, exp_bits=15):
        """Parameters for scores of real value ``x * scale``."""
        check_int("softmax exp_bits", exp_bits, 8, 15)
        scale = check_scale("softmax scale", scale)
        multiplier, shift = scale_multiplier(scale * LOG2_E * 2.0 ** exp_bits)
        return cls(length, multiplier, shift, exp_bits)

    @property
    def index_bits(self):
        """``L = bitlen(length)``."""
        return self.length.bit_length()

    @property
    def precision(self):
        """``P = E + L``: the reciprocal's dividend is ``ONE << P``."""
        return self.exp_bits + self.index_bits

    @property
    def registers(self):
        """(bits, signed) of each stage's register."""
        e, index = self.exp_bits, self.index_bits
        return {"input": (32, True), "maximum": (32, True), "difference": (33, True),
                "exponent": (e + 5, False), "exponential": (e + 1, False),
                "sum": (e + index, False), "reciprocal": (7 + index, False),
                "output": (8, True)}


@dataclass(frozen=True)
class SoftmaxTrace:
    """Output and intermediates of one call; row values keep a last axis of 1."""
    input: torch.Tensor
    maximum: torch.Tensor
    difference: torch.Tensor
    exponent: torch.Tensor
    exponential: torch.Tensor
    sum: torch.Tensor
    reciprocal: torch.Tensor
    output: torch.Tensor


@dataclass(frozen=True)
class SoftmaxFlags(RowFlags):
    """Per-row checker flags of the softmax unit (True: raised)."""
    maximum: torch.Tensor
    exponential: torch.Tensor
    sum: torch.Tensor
    reciprocal: torch.Tensor
    total: torch.Tensor
    peak: torch.Tensor


def softmax(scores, params, hook=None):
    """The unit on int32 ``scores`` (..., n): a :class:`SoftmaxTrace`, output int8 codes.

    ``hook(stage, values)``, if given, sees each stage of :data:`SOFTMAX_STAGES` in order
    and returns the values the unit goes on with.
    """
    if not isinstance(params, SoftmaxParams):
        raise TypeError(f"softmax params must be SoftmaxParams, not {params!r}")
    scores = check_rows("softmax", scores, -(1 << 31), (1 << 31) - 1, params.length)
    stage = Stages("softmax", params.registers, hook)
    e, precision = params.exp_bits, params.precision
    values = stage("input", scores)
    maximum = stage("maximum", values.amax(dim=-1, keepdim=True))
    difference = stage("difference", maximum - values)
    exponent = stage("exponent", ((difference * params.multiplier) >> params.shift)
                     .clamp(0, exponent_limit(e)))
    exponential = stage("exponential", exp2neg(exponent, e))
    total = stage("sum", exponential.sum(dim=-1, keepdim=True))
    reciprocal = stage("reciprocal", divide(torch.full_like(total, ONE << precision), total,
                                            7 + params.index_bits))
    output = stage("output", ((exponential * reciprocal + (1 << (precision - 1)))
                              >> precision).clamp(max=ONE))
    return SoftmaxTrace(values, maximum, difference, exponent, exponential, total,
                        reciprocal, output.to(torch.int8))


def check_softmax(trace, params):
    """The checkers on a (possibly corrupted) :class:`SoftmaxTrace`: :class:`SoftmaxFlags`."""
    e, index, precision = params.exp_bits, params.index_bits, params.precision
    n = trace.input.shape[-1]
    difference = trace.difference
    maximum = ~((difference >= 0).all(dim=-1) & (difference == 0).any(dim=-1))
    integer = (trace.exponent >> e).clamp(max=62)
    exponential = ~((trace.exponent <= exponent_limit(e))
                    & (trace.exponential >= ((1 << (e - 1)) >> integer))
                    & (trace.exponential <= ((1 << e) >> integer))).all(dim=-1)
    total = trace.sum[..., 0]
    in_range = ~((total >= (1 << e)) & (total <= (n << e)))
    reciprocal = trace.reciprocal[..., 0]
    dividend = ONE << precision
    quotient = ~((reciprocal * total <= dividend) & (dividend < (reciprocal + 1) * total))
    output = trace.output.to(torch.int64)
    output_sum = output.sum(dim=-1)
    output_total = ~((output_sum >= ONE - ((n + 1) >> 1)) & (output_sum <= ONE + (n >> 1)))
    peak = output.amax(dim=-1) != (reciprocal + (1 << (index - 1))) >> index
    return SoftmaxFlags(maximum, exponential, in_range, quotient, output_total, peak)
