"""The integer pieces the nonlinear units share: registers, divider, square root, exponential.

Each function is the vectorised form of a definition in docs/nonlinear.md ("Notation"),
on int64 tensors, so that the three units are written with the same operations as the
hardware.
"""

import math

import torch

__all__ = ["SCALE_MULTIPLIER_MAX", "SCALE_SHIFT_MAX", "LOG2_E", "fit", "divide", "isqrt",
           "bit_length", "exponent_limit", "exp2neg", "check_scale", "scale_multiplier"]

#: Largest scale multiplier M (a 16-bit CSR) and shift sh (a 6-bit CSR).
SCALE_MULTIPLIER_MAX = (1 << 16) - 1
SCALE_SHIFT_MAX = 63
LOG2_E = 1.0 / math.log(2.0)


def fit(values, bits, signed):
    """``values`` as a ``bits``-wide register holds them: modulo 2**bits, two's complement."""
    if signed:
        half = 1 << (bits - 1)
        return ((values + half) & ((1 << bits) - 1)) - half
    return values & ((1 << bits) - 1)


def divide(dividend, divisor, quotient_bits):
    """The saturating ``quotient_bits``-bit divider: ``floor(dividend / divisor)``, or
    ``2**quotient_bits - 1`` when the divisor is 0 or the quotient does not fit."""
    full = (1 << quotient_bits) - 1
    overflow = (divisor == 0) | ((dividend >> quotient_bits) >= divisor)
    return torch.where(overflow, full, dividend // torch.where(divisor == 0, 1, divisor))


def isqrt(values):
    """``floor(sqrt(v))`` of non-negative int64 values below 2**62, exactly."""
    root = torch.sqrt(values.to(torch.float64)).floor().to(torch.int64)
    for _ in range(2):
        root = torch.where(root * root > values, root - 1, root)
        root = torch.where((root + 1) * (root + 1) <= values, root + 1, root)
    return root


def bit_length(values):
    """Number of bits of each positive int64 value below 2**53 (``bit_length(1) == 1``)."""
    return torch.frexp(values.to(torch.float64)).exponent.to(torch.int64)


def exponent_limit(exp_bits):
    """``U_MAX = (E + 1) << E``: the exponent where the exponential reaches 0."""
    return (exp_bits + 1) << exp_bits


def exp2neg(exponent, exp_bits):
    """The shift exponential ``~ 2**E * 2**(-u / 2**E)`` of non-negative exponents ``u``.

    Two-segment linear mantissa of shifts and adds, then a shift by the integer part.
    """
    e = exp_bits
    integer = exponent >> e
    fraction = exponent & ((1 << e) - 1)
    half = 1 << (e - 1)
    low = (1 << e) - (fraction >> 1) - (fraction >> 4) - (fraction >> 5) + (fraction >> 7)
    upper = fraction - half
    mantissa_half = (1 << e) - (1 << (e - 2)) - (1 << (e - 5)) - (1 << (e - 6)) + (1 << (e - 8))
    high = mantissa_half - (upper >> 2) - (upper >> 3) - (upper >> 5) - (upper >> 7)
    mantissa = torch.where(fraction < half, low, high)
    return mantissa >> integer.clamp(max=62)


def check_scale(name, value):
    """Return ``value`` as a float if it is a positive finite number, else ``TypeError``."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise TypeError(f"{name} must be a positive finite number, not {value!r}")
    return float(value)


def scale_multiplier(factor):
    """CSR pair ``(M, sh)`` with ``M / 2**sh ~ factor > 0``: the largest ``sh <= 63`` for
    which ``M = round(factor * 2**sh)`` fits 16 bits."""
    for shift in range(SCALE_SHIFT_MAX, -1, -1):
        multiplier = math.floor(factor * 2.0 ** shift + 0.5)
        if multiplier <= SCALE_MULTIPLIER_MAX:
            return multiplier, shift
    return SCALE_MULTIPLIER_MAX, 0
