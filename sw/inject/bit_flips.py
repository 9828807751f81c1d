"""Sampling and applying independent single-bit flips, vectorised over images and faults.

Each bit of a region flips independently with probability ``bit_error_rate``, so the number
of flips in an image's region of ``n`` bits is Binomial(n, bit_error_rate), with mean
``bit_error_rate * n`` (the paper's "BER x elements x bit width"). Positions are then drawn
uniformly and independently; two flips landing on the same bit cancel, as two upsets of
one flip-flop would. Everything draws from one ``torch.Generator``, so a seed fixes it all.

The flips of one draw are held in memory at once, about :data:`BYTES_PER_FLIP` bytes each
while they are drawn and combined. A draw of more than :data:`MAX_FLIPS` (about 1 GiB) is
refused with :class:`TooManyFlips`, before its positions are drawn; callers that know the
sizes of their regions check a rate before any work with :func:`check_flip_budget`.
"""

import math
from typing import NamedTuple

import torch

from sw.twin.gemm import to_signed

__all__ = ["Flips", "MAX_FLIPS", "BYTES_PER_FLIP", "TooManyFlips", "check_flip_budget",
           "sample_flips", "combine_flips", "flip_bits", "flip_register_bits"]

#: Most flips one draw may hold (about 1 GiB at :data:`BYTES_PER_FLIP`).
MAX_FLIPS = 1 << 23
#: Peak bytes per flip while a draw is made and combined: its int64 image, coordinates, bit
#: and element indices, and the sort inside ``torch.unique``.
BYTES_PER_FLIP = 128


class TooManyFlips(ValueError):
    """A bit error rate whose flips, drawn at once, would not fit in :data:`MAX_FLIPS`."""


def check_flip_budget(bit_error_rate, regions, bits, flips=None):
    """Raise :class:`TooManyFlips` unless one draw over ``regions`` regions of ``bits`` bits
    fits in :data:`MAX_FLIPS`.

    ``flips`` is the number actually drawn; without it the check comes before the draw and
    takes the mean plus six standard deviations, so that a rate it passes almost surely
    draws few enough. The message gives the mean and the memory it would need.
    """
    mean = bit_error_rate * regions * bits
    if flips is None:
        flips = mean + 6 * math.sqrt(mean)
    if flips > MAX_FLIPS:
        highest = (math.sqrt(MAX_FLIPS + 9) - 3) ** 2 / (regions * bits)
        raise TooManyFlips(
            f"bit error rate {bit_error_rate:g} draws about {mean:,.0f} flips at once "
            f"({regions} x {bits:,} bits), which would need about "
            f"{_gibibytes(mean)} of memory; at most {MAX_FLIPS:,} flips "
            f"({_gibibytes(MAX_FLIPS)}) are drawn at once, rates up to {highest:.2g} here")


def _gibibytes(flips):
    return f"{flips * BYTES_PER_FLIP / 2 ** 30:,.1f} GiB"


class Flips(NamedTuple):
    """Sampled flips: per-image counts (B,), and per flip its image, coordinates and bit."""
    counts: torch.Tensor
    image: torch.Tensor
    coordinates: tuple
    bit: torch.Tensor

    @property
    def total(self):
        """Number of flips over all images."""
        return int(self.image.numel())


def sample_flips(batch, shape, width, bit_error_rate, generator):
    """Independent flips in ``batch`` regions of ``shape`` elements of ``width`` bits each.

    ``coordinates`` holds one index tensor per axis of ``shape``.

    Raises
    ------
    TooManyFlips
        If more than :data:`MAX_FLIPS` flips are drawn (before their positions are).
    """
    bits = math.prod(shape) * width
    if bits == 0 or bit_error_rate == 0:
        counts = torch.zeros(batch, dtype=torch.int64)
    else:
        trials = torch.full((batch,), float(bits), dtype=torch.float64)
        counts = torch.binomial(trials, torch.full_like(trials, bit_error_rate),
                                generator=generator).to(torch.int64)
    total = int(counts.sum())
    check_flip_budget(bit_error_rate, batch, bits, flips=total)
    image = torch.repeat_interleave(torch.arange(batch), counts)
    position = torch.randint(0, max(bits, 1), (total,), generator=generator)
    bit = position % width
    position = position // width
    coordinates = []
    for size in reversed(shape):
        coordinates.append(position % size)
        position = position // size
    return Flips(counts, image, tuple(reversed(coordinates)), bit)


def combine_flips(element, bit, width):
    """Unique flipped ``element`` indices and their XOR masks (flips of one bit cancel in pairs)."""
    key, count = torch.unique(element * width + bit, return_counts=True)
    key = key[count % 2 == 1]
    unique, inverse = torch.unique(key // width, return_inverse=True)
    mask = torch.zeros(unique.numel(), dtype=torch.int64)
    mask.index_add_(0, inverse, torch.ones_like(key) << (key % width))
    return unique, mask


def flip_bits(values, element, bit):
    """A copy of ``values`` with bit ``bit[i]`` of flat element ``element[i]`` flipped.

    ``values`` may be int8, int32 or float32 (whose IEEE 754 bit pattern is flipped).
    """
    if values.dtype == torch.float32:
        return flip_bits(values.view(torch.int32), element, bit).view(torch.float32)
    width = torch.iinfo(values.dtype).bits
    flat = values.reshape(-1).clone()
    if element.numel() == 0:
        return flat.view(values.shape)
    unique, mask = combine_flips(element, bit, width)
    pattern = flat[unique].to(torch.int64) & ((1 << width) - 1)
    flat[unique] = to_signed(pattern ^ mask, width).to(values.dtype)
    return flat.view(values.shape)


def flip_register_bits(values, element, bit, bits, signed):
    """A copy of int64 register ``values`` with bit ``bit[i]`` of flat element
    ``element[i]`` flipped, as a ``bits``-wide register (signed: two's complement) holds it.

    For the integer nonlinear units' intermediates, whose registers are narrower than their
    int64 tensors (``bits`` up to 62); ``values`` must already fit the register.
    """
    flat = values.reshape(-1).clone()
    if element.numel() == 0:
        return flat.view(values.shape)
    unique, mask = combine_flips(element, bit, bits)
    pattern = (flat[unique] & ((1 << bits) - 1)) ^ mask
    flat[unique] = to_signed(pattern, bits) if signed else pattern
    return flat.view(values.shape)
