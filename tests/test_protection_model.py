"""The twin of the checksum unit, the range checker and accumulator upsets."""

import pytest
import torch

from hw.config import INT32_MAX, INT32_MIN, compute_cycles
from sw.twin.gemm import random_operands, tile_product
from sw.twin.protection import (
    RangeBounds,
    accumulator_upset,
    check_raw,
    check_tile,
    column_checksums,
    row_checksums,
    wrap32,
)


def operands(rows=6, k=20, cols=5, seed=0, extreme_fraction=0.1):
    return random_operands(rows, k, cols, seed, extreme_fraction)


def test_checksums_are_the_sums_of_the_product():
    a, b = operands(extreme_fraction=1.0)
    c = tile_product(a, b).to(torch.int64)
    assert torch.equal(column_checksums(a, b).to(torch.int64), c.sum(0))
    assert torch.equal(row_checksums(a, b).to(torch.int64), c.sum(1))


@pytest.mark.parametrize("abft", ["col", "rowcol"])
def test_clean_tiles_never_raise_an_alarm(abft):
    for seed in range(200):
        a, b = operands(seed=seed, extreme_fraction=(seed % 3) / 2)
        check = check_tile(a, b, tile_product(a, b), abft)
        assert not check.error and not check.corrected
        assert check.row_syndrome == check.col_syndrome == 0


def corrupt(tile, cells, deltas):
    tile = tile.clone().to(torch.int64)
    for (i, j), delta in zip(cells, deltas):
        tile[i, j] += delta
    return tile.to(torch.int32)


def test_one_wrong_element_is_located_in_col_mode_and_corrected_in_rowcol():
    a, b = operands()
    clean = tile_product(a, b)
    raw = corrupt(clean, [(3, 2)], [1 << 20])
    col = check_tile(a, b, raw, "col")
    assert (col.error, col.corrected, col.col_syndrome, col.row_syndrome) == (True, False, 4, 0)
    assert torch.equal(col.output, raw)
    rowcol = check_tile(a, b, raw, "rowcol")
    assert (rowcol.error, rowcol.corrected) == (True, True)
    assert (rowcol.row_syndrome, rowcol.col_syndrome) == (1 << 3, 1 << 2)
    assert torch.equal(rowcol.output, clean)


def test_errors_along_one_row_or_one_column_are_corrected():
    a, b = operands()
    clean = tile_product(a, b)
    along_row = corrupt(clean, [(1, 1), (1, 3), (1, 4)], [5, -7, 1 << 31])
    along_col = corrupt(clean, [(0, 2), (4, 2), (5, 2)], [9, 9, -3])
    for raw in (along_row, along_col):
        check = check_tile(a, b, raw, "rowcol")
        assert check.error and check.corrected and torch.equal(check.output, clean)


def test_errors_over_several_rows_and_columns_are_only_detected():
    a, b = operands()
    clean = tile_product(a, b)
    raw = corrupt(clean, [(0, 0), (2, 3)], [1, 1])
    check = check_tile(a, b, raw, "rowcol")
    assert check.error and not check.corrected and torch.equal(check.output, raw)


def test_a_cancelled_row_sum_is_located_by_the_operand_integrity():
    a, b = operands()
    clean = tile_product(a, b)
    raw = corrupt(clean, [(2, 1), (2, 4)], [40, -40])      # the row's sum is unchanged
    blind = check_tile(a, b, raw, "rowcol")
    assert blind.error and not blind.corrected and blind.row_syndrome == 0
    located = check_tile(a, b, raw, "rowcol",
                         row_integrity=torch.tensor([False, False, True, False, False, False]))
    assert located.corrected and torch.equal(located.output, clean)


def test_col_mode_flags_a_corrupted_column_whose_sum_cancels():
    a, b = operands()
    clean = tile_product(a, b)
    raw = corrupt(clean, [(1, 3), (4, 3)], [25, -25])      # the column's sum is unchanged
    blind = check_tile(a, b, raw, "col")
    assert not blind.error and blind.col_syndrome == 0
    spoiled = torch.tensor([False, False, False, True, False])
    flagged = check_tile(a, b, raw, "col", col_integrity=spoiled)
    assert flagged.error and not flagged.corrected and flagged.col_syndrome == 1 << 3
    assert torch.equal(flagged.output, raw)


@pytest.mark.parametrize("zero, expected", [(False, [-10, 0, 10, 10]), (True, [0, 0, 0, 10])])
def test_range_checker_clamps_or_zeroes_and_counts(zero, expected):
    a = torch.zeros((1, 1), dtype=torch.int8)
    raw = torch.tensor([[-11, 0, 11, 10]], dtype=torch.int32)
    check = check_tile(a, torch.zeros((1, 4), dtype=torch.int8), raw,
                       bounds=RangeBounds(-10, 10, zero))
    assert check.output.tolist() == [expected]
    assert check.out_of_range == 2 and not check.error


@pytest.mark.parametrize("kwargs, error, message", [
    ({"lower": 5, "upper": 4}, ValueError, "range lower bound 5 is above the upper bound 4"),
    ({"lower": INT32_MIN - 1}, TypeError,
     "range lower bound must be a signed 32-bit integer, not -2147483649"),
    ({"upper": 1.5}, TypeError, "range upper bound must be a signed 32-bit integer, not 1.5"),
])
def test_bad_range_bounds_are_named(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        RangeBounds(**kwargs)


def test_accumulator_upset_timing():
    a, b = operands(rows=4, k=10, cols=3, seed=3)
    clean = tile_product(a, b)
    compute = compute_cycles(4, 3, 10)
    assert compute == 1 + 10 + 4 + 3 - 2
    # Before START the clear wipes it; after the drain nothing is left to corrupt.
    assert torch.equal(accumulator_upset(a, b, 1, 2, 5, 0), clean)
    assert torch.equal(accumulator_upset(a, b, 1, 2, 5, compute + 4 + 1), clean)
    # During COMPUTE: the element itself, by 2**bit either way.
    for cycle in (1, 4, 9, compute):
        delta = accumulator_upset(a, b, 1, 2, 5, cycle).to(torch.int64) - clean.to(torch.int64)
        assert delta.abs().sum() == 32 and delta[1, 2].abs() == 32
    # PE(1, 2) before its first product holds 0: bit 5 turns it into +32.
    early = accumulator_upset(a, b, 1, 2, 5, 1 + 2 + 2)
    assert int(early[1, 2]) - int(clean[1, 2]) == 32
    # During drain cycle d, PE(i, j) holds row i - d; rows above have already moved down.
    drained = accumulator_upset(a, b, 3, 0, 0, compute + 1 + 2)
    assert (drained != clean).nonzero().tolist() == [[1, 0]]
    assert torch.equal(accumulator_upset(a, b, 1, 0, 0, compute + 1 + 2), clean)


def test_sign_bit_upset_wraps():
    a = torch.full((2, 4), 1, dtype=torch.int8)
    b = torch.full((4, 2), 1, dtype=torch.int8)
    upset = accumulator_upset(a, b, 0, 0, 31, compute_cycles(2, 2, 4))
    assert int(upset[0, 0]) == 4 - (1 << 31)
    assert INT32_MIN <= int(upset[0, 0]) <= INT32_MAX


@pytest.mark.parametrize("abft", ["none", "col", "rowcol"])
def test_checking_from_the_clean_tiles_sums_equals_checking_from_the_operands(abft):
    # The RTL-derived fault model checks a corrupted tile against the clean tile's column
    # and row sums (modulo 2**32) instead of the checksums of the operands.
    generator = torch.Generator().manual_seed(1)
    for seed in range(300):
        a, b = operands(seed=seed, extreme_fraction=(seed % 3) / 2)
        clean = tile_product(a, b)
        cells = torch.randint(0, 5, (int(seed % 4) + 1, 2), generator=generator).tolist()
        deltas = [int(d) for d in torch.randint(-2**31, 2**31, (len(cells),),
                                                generator=generator)]
        raw = corrupt(clean, cells, deltas)
        integrity = {"row_integrity": torch.arange(6) == seed % 6} if seed % 5 == 0 else {}
        bounds = RangeBounds(-(1 << 18), 1 << 18, seed % 2 == 0) if seed % 3 == 0 else None
        reference = check_tile(a, b, raw, abft, bounds=bounds, **integrity)
        sums = clean.numpy().astype("int64")
        fast = check_raw(raw.numpy(), (wrap32(sums.sum(0)), wrap32(sums.sum(1))), abft,
                         bounds, **{name: mask.numpy() for name, mask in integrity.items()})
        assert torch.equal(torch.from_numpy(fast.output.astype("int32")), reference.output)
        assert (fast.error, fast.corrected, fast.row_syndrome, fast.col_syndrome,
                fast.out_of_range) == (reference.error, reference.corrected,
                                       reference.row_syndrome, reference.col_syndrome,
                                       reference.out_of_range)
