"""Bit-exact PyTorch model of the GEMM accelerator's arithmetic.

The hardware computes C = A x B for int8 A (M x K) and B (K x N) with int32 accumulators
that wrap around (arithmetic modulo 2**32). It cuts the output into ``rows x cols`` tiles
visited row-major over (M, N), pads edge tiles with zeros and drops the padding from the
result. Each tile accumulates over the whole K.

Two paths give the same integers: :func:`gemm_int8_tiled` follows the hardware tile by
tile (the reference the RTL is checked against) and :func:`gemm_int8` multiplies whole
tensors at once in floating point, exact because every partial sum is an integer below the
mantissa's limit, then wraps to int32. The ViT runs every layer through the fast path.
"""

from dataclasses import dataclass

import torch

from sw.parameter_checks import check_positive_integer

__all__ = [
    "Tile", "tile_origins", "iter_tiles", "tile_product", "wrap_int32", "to_signed",
    "gemm_int8", "gemm_int8_tiled", "random_operands",
]

#: Largest |a * b| for int8 operands: (-128) * (-128).
_MAX_PRODUCT = 128 * 128
#: K up to which every partial sum is below 2**24 and float32 accumulation is exact.
FLOAT32_EXACT_K = (1 << 24) // _MAX_PRODUCT


@dataclass(frozen=True)
class Tile:
    """One output tile as the hardware sees it.

    ``a`` is ``rows x K`` and ``b`` is ``K x cols``, zero-padded at the edges of the GEMM;
    only the top-left ``valid_rows x valid_cols`` of the tile's result belong to C, at
    ``C[row0:row0 + valid_rows, col0:col0 + valid_cols]``.
    """
    index: int
    row0: int
    col0: int
    valid_rows: int
    valid_cols: int
    a: torch.Tensor
    b: torch.Tensor


def tile_origins(m, n, rows, cols):
    """Top-left corners (row0, col0) of the output tiles, in the hardware's order."""
    for name, value in (("m", m), ("n", n), ("rows", rows), ("cols", cols)):
        check_positive_integer(name, value)
    return [(r, c) for r in range(0, m, rows) for c in range(0, n, cols)]


def _check_operands(a, b):
    for name, operand in (("a", a), ("b", b)):
        if not isinstance(operand, torch.Tensor) or operand.dtype != torch.int8:
            found = operand.dtype if isinstance(operand, torch.Tensor) else type(operand).__name__
            raise TypeError(f"Operand {name} must be a torch.int8 tensor, not {found}")
        if operand.dim() < 2:
            raise TypeError(f"Operand {name} must have at least 2 dimensions, "
                            f"not shape {tuple(operand.shape)}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"Inner dimensions differ: a is {tuple(a.shape)}, b is {tuple(b.shape)}")


def iter_tiles(a, b, rows, cols):
    """Yield the :class:`Tile` s of the 2-D GEMM ``a @ b`` in the order the hardware runs them."""
    _check_operands(a, b)
    if a.dim() != 2 or b.dim() != 2:
        raise TypeError(f"Tiling takes 2-D operands, not shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    m, k = a.shape
    n = b.shape[1]
    for index, (row0, col0) in enumerate(tile_origins(m, n, rows, cols)):
        valid_rows = min(rows, m - row0)
        valid_cols = min(cols, n - col0)
        a_tile = torch.zeros((rows, k), dtype=torch.int8)
        b_tile = torch.zeros((k, cols), dtype=torch.int8)
        a_tile[:valid_rows] = a[row0:row0 + valid_rows]
        b_tile[:, :valid_cols] = b[:, col0:col0 + valid_cols]
        yield Tile(index, row0, col0, valid_rows, valid_cols, a_tile, b_tile)


def to_signed(pattern, width):
    """Two's-complement value of a ``width``-bit pattern held in int64."""
    return pattern - (((pattern >> (width - 1)) & 1) << width)


def wrap_int32(values):
    """Reduce an integer tensor modulo 2**32 into the int32 range (two's complement)."""
    values = values.to(torch.int64)
    return (((values & 0xFFFFFFFF) ^ (1 << 31)) - (1 << 31)).to(torch.int32)


def tile_product(a_tile, b_tile):
    """The int32 tile the array accumulates: products summed in int64, wrapped to 32 bits."""
    return wrap_int32(a_tile.to(torch.int64) @ b_tile.to(torch.int64))


def gemm_int8_tiled(a, b, rows, cols):
    """C = A x B computed tile by tile exactly as the hardware does (slow; the reference)."""
    _check_operands(a, b)
    result = torch.empty((a.shape[0], b.shape[1]), dtype=torch.int32)
    for tile in iter_tiles(a, b, rows, cols):
        product = tile_product(tile.a, tile.b)
        result[tile.row0:tile.row0 + tile.valid_rows, tile.col0:tile.col0 + tile.valid_cols] = \
            product[:tile.valid_rows, :tile.valid_cols]
    return result


def gemm_int8(a, b):
    """C = A x B with int32 wrap-around, for int8 tensors with any leading batch dimensions.

    Tiling does not change the integers (each output element is one dot product over the
    whole K, and zero padding adds nothing), so this path multiplies whole tensors: in
    float32 when every partial sum stays below 2**24 (K <= 1024), else in float64
    (exact while partial sums stay below 2**53, K below 5e11).
    """
    _check_operands(a, b)
    if a.shape[-1] <= FLOAT32_EXACT_K:
        # Every sum stays below 2**24 in magnitude: exact in float32, never wraps in int32.
        return (a.to(torch.float32) @ b.to(torch.float32)).to(torch.int32)
    return wrap_int32((a.to(torch.float64) @ b.to(torch.float64)).to(torch.int64))


def random_operands(m, k, n, seed, extreme_fraction=0.1):
    """Seeded int8 operands A (m x k) and B (k x n) over the full range, extremes included.

    A share ``extreme_fraction`` of the entries is forced to -128 or 127 so that every GEMM
    exercises the corners of the multiplier and the accumulator's sign handling.
    """
    for name, value in (("m", m), ("k", k), ("n", n)):
        check_positive_integer(name, value)
    if not 0.0 <= extreme_fraction <= 1.0:
        raise TypeError(f"extreme_fraction must be between 0 and 1, not {extreme_fraction!r}")
    generator = torch.Generator().manual_seed(seed)

    def draw(shape):
        values = torch.randint(-128, 128, shape, generator=generator, dtype=torch.int16)
        extreme = torch.rand(shape, generator=generator) < extreme_fraction
        corner = torch.where(torch.rand(shape, generator=generator) < 0.5, -128, 127)
        return torch.where(extreme, corner.to(torch.int16), values).to(torch.int8)

    return draw((m, k)), draw((k, n))
