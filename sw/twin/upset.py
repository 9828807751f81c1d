"""The RTL-derived fault model: what the host reads after one register upset in one tile.

Given a fault site of the generated design (its path, as :mod:`hw.netlist.fault_sites`
names it), a bit and a cycle of a tile, :func:`predict_upset` returns the tile and the
STATUS flags the host reads, computed from the tile's operands and the hardware's timing
instead of simulating it (FIdelity's idea, checked experiment by experiment against the RTL
in ``tests/test_upset_model.py``).

Cycle ``c`` is the phase just before the ``c``-th rising edge after the edge that samples
START (edge 0, which clears the accumulators), as in campaigns; an upset at cycle ``c``
changes what the register holds during that cycle and so what edge ``c`` loads from it.

Timing, all from the generator (``hw/config.py`` and the units in ``hw/gemm``): column
``s`` of A and row ``s`` of B enter the skew buffers during cycle ``s + 2`` (buffer read
latency, then the zero gate of ``feed_valid``); lane ``i`` of a skew buffer delays by ``i``
registers, and each PE passes its operands on through ``a_reg`` (right) and ``b_reg`` (down),
so product ``s`` reaches PE(i, j) during cycle ``s + i + j + 2``. Hence the operand a
register holds during cycle ``c``:

* ``a_skew.lane{i}_stage{t}``: A[i][c - t - 3], on its way to PE(i, 0) and the whole row;
* ``array.pe_{i}_{j}.a_reg``: A[i][c - i - j - 3], on its way to PE(i, j + 1) .. the row end;
* ``b_skew`` and ``b_reg`` likewise for B and the column below.

Outside steps ``0 .. k - 1`` the operands are zero and so is their partner's, so an upset
there changes no product. A changed operand also reaches the array's edge, where the
checksum unit's operand-integrity counters see it (the row's or the column's integrity
flag). Result rows are written at the drain edge ``compute_cycles + rows - r`` and read
(combinationally, through the checksum unit's correction and the range checker) during
cycle ``busy_cycles + 2 + r``; the registered read word ``rdata`` holds row ``r`` during
cycle ``busy_cycles + 3 + r`` and STATUS during cycle ``busy_cycles + 3 + rows``, when the
harness captures them.

Control, checksum and range-checker registers are not modeled (``None``).
"""

import functools
import re
from dataclasses import dataclass

import numpy as np
import torch

from hw.config import busy_cycles, compute_cycles
from hw.register_map import Status
from sw.twin.gemm import to_signed
from sw.twin.protection import (
    accumulator_upset_raw,
    check_raw,
    clamp_to_range,
    product_raw,
    wrap32,
)

__all__ = ["HostView", "predict_upset", "MODELED_CLASSES"]

#: Fault classes whose every site the model covers.
MODELED_CLASSES = ("operand", "accumulator", "output")

_SKEW = re.compile(r"(?P<side>[ab])_skew\.lane(?P<lane>\d+)_stage(?P<stage>\d+)")
_PE = re.compile(r"array\.pe_(?P<row>\d+)_(?P<col>\d+)\.(?P<register>a_reg|b_reg|accumulator)")
_RESULT_ROW = re.compile(r"results\.row_(?P<row>\d+)")
_OPERAND_STEP_OFFSET = 3   # A[i][s] leaves skew input register stage t at cycle s + t + 3


@dataclass(frozen=True)
class HostView:
    """What the host reads after a tile: the output rows and the STATUS flags."""
    output: torch.Tensor
    """int32, ``rows x cols`` (the padded tile, as the hardware holds it)."""
    abft_error: bool
    abft_corrected: bool
    range_flag: bool

    @property
    def alarm(self):
        return self.abft_error or self.range_flag


def _flip(value, bit, width):
    return to_signed((int(value) & ((1 << width) - 1)) ^ (1 << bit), width)


def _operand_upset(a, b, tile, match, bit, cycle, in_pe):
    """(raw tile, row integrity, column integrity) after an upset of an operand register
    (NumPy: integer operands, int64 clean tile)."""
    rows, k = a.shape
    cols = b.shape[1]
    raw = tile
    row_integrity = np.zeros(rows, dtype=bool)
    col_integrity = np.zeros(cols, dtype=bool)
    if in_pe:
        row, col = int(match["row"]), int(match["col"])
        side = match["register"][0]
        step = cycle - row - col - _OPERAND_STEP_OFFSET
    else:
        side = match["side"]
        row = col = int(match["lane"])
        step = cycle - int(match["stage"]) - _OPERAND_STEP_OFFSET
    if not 0 <= step < k:
        return raw, row_integrity, col_integrity
    raw = tile.copy()
    if side == "a":
        first = col + 1 if in_pe else 0
        old = int(a[row, step])
        raw[row, first:] += (_flip(old, bit, 8) - old) * b[step, first:].astype(np.int64)
        row_integrity[row] = True
    else:
        first = row + 1 if in_pe else 0
        old = int(b[step, col])
        raw[first:, col] += (_flip(old, bit, 8) - old) * a[first:, step].astype(np.int64)
        col_integrity[col] = True
    return raw, row_integrity, col_integrity


@functools.lru_cache(maxsize=4096)
def _parse_site(site):
    """The matches of ``site`` against the skew, PE and result-row registers' names."""
    return _SKEW.fullmatch(site), _PE.fullmatch(site), _RESULT_ROW.fullmatch(site)


def predict_upset(config, a_tile, b_tile, site, bit, cycle, bounds=None, clean=None):
    """The :class:`HostView` after bit ``bit`` of register ``site`` flips at ``cycle``.

    ``config`` is the design's :class:`hw.config.AcceleratorConfig`; ``a_tile`` (rows x K)
    and ``b_tile`` (K x cols) are the tile's int8 operands, zero-padded to the array
    (tensors or NumPy arrays); ``bounds`` the range checker's
    :class:`sw.twin.protection.RangeBounds` when the design has one; ``clean`` the tile's
    clean product (int32 values, computed when not given). Returns
    ``None`` for a site the model does not cover (control, checksum and range-checker
    registers).

    Computed in NumPy from the clean tile: the checksums of the operands are its column and
    row sums modulo 2**32, so no product is formed again.
    """
    skew, pe, result_row = _parse_site(site)
    if not (skew or pe or result_row or site == "rdata"):
        return None
    a, b = np.asarray(a_tile), np.asarray(b_tile)
    tile = product_raw(a, b) if clean is None else np.asarray(clean, dtype=np.int64)
    rows, k = a.shape
    cols = b.shape[1]
    row_integrity = col_integrity = None
    read_flips = {}       # row -> XOR mask of the result register read
    captured_flip = None  # (row or "status", bit) of the registered read word
    busy = busy_cycles(rows, cols, k)
    drained = tile
    if pe and pe["register"] == "accumulator":
        drained = accumulator_upset_raw(a, b, tile, int(pe["row"]), int(pe["col"]), bit, cycle)
    elif skew or pe:
        drained, row_integrity, col_integrity = _operand_upset(a, b, tile, skew or pe, bit,
                                                               cycle, in_pe=pe is not None)
    elif result_row:
        row = int(result_row["row"])
        written = compute_cycles(rows, cols, k) + rows - row
        if written < cycle <= busy + 2 + row:
            read_flips[row] = bit
    else:
        word = cycle - busy - 3
        if 0 <= word < rows:
            captured_flip = (word, bit)
        elif word == rows:
            captured_flip = ("status", bit)

    if drained is tile and not read_flips:
        # Nothing reached the array's result: the checksums agree, nothing is corrected.
        output, error, corrected = tile, False, False
    else:
        drained = wrap32(drained)
        checksums = (wrap32(tile.sum(0)), wrap32(tile.sum(1)))
        check = check_raw(drained, checksums, config.abft, row_integrity=row_integrity,
                          col_integrity=col_integrity)
        correction = check.output - drained
        read = drained.copy()
        for row, flip_bit in read_flips.items():
            lane = flip_bit // 32
            if lane < cols:
                read[row, lane] = _flip(read[row, lane], flip_bit % 32, 32)
        output, error, corrected = wrap32(read + correction), check.error, check.corrected
    out_of_range = 0
    if config.range_check and bounds is not None:
        output, out_of_range = clamp_to_range(output, bounds.lower, bounds.upper, bounds.zero)
    status = (error << Status.ABFT_ERROR | corrected << Status.ABFT_CORRECTED
              | (out_of_range > 0) << Status.RANGE_FLAG)
    if captured_flip is not None:
        where, flip_bit = captured_flip
        if where == "status":
            status ^= (1 << flip_bit) if flip_bit < 32 else 0
        elif flip_bit // 32 < cols:
            output = output.copy()
            output[where, flip_bit // 32] = _flip(output[where, flip_bit // 32],
                                                  flip_bit % 32, 32)
    return HostView(output=torch.from_numpy(output.astype(np.int32)),
                    abft_error=bool(status >> Status.ABFT_ERROR & 1),
                    abft_corrected=bool(status >> Status.ABFT_CORRECTED & 1),
                    range_flag=bool(status >> Status.RANGE_FLAG & 1))
