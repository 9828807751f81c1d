"""Bit-exact twin of the integer GELU unit and of its checkers (docs/nonlinear.md).

int8 codes in, int8 codes of the same scale out: ``x * sigmoid(1.702 x)``, the sigmoid of
``-|x|`` as ``e / (1 + e)`` with the shift exponential and one division per element.
"""

from dataclasses import dataclass

import torch

from hw.validation import check_int
from sw.twin.nonlinear.arithmetic import (LOG2_E, SCALE_MULTIPLIER_MAX, SCALE_SHIFT_MAX,
                                          check_scale, divide, exp2neg, exponent_limit,
                                          scale_multiplier)
from sw.twin.nonlinear.rows import RowFlags, Stages, check_rows

__all__ = ["GeluParams", "GeluTrace", "GeluFlags", "GELU_STAGES", "SIGMOID_SLOPE",
           "MAX_GELU_LENGTH", "OUTPUT_LIMIT", "gelu", "check_gelu"]

#: GELU(x) ~ x * sigmoid(SIGMOID_SLOPE * x).
SIGMOID_SLOPE = 1.702
#: Longest row the unit buffers (GELU itself is elementwise).
MAX_GELU_LENGTH = 65535
#: Outputs saturate to +-OUTPUT_LIMIT, the project's symmetric int8 codes.
OUTPUT_LIMIT = 127
#: The intermediates, in the order the unit computes them.
GELU_STAGES = ("input", "exponent", "exponential", "quotient", "sigmoid", "output")


@dataclass(frozen=True)
class GeluParams:
    """The GELU unit's generator parameters (``length``, ``exp_bits``, ``sigmoid_bits``)
    and CSRs.

    Parameters
    ----------
    length : int
        Longest row, 1 .. 65535.
    multiplier, shift : int
        Scale CSRs ``M`` (0 .. 65535) and ``sh`` (0 .. 63): ``(|x| * M) >> sh`` is the
        base-2 exponent of ``exp(-1.702 |x| S)`` with ``exp_bits`` fraction bits.
    exp_bits : int
        ``E``, 8 .. 15.
    sigmoid_bits : int
        ``K``, 2 .. 15: fraction bits of the sigmoid factor, at most ``exp_bits``.

    Raises
    ------
    TypeError
        A parameter is not an integer in its range.
    ValueError
        ``sigmoid_bits`` exceeds ``exp_bits``.
    """
    length: int
    multiplier: int
    shift: int
    exp_bits: int = 15
    sigmoid_bits: int = 8

    def __post_init__(self):
        check_int("gelu length", self.length, 1, MAX_GELU_LENGTH)
        check_int("gelu multiplier", self.multiplier, 0, SCALE_MULTIPLIER_MAX)
        check_int("gelu shift", self.shift, 0, SCALE_SHIFT_MAX)
        check_int("gelu exp_bits", self.exp_bits, 8, 15)
        check_int("gelu sigmoid_bits", self.sigmoid_bits, 2, 15)
        if self.sigmoid_bits > self.exp_bits:
            raise ValueError(f"gelu sigmoid_bits {self.sigmoid_bits} exceeds exp_bits "
                             f"{self.exp_bits}")

    @classmethod
    def for_scale(cls, scale, length, exp_bits=15, sigmoid_bits=8):
        """Parameters for int8 codes of real value ``x * scale``."""
        check_int("gelu exp_bits", exp_bits, 8, 15)
        scale = check_scale("gelu scale", scale)
        multiplier, shift = scale_multiplier(SIGMOID_SLOPE * scale * LOG2_E * 2.0 ** exp_bits)
        return cls(length, multiplier, shift, exp_bits, sigmoid_bits)

    @property
    def registers(self):
        """(bits, signed) of each stage's register."""
        e, k = self.exp_bits, self.sigmoid_bits
        return {"input": (8, True), "exponent": (e + 5, False), "exponential": (e + 1, False),
                "quotient": (k, False), "sigmoid": (k + 1, False), "output": (8, True)}


@dataclass(frozen=True)
class GeluTrace:
    """Output and intermediates of one call, all of the input's shape."""
    input: torch.Tensor
    exponent: torch.Tensor
    exponential: torch.Tensor
    quotient: torch.Tensor
    sigmoid: torch.Tensor
    output: torch.Tensor


@dataclass(frozen=True)
class GeluFlags(RowFlags):
    """Per-row checker flags of the GELU unit (True: some element failed the check)."""
    exponential: torch.Tensor
    quotient: torch.Tensor
    sigmoid: torch.Tensor
    output: torch.Tensor


def gelu(codes, params, hook=None):
    """The unit on int8 ``codes`` (..., n): a :class:`GeluTrace`, output int8 codes.

    ``hook(stage, values)``, if given, sees each stage of :data:`GELU_STAGES` in order and
    returns the values the unit goes on with.
    """
    if not isinstance(params, GeluParams):
        raise TypeError(f"gelu params must be GeluParams, not {params!r}")
    codes = check_rows("gelu", codes, -128, 127, params.length)
    stage = Stages("gelu", params.registers, hook)
    e, k = params.exp_bits, params.sigmoid_bits
    values = stage("input", codes)
    exponent = stage("exponent", ((values.abs() * params.multiplier) >> params.shift)
                     .clamp(max=exponent_limit(e)))
    exponential = stage("exponential", exp2neg(exponent, e))
    quotient = stage("quotient", divide(exponential << k, (1 << e) + exponential, k))
    sigmoid = stage("sigmoid", torch.where(values >= 0, (1 << k) - quotient, quotient))
    output = stage("output", ((values * sigmoid + (1 << (k - 1))) >> k)
                   .clamp(-OUTPUT_LIMIT, OUTPUT_LIMIT))
    return GeluTrace(values, exponent, exponential, quotient, sigmoid, output.to(torch.int8))


def check_gelu(trace, params):
    """The checkers on a (possibly corrupted) :class:`GeluTrace`: :class:`GeluFlags`."""
    e, k = params.exp_bits, params.sigmoid_bits
    values = trace.input
    integer = (trace.exponent >> e).clamp(max=62)
    exponential = ~((trace.exponent <= exponent_limit(e))
                    & (trace.exponential >= ((1 << (e - 1)) >> integer))
                    & (trace.exponential <= ((1 << e) >> integer)))
    quotient = ~((trace.quotient >= trace.exponential >> (e + 1 - k))
                 & (trace.quotient <= trace.exponential >> (e - k)))
    half = 1 << (k - 1)
    sigmoid = ~torch.where(values >= 0, (trace.sigmoid >= half) & (trace.sigmoid <= 1 << k),
                           trace.sigmoid <= half)
    output = trace.output.to(torch.int64)
    output = ~((output >= (values + 1) >> 1) & (output <= values.clamp(min=0)))
    return GeluFlags(exponential.any(dim=-1), quotient.any(dim=-1), sigmoid.any(dim=-1),
                     output.any(dim=-1))
