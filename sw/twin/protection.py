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

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from hw.config import ABFT_MODES, BUFFER_READ_LATENCY, INT32_MAX, INT32_MIN, compute_cycles
from sw.twin.gemm import tile_product, to_signed, wrap_int32

__all__ = ["RangeBounds", "TileCheck", "check_tile", "check_raw", "range_check",
           "clamp_to_range", "column_checksums", "row_checksums", "accumulator_upset",
           "accumulator_upset_raw", "product_raw", "wrap32"]


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
    """What the protected hardware reports for one tile (tensors from :func:`check_tile`,
    NumPy arrays from :func:`check_raw`)."""
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


def wrap32(values):
    """NumPy integers reduced modulo 2**32 into the int32 range, as int64 (the int32 cast
    keeps the low 32 bits, two's complement)."""
    return np.asarray(values, dtype=np.int64).astype(np.int32).astype(np.int64)


def product_raw(a_tile, b_tile):
    """The int32 tile the array accumulates (:func:`sw.twin.gemm.tile_product`) from NumPy
    integer operands, as int64."""
    return wrap32(np.asarray(a_tile).astype(np.int64) @ np.asarray(b_tile).astype(np.int64))


def _bits(mask):
    if not mask.any():
        return 0
    return sum(1 << int(index) for index in np.flatnonzero(mask))


def _one_hot(mask):
    return int(mask.sum()) == 1


def _located(check_bad, integrity_bad):
    if check_bad.any():
        return check_bad
    return integrity_bad if _one_hot(integrity_bad) else np.zeros_like(integrity_bad)


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
    checksums = (None if abft == "none" else column_checksums(a_tile, b_tile).numpy(),
                 row_checksums(a_tile, b_tile).numpy() if abft == "rowcol" else None)
    check = check_raw(raw.numpy(), checksums, abft, bounds,
                      None if row_integrity is None else row_integrity.numpy(),
                      None if col_integrity is None else col_integrity.numpy())
    return dataclasses.replace(check, raw=raw,
                               output=torch.from_numpy(check.output.astype(np.int32)),
                               row_differences=torch.from_numpy(check.row_differences),
                               col_differences=torch.from_numpy(check.col_differences))


def check_raw(raw, checksums, abft, bounds=None, row_integrity=None, col_integrity=None):
    """:func:`check_tile` on NumPy arrays, from the checksums instead of the operands: the
    hot path of the RTL-derived fault model, which knows them from the clean tile.

    ``checksums`` is (column checksums, row checksums), each ``None`` where ``abft`` has
    none; the :class:`TileCheck` holds NumPy arrays (``output`` int64 in the int32 range).
    """
    rows, cols = raw.shape
    raw64 = raw.astype(np.int64)
    col_diff = np.zeros(cols, dtype=np.int32)
    row_diff = np.zeros(rows, dtype=np.int32)
    if abft != "none":
        col_diff = wrap32(checksums[0].astype(np.int64) - raw64.sum(0)).astype(np.int32)
    if abft == "rowcol":
        row_diff = wrap32(checksums[1].astype(np.int64) - raw64.sum(1)).astype(np.int32)
    if row_integrity is None:
        row_integrity = np.zeros(rows, dtype=bool)
    if col_integrity is None:
        col_integrity = np.zeros(cols, dtype=bool)
    col_check_bad, row_check_bad = col_diff != 0, row_diff != 0
    if abft == "col":
        col_check_bad = col_check_bad | col_integrity
    error = bool(col_check_bad.any() or row_check_bad.any())
    col_bad = _located(col_check_bad, col_integrity)
    row_bad = _located(row_check_bad, row_integrity)
    column_mode = error and _one_hot(col_bad) and bool(row_bad.any())
    row_mode = error and _one_hot(row_bad) and bool(col_bad.any()) and not column_mode
    corrected = abft == "rowcol" and (column_mode or row_mode)
    output = raw64.copy()
    if abft == "rowcol":
        if column_mode:
            output[:, col_bad] += row_diff.astype(np.int64)[:, None]
        if row_mode:
            output[row_bad, :] += col_diff.astype(np.int64)[None, :]
    output = wrap32(output)
    out_of_range = 0
    if bounds is not None:
        output, out_of_range = clamp_to_range(output, bounds.lower, bounds.upper, bounds.zero)
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
    checked, outside = clamp_to_range(values.numpy(), lower, upper, zero)
    return torch.from_numpy(checked.astype(values.numpy().dtype)), outside


def clamp_to_range(values, lower, upper, zero=False):
    """:func:`range_check` on a NumPy array."""
    below, above = values < lower, values > upper
    outside = below | above
    replacement = 0 if zero else np.where(below, lower, upper)
    return np.where(outside, replacement, values), int(outside.sum())


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
    a, b = a_tile.numpy().astype(np.int64), b_tile.numpy().astype(np.int64)
    tile = accumulator_upset_raw(a, b, tile_product(a_tile, b_tile).numpy().astype(np.int64),
                                 row, col, bit, cycle)
    return torch.from_numpy(tile.astype(np.int32))


def accumulator_upset_raw(a, b, tile, row, col, bit, cycle):
    """:func:`accumulator_upset` on NumPy integer operands and their clean tile ``tile``
    (int64, not changed): the raw tile, int64 in the int32 range."""
    rows, k = a.shape
    compute = compute_cycles(rows, b.shape[1], k)
    if 1 <= cycle <= compute:
        landed = cycle - row - col - BUFFER_READ_LATENCY - 2   # products 0 .. landed
        steps = max(0, min(k, landed + 1))
        partial = int(wrap32(int(a[row, :steps].astype(np.int64)
                                 @ b[:steps, col].astype(np.int64))))
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
    tile = tile.copy()
    tile[target] = int(wrap32(int(tile[target]) + delta))
    return tile
