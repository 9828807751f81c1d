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

import re
from dataclasses import dataclass

import torch

from hw.config import busy_cycles, compute_cycles
from hw.register_map import Status
from sw.twin.gemm import tile_product, to_signed, wrap_int32
from sw.twin.protection import accumulator_upset, check_tile

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


def _operand_upset(a_tile, b_tile, match, bit, cycle, in_pe):
    """(raw tile, row integrity, column integrity) after an upset of an operand register."""
    rows, k = a_tile.shape
    cols = b_tile.shape[1]
    raw = tile_product(a_tile, b_tile).to(torch.int64)
    row_integrity = torch.zeros(rows, dtype=torch.bool)
    col_integrity = torch.zeros(cols, dtype=torch.bool)
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
    if side == "a":
        first = col + 1 if in_pe else 0
        old = int(a_tile[row, step])
        delta = _flip(old, bit, 8) - old
        raw[row, first:] += delta * b_tile[step, first:].to(torch.int64)
        row_integrity[row] = True
    else:
        first = row + 1 if in_pe else 0
        old = int(b_tile[step, col])
        delta = _flip(old, bit, 8) - old
        raw[first:, col] += delta * a_tile[first:, step].to(torch.int64)
        col_integrity[col] = True
    return raw, row_integrity, col_integrity


def predict_upset(config, a_tile, b_tile, site, bit, cycle, bounds=None):
    """The :class:`HostView` after bit ``bit`` of register ``site`` flips at ``cycle``.

    ``config`` is the design's :class:`hw.config.AcceleratorConfig`; ``a_tile`` (rows x K)
    and ``b_tile`` (K x cols) are the tile's int8 operands, zero-padded to the array;
    ``bounds`` the range checker's :class:`sw.twin.protection.RangeBounds` when the design
    has one. Returns ``None`` for a site the model does not cover (control, checksum and
    range-checker registers).
    """
    rows, k = a_tile.shape
    cols = b_tile.shape[1]
    row_integrity = col_integrity = None
    read_flips = {}       # row -> XOR mask of the result register read
    captured_flip = None  # (row or "status", bit) of the registered read word
    busy = busy_cycles(rows, cols, k)
    if (match := _SKEW.fullmatch(site)) or (match := _PE.fullmatch(site)):
        in_pe = "register" in match.groupdict()
        if in_pe and match["register"] == "accumulator":
            drained = accumulator_upset(a_tile, b_tile, int(match["row"]), int(match["col"]),
                                        bit, cycle).to(torch.int64)
        else:
            drained, row_integrity, col_integrity = _operand_upset(
                a_tile, b_tile, match, bit, cycle, in_pe)
    elif match := _RESULT_ROW.fullmatch(site):
        drained = tile_product(a_tile, b_tile).to(torch.int64)
        row = int(match["row"])
        written = compute_cycles(rows, cols, k) + rows - row
        if written < cycle <= busy + 2 + row:
            read_flips[row] = bit
    elif site == "rdata":
        drained = tile_product(a_tile, b_tile).to(torch.int64)
        word = cycle - busy - 3
        if 0 <= word < rows:
            captured_flip = (word, bit)
        elif word == rows:
            captured_flip = ("status", bit)
    else:
        return None

    drained = wrap_int32(drained)
    check = check_tile(a_tile, b_tile, drained, config.abft, row_integrity=row_integrity,
                       col_integrity=col_integrity)
    correction = check.output.to(torch.int64) - drained.to(torch.int64)
    read = drained.clone()
    for row, flip_bit in read_flips.items():
        lane = flip_bit // 32
        if lane < cols:
            read[row, lane] = _flip(read[row, lane], flip_bit % 32, 32)
    output = wrap_int32(read.to(torch.int64) + correction)
    out_of_range = 0
    if config.range_check:
        ranged = check_tile(a_tile, b_tile, output, "none", bounds=bounds)
        output, out_of_range = ranged.output, ranged.out_of_range
    status = (check.error << Status.ABFT_ERROR | check.corrected << Status.ABFT_CORRECTED
              | (out_of_range > 0) << Status.RANGE_FLAG)
    if captured_flip is not None:
        where, flip_bit = captured_flip
        if where == "status":
            status ^= (1 << flip_bit) if flip_bit < 32 else 0
        elif flip_bit // 32 < cols:
            output = output.clone()
            output[where, flip_bit // 32] = _flip(output[where, flip_bit // 32],
                                                  flip_bit % 32, 32)
    return HostView(output=output,
                    abft_error=bool(status >> Status.ABFT_ERROR & 1),
                    abft_corrected=bool(status >> Status.ABFT_CORRECTED & 1),
                    range_flag=bool(status >> Status.RANGE_FLAG & 1))
