"""Post-training int8 quantization: the numbers that let a float network run on int8 GEMMs.

Scheme (symmetric everywhere, zero point 0, codes -127 .. 127):

- weights: one scale per output channel, ``max |w| / 127`` over the channel;
- activations: one scale per tensor, ``max |x| / 127`` over calibration images (the
  training images), including the attention probabilities (their maximum is about 1 in a
  trained model, but about 1/tokens in an untrained one, where a fixed 1/127 would round
  them all to zero);
- a GEMM runs int8 x int8 -> int32 on the accelerator model; its result is dequantized by
  ``scale_a * scale_w`` and the bias is added in float.

Max-abs calibration is chosen over percentiles because these networks are small and their
activations have no outliers worth clipping; it also keeps the calibration deterministic
and free of parameters. :func:`sw.models.quantize.quantize` turns a trained float model into
its int8 twin.
"""

from dataclasses import dataclass

import torch

__all__ = ["QMAX", "QuantizedLinear", "quantize_weight", "quantize_activation",
           "activation_scale", "code_limit"]

#: Largest int8 code used; -128 is left out so the range is symmetric.
QMAX = 127


def quantize_weight(weight):
    """Per-output-channel int8 codes of a (N, K) weight, as (K, N) codes and (N,) scales."""
    weight = weight.detach().reshape(weight.shape[0], -1).float()
    scale = weight.abs().amax(dim=1) / QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(weight / scale[:, None]), -QMAX, QMAX).to(torch.int8)
    return codes.t().contiguous(), scale


def code_limit(bits):
    """Largest symmetric code of ``bits``-bit signed codes: ``2**(bits - 1) - 1`` (127 for 8)."""
    return (1 << (bits - 1)) - 1


def activation_scale(max_abs, bits=8):
    """Per-tensor scale for values up to ``max_abs`` in magnitude (1.0 for an all-zero
    tensor): ``max_abs / 127`` for int8 codes, ``max_abs / (2**(bits - 1) - 1)`` for wider
    ones (the integer LayerNorm's input)."""
    return max_abs / code_limit(bits) if max_abs > 0 else 1.0


def quantize_activation(values, scale, bits=8):
    """int8 codes of float ``values``: round to nearest, saturate to +-127, NaN to 0.

    A fault upstream can make values infinite or NaN; the quantizer saturates the former
    and zeroes the latter, so what reaches the accelerator is always a valid int8 code.
    With ``bits`` other than 8 (up to 24), int32 codes saturated to
    ``+-(2**(bits - 1) - 1)`` instead.
    """
    codes = torch.round(torch.nan_to_num(values / scale, nan=0.0))
    limit = code_limit(bits)
    return torch.clamp(codes, -limit, limit).to(torch.int8 if bits == 8 else torch.int32)


@dataclass
class QuantizedLinear:
    """A Linear (or im2col convolution) layer ready for the accelerator.

    Members
    -------
    weight : torch.Tensor
        int8 (K, N): the B operand of the GEMM.
    weight_scale : torch.Tensor
        float32 (N,), one scale per output channel.
    input_scale : float
        Per-tensor scale of the activations (the A operand).
    bias : torch.Tensor or None
        float32 (N,), added after dequantization.
    """
    weight: torch.Tensor
    weight_scale: torch.Tensor
    input_scale: float
    bias: torch.Tensor | None

    @classmethod
    def from_float(cls, weight, bias, input_max_abs):
        """Quantize a float (N, K...) weight for inputs calibrated up to ``input_max_abs``."""
        codes, scale = quantize_weight(weight)
        bias = None if bias is None else bias.detach().float().clone()
        return cls(codes, scale, activation_scale(input_max_abs), bias)

    def __call__(self, site, codes, datapath):
        """Float output of the layer for int8 input ``codes`` (B, ..., M, K)."""
        accumulators = datapath.gemm(site, codes, self.weight)
        output = accumulators.float() * (self.input_scale * self.weight_scale)
        return output if self.bias is None else output + self.bias

    def forward(self, site, values, datapath):
        """Quantize float ``values`` with the input scale, then apply the layer."""
        return self(site, quantize_activation(values, self.input_scale), datapath)
