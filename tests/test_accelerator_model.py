"""The PyTorch twin: tiling, padding, wrap-around, and the fast path's exactness."""

import pytest
import torch

from sw.twin.gemm import (
    FLOAT32_EXACT_K,
    gemm_int8,
    gemm_int8_tiled,
    iter_tiles,
    random_operands,
    tile_origins,
    tile_product,
    wrap_int32,
)


def exact_reference(a, b):
    """Python integers, no torch arithmetic: the definition of the result."""
    rows = []
    for i in range(a.shape[0]):
        row = []
        for j in range(b.shape[1]):
            total = sum(int(a[i, t]) * int(b[t, j]) for t in range(a.shape[1]))
            row.append((total + 2**31) % 2**32 - 2**31)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int32)


def test_tiles_are_visited_row_major_over_m_and_n():
    assert tile_origins(5, 7, 2, 3) == [(0, 0), (0, 3), (0, 6), (2, 0), (2, 3), (2, 6),
                                        (4, 0), (4, 3), (4, 6)]


def test_edge_tiles_are_zero_padded_and_marked():
    a, b = random_operands(5, 4, 7, seed=1)
    tiles = list(iter_tiles(a, b, 2, 3))
    last = tiles[-1]
    assert (last.index, last.row0, last.col0, last.valid_rows, last.valid_cols) == (8, 4, 6, 1, 1)
    assert last.a.shape == (2, 4) and last.b.shape == (4, 3)
    assert torch.equal(last.a[0], a[4]) and not last.a[1].any()
    assert torch.equal(last.b[:, 0], b[:, 6]) and not last.b[:, 1:].any()


@pytest.mark.parametrize("m, k, n, rows, cols", [
    (1, 1, 1, 1, 1), (8, 16, 8, 8, 8), (13, 9, 21, 4, 6), (3, 40, 2, 5, 7),
])
def test_tiled_and_fast_paths_equal_the_integer_definition(m, k, n, rows, cols):
    a, b = random_operands(m, k, n, seed=m * k * n)
    expected = exact_reference(a, b)
    assert torch.equal(gemm_int8_tiled(a, b, rows, cols), expected)
    assert torch.equal(gemm_int8(a, b), expected)


def test_all_extreme_operands():
    a = torch.full((4, 300), -128, dtype=torch.int8)
    b = torch.full((300, 3), -128, dtype=torch.int8)
    assert torch.equal(gemm_int8(a, b), torch.full((4, 3), 300 * 16384, dtype=torch.int32))
    a[:, ::2] = 127
    assert torch.equal(gemm_int8(a, b), exact_reference(a, b))


def test_wrap_around_modulo_2_to_the_32():
    assert wrap_int32(torch.tensor([2**31, -(2**31) - 1, 2**32 + 5])).tolist() == \
        [-(2**31), 2**31 - 1, 5]
    # K large enough that the sum overflows int32: 140000 * 16384 > 2**31.
    k = 140_000
    a = torch.full((1, k), -128, dtype=torch.int8)
    b = torch.full((k, 1), -128, dtype=torch.int8)
    wrapped = (k * 16384 + 2**31) % 2**32 - 2**31
    assert gemm_int8(a, b).item() == wrapped
    assert tile_product(a, b).item() == wrapped


def test_fast_path_switches_to_float64_beyond_the_float32_limit():
    k = FLOAT32_EXACT_K + 1
    # Partial sums reach k * 16384 > 2**24: float32 would round, the result must not.
    a = torch.full((2, k), -128, dtype=torch.int8)
    b = torch.full((k, 2), -128, dtype=torch.int8)
    b[0, 0] = 1   # an odd total, which float32 cannot hold at this magnitude
    expected = (k - 1) * 16384 - 128
    assert gemm_int8(a, b)[0, 0].item() == expected


def test_batched_operands_multiply_per_batch():
    generator = torch.Generator().manual_seed(3)
    a = torch.randint(-128, 128, (3, 4, 6), dtype=torch.int8, generator=generator)
    b = torch.randint(-128, 128, (3, 6, 5), dtype=torch.int8, generator=generator)
    result = gemm_int8(a, b)
    for batch in range(3):
        assert torch.equal(result[batch], exact_reference(a[batch], b[batch]))


def test_random_operands_are_seeded_and_include_extremes():
    a1, b1 = random_operands(16, 16, 16, seed=7)
    a2, b2 = random_operands(16, 16, 16, seed=7)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, random_operands(16, 16, 16, seed=8)[0])
    assert (a1 == -128).any() and (a1 == 127).any()
    a, b = random_operands(8, 8, 8, seed=0, extreme_fraction=1.0)
    assert set(a.unique().tolist()) == {-128, 127}


@pytest.mark.parametrize("a, b, error, message", [
    (torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.int8), TypeError,
     "Operand a must be a torch.int8 tensor, not torch.float32"),
    (torch.zeros(2, 2, dtype=torch.int8), [[1]], TypeError,
     "Operand b must be a torch.int8 tensor, not list"),
    (torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 2, dtype=torch.int8), ValueError,
     r"Inner dimensions differ: a is \(2, 3\), b is \(2, 2\)"),
    (torch.zeros(3, dtype=torch.int8), torch.zeros(3, 2, dtype=torch.int8), TypeError,
     r"Operand a must have at least 2 dimensions, not shape \(3,\)"),
])
def test_bad_operands_are_named(a, b, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        gemm_int8(a, b)


def test_bad_tiling_dimension_is_named():
    with pytest.raises(TypeError, match="^rows must be a positive integer, not 0$"):
        tile_origins(4, 4, 0, 2)
