"""Bit-exact twin of the accelerator's checksum unit and range checker, and of upsets.

:func:`check_tile` takes a tile's operands and the raw tile as it drained from the array
(clean, or corrupted) and returns what the hardware reports and what the host reads:
flags, syndromes, differences, the corrected and range-checked output and the number of
values out of range. It follows ``hw/protect/checksum_unit.py`` and ``hw/protect/range_checker.py``
exactly: checksums from the operands, arithmetic modulo 2**32, difference = checksum -
sum, correction of single-column or single-row errors by adding the differences.

:func:`accumulator_upset` predicts the raw tile after one bit of one accumulator flips at
a given cycle of the tile, from the array's timing: the model of a fault, so that RTL and
twin can be held equal with faults as well as without.
"""

from dataclasses import dataclass

import torch

from hw.config import ABFT_MODES, BUFFER_READ_LATENCY, INT32_MAX, INT32_MIN, compute_cycles
from sw.twin.gemm import tile_product, to_signed, wrap_int32

__all__ = ["RangeBounds", "TileCheck", "check_tile", "range_check", "column_checksums",
           "row_checksums", "accumulator_upset"]


@dataclass(frozen=True)
class RangeBounds:
    """Bounds of the range checker; out-of-range values become the bound, or zero."""
    lower: int = INT32_MIN
    upper: int = INT32_MAX
    zero: bool = False

    def __post_init__(self):
        for name in ("lower", "upper"):
            value = getattr(self, name)
            if not isinstance(value, int) or not INT32_MIN <= value <= INT32_MAX:
                raise TypeError(f"range {name} bound must be a signed 32-bit integer, "
                                f"not {value!r}")
        if self.lower > self.upper:
            raise ValueError(f"range lower bound {self.lower} is above the upper bound "
                             f"{self.upper}")


@dataclass
class TileCheck:
    """What the protected hardware reports for one tile."""
    raw: torch.Tensor
    output: torch.Tensor
    error: bool
    corrected: bool
    row_syndrome: int
    col_syndrome: int
    row_differences: torch.Tensor
    col_differences: torch.Tensor
    out_of_range: int


def column_checksums(a_tile, b_tile):
    """``sum_k s[k] B[k][j]`` with ``s[k] = sum_i A[i][k]``: the column sums of C."""
    return wrap_int32(a_tile.to(torch.int64).sum(dim=0) @ b_tile.to(torch.int64))


def row_checksums(a_tile, b_tile):
    """``sum_k A[i][k] r[k]`` with ``r[k] = sum_j B[k][j]``: the row sums of C."""
    return wrap_int32(a_tile.to(torch.int64) @ b_tile.to(torch.int64).sum(dim=1))


def _bits(mask):
    return sum(1 << index for index, bad in enumerate(mask.tolist()) if bad)


def _one_hot(mask):
    return int(mask.sum()) == 1


def _located(check_bad, integrity_bad):
    if check_bad.any():
        return check_bad
    return integrity_bad if _one_hot(integrity_bad) else torch.zeros_like(integrity_bad)


def check_tile(a_tile, b_tile, raw, abft="none", bounds=None, row_integrity=None,
               col_integrity=None):
    """Checks, correction and range checking of one tile, as the hardware does them.

    ``row_integrity`` and ``col_integrity`` are the rows and columns (boolean masks) whose
    operands were corrupted on their way across the array. With ``rowcol`` they only locate
    errors that a checksum direction missed; with ``col`` a corrupted column is an error of
    that column even when its checksum cancels. By default no operand was corrupted.
    """
    if abft not in ABFT_MODES:
        raise TypeError(f"abft must be one of {ABFT_MODES!r}, not {abft!r}")
    rows, cols = raw.shape
    raw64 = raw.to(torch.int64)
    col_diff = torch.zeros(cols, dtype=torch.int32)
    row_diff = torch.zeros(rows, dtype=torch.int32)
    if abft != "none":
        col_diff = wrap_int32(column_checksums(a_tile, b_tile).to(torch.int64) - raw64.sum(0))
    if abft == "rowcol":
        row_diff = wrap_int32(row_checksums(a_tile, b_tile).to(torch.int64) - raw64.sum(1))
    if row_integrity is None:
        row_integrity = torch.zeros(rows, dtype=torch.bool)
    if col_integrity is None:
        col_integrity = torch.zeros(cols, dtype=torch.bool)
    col_check_bad, row_check_bad = col_diff != 0, row_diff != 0
    if abft == "col":
        col_check_bad = col_check_bad | col_integrity
    error = bool(col_check_bad.any() or row_check_bad.any())
    col_bad = _located(col_check_bad, col_integrity)
    row_bad = _located(row_check_bad, row_integrity)
    column_mode = error and _one_hot(col_bad) and bool(row_bad.any())
    row_mode = error and _one_hot(row_bad) and bool(col_bad.any()) and not column_mode
    corrected = abft == "rowcol" and (column_mode or row_mode)
    output = raw64.clone()
    if abft == "rowcol":
        if column_mode:
            output[:, col_bad] += row_diff.to(torch.int64)[:, None]
        if row_mode:
            output[row_bad, :] += col_diff.to(torch.int64)[None, :]
    output = wrap_int32(output)
    out_of_range = 0
    if bounds is not None:
        output, out_of_range = range_check(output, bounds.lower, bounds.upper, bounds.zero)
    return TileCheck(raw=raw, output=output, error=error, corrected=corrected,
                     row_syndrome=_bits(row_check_bad), col_syndrome=_bits(col_check_bad),
                     row_differences=row_diff, col_differences=col_diff,
                     out_of_range=out_of_range)


def range_check(values, lower, upper, zero=False):
    """What the range checker lets the host read of ``values``, and how many were outside.

    Any int32 bounds, as the RANGE_LOWER and RANGE_UPPER registers take them: a value
    below ``lower`` or above ``upper`` is out of range and reads as ``lower`` if it is
    below ``lower``, else as ``upper`` (0 in ``zero`` mode). With ``lower > upper`` every
    value is out of range. :class:`RangeBounds` is the checked choice of a user.
    """
    below, above = values < lower, values > upper
    outside = below | above
    replacement = (torch.zeros_like(values) if zero else
                   torch.where(below, torch.full_like(values, lower),
                               torch.full_like(values, upper)))
    return torch.where(outside, replacement, values), int(outside.sum())


def _flip_int32(value, bit):
    """The int32 ``value`` (a Python int) with ``bit`` flipped."""
    return to_signed((value & 0xFFFFFFFF) ^ (1 << bit), 32)


def accumulator_upset(a_tile, b_tile, row, col, bit, cycle):
    """The raw tile after bit ``bit`` of accumulator (``row``, ``col``) flips at ``cycle``.

    Cycle ``c`` is just before the ``c``-th rising edge after the edge that samples START
    (which clears the accumulators). Product ``k`` reaches PE(i, j) at edge
    ``k + i + j + BUFFER_READ_LATENCY + 1``; COMPUTE ends at edge ``compute_cycles``; drain
    cycle ``d`` ends at edge ``compute_cycles + 1 + d``, and before it PE(i, j) holds the
    original row ``i - d`` (zeros above). An upset before START, after the drain, or in a
    PE whose value will not drain any more leaves the tile as it is.
    """
    rows, k = a_tile.shape
    cols = b_tile.shape[1]
    tile = tile_product(a_tile, b_tile)
    compute = compute_cycles(rows, cols, k)
    if 1 <= cycle <= compute:
        landed = cycle - row - col - BUFFER_READ_LATENCY - 2   # products 0 .. landed
        steps = max(0, min(k, landed + 1))
        partial = int(wrap_int32((a_tile[row, :steps].to(torch.int64)
                                  * b_tile[:steps, col].to(torch.int64)).sum()))
        target = (row, col)
        delta = _flip_int32(partial, bit) - partial
    elif compute < cycle <= compute + rows:
        drain_cycle = cycle - compute - 1
        if row < drain_cycle:
            return tile
        target = (row - drain_cycle, col)
        value = int(tile[target])
        delta = _flip_int32(value, bit) - value
    else:
        return tile
    tile = tile.clone()
    tile[target] = int(wrap_int32(torch.tensor(int(tile[target]) + delta)))
    return tile
