"""The checksum unit's operand-integrity counters on the RTL (Verilator, cocotb).

An upset operand spoils the rest of its row (A) or column (B) by ``delta`` times the other
operands it meets; the operands here are chosen so that those sum to zero, so the upset's
own checksum cancels and only the integrity counter of its lane can locate (``rowcol``) or
flag (``col``) it. Every lane is upset in turn and the RTL is held to the twin.
"""

import pytest
import torch

from hw.config import AcceleratorConfig, BUFFER_READ_LATENCY
from hw.register_map import Status
from sim.build import build_design
from sim.simulator import run_testbench
from sw.twin.gemm import random_operands, tile_product, wrap_int32
from sw.twin.protection import check_tile

K, STEP, BIT = 4, 1, 6          # the upset hits the operand of feed step STEP


def operands(rows, cols, seed):
    """Random operands whose step STEP cancels an upset in any lane's checksum.

    A's column STEP sums to zero below row 0 and B's row STEP sums to zero right of
    column 0 (no zeros in either), so that a B (A) operand upset after row (column) 0
    spoils its column (row) without changing its sum.
    """
    a, b = random_operands(rows, K, cols, seed)
    a[1:, STEP] = torch.tensor(_cancelling(rows - 1), dtype=torch.int8)
    b[STEP, 1:] = torch.tensor(_cancelling(cols - 1), dtype=torch.int8)
    return a, b


def _cancelling(count):
    """``count`` (at least 2) nonzero values that sum to zero."""
    values = [3 + index for index in range(count - 1)]
    return values + [-sum(values)]


def _flipped(value):
    return int(torch.tensor(value, dtype=torch.int8) ^ (1 << BIT))


def a_upset(a, b, lane):
    """PE(lane, 0)'s A register, while it passes A[lane][STEP] on to PE(lane, 1).

    Product k reaches PE(i, j) at edge k + i + j + BUFFER_READ_LATENCY + 1, so the register
    holds it in cycle STEP + lane + BUFFER_READ_LATENCY + 2. Returns the request's upset,
    the raw tile it makes and the lane mask.
    """
    raw = tile_product(a, b).to(torch.int64)
    delta = _flipped(int(a[lane, STEP])) - int(a[lane, STEP])
    raw[lane, 1:] += delta * b[STEP, 1:].to(torch.int64)
    mask = torch.arange(a.shape[0]) == lane
    cycle = STEP + lane + BUFFER_READ_LATENCY + 2
    return [f"array.pe_{lane}_0.a_reg", BIT, cycle], wrap_int32(raw), mask


def b_upset(a, b, lane):
    """PE(0, lane)'s B register, while it passes B[STEP][lane] down to PE(1, lane)."""
    raw = tile_product(a, b).to(torch.int64)
    delta = _flipped(int(b[STEP, lane])) - int(b[STEP, lane])
    raw[1:, lane] += delta * a[1:, STEP].to(torch.int64)
    mask = torch.arange(b.shape[1]) == lane
    cycle = STEP + lane + BUFFER_READ_LATENCY + 2
    return [f"array.pe_0_{lane}.b_reg", BIT, cycle], wrap_int32(raw), mask


def cases(config):
    """(direction, lane, a, b, upset, predicted check) for every lane that is checked."""
    directions = ["col"] + (["row"] if config.abft == "rowcol" else [])
    result = []
    for direction in directions:
        lanes = config.rows if direction == "row" else config.cols
        for lane in range(lanes):
            a, b = operands(config.rows, config.cols, seed=lane)
            if direction == "row":
                upset, raw, mask = a_upset(a, b, lane)
                check = check_tile(a, b, raw, config.abft, row_integrity=mask)
            else:
                upset, raw, mask = b_upset(a, b, lane)
                check = check_tile(a, b, raw, config.abft, col_integrity=mask)
            result.append((direction, lane, a, b, upset, check))
    return result


def simulate(config, tmp_path):
    runs = cases(config)
    request = {"design": vars(config),
               "cases": [{"a": a.tolist(), "b": b.tolist(), "upset": upset}
                         for _, _, a, b, upset, _ in runs],
               "wide_k": wide_k_words(config)}
    response = run_testbench(build_design(config), "operand_upset_testbench", request,
                             tmp_path)
    return runs, response["cases"], response["wide_k"]


def wide_k_words(config):
    """Words above k_max whose low bits hold a legal K (defect 13 truncated them to it)."""
    width = config.register_map.data_width
    return [1 << 7 | 1, 1 << 16 | 3, 1 << (width - 1) | 2, (1 << width) - 1]


def flags(report):
    status = report["status"]
    return (bool(status >> Status.ABFT_ERROR & 1), bool(status >> Status.ABFT_CORRECTED & 1),
            report["row_syndrome"], report["col_syndrome"])


ROWCOL = AcceleratorConfig(rows=4, cols=3, k_max=K, abft="rowcol")
COL = AcceleratorConfig(rows=3, cols=4, k_max=K, abft="col")


@pytest.fixture(scope="module")
def rowcol_runs(tmp_path_factory):
    return simulate(ROWCOL, tmp_path_factory.mktemp("rowcol"))


@pytest.fixture(scope="module")
def col_runs(tmp_path_factory):
    return simulate(COL, tmp_path_factory.mktemp("col"))


def test_rowcol_locates_and_corrects_an_upset_whose_checksum_cancels_in_every_lane(
        rowcol_runs):
    runs, reports, _ = rowcol_runs
    assert [(direction, lane) for direction, lane, *_ in runs] == (
        [("col", j) for j in range(ROWCOL.cols)] + [("row", i) for i in range(ROWCOL.rows)])
    missed = []
    for (direction, lane, a, b, _, check), report in zip(runs, reports):
        # The upset's own checksum cancels: only its integrity counter locates it.
        cancelled = check.row_syndrome if direction == "row" else check.col_syndrome
        assert cancelled == 0 and check.error and check.corrected, (direction, lane)
        if (report["result"] != tile_product(a, b).tolist()
                or flags(report) != (True, True, check.row_syndrome, check.col_syndrome)):
            missed.append((direction, lane))
    assert missed == []


def test_col_flags_a_spoiled_b_operand_whose_checksum_cancels_in_every_lane(col_runs):
    runs, reports, _ = col_runs
    assert [lane for _, lane, *_ in runs] == list(range(COL.cols))
    missed = []
    for (_, lane, a, b, _, check), report in zip(runs, reports):
        # Flagged, not corrected: the host reads the spoiled column.
        assert check.output.tolist() != tile_product(a, b).tolist()
        assert (check.error, check.corrected, check.col_syndrome) == (True, False, 1 << lane)
        if (report["result"] != check.output.tolist()
                or flags(report) != (True, False, 0, 1 << lane)):
            missed.append(lane)
    assert missed == []


def test_flags_and_syndromes_last_until_an_accepted_start(rowcol_runs):
    """A refused START keeps the tile's flags, syndromes and corrected rows; an accepted
    one clears them (the syndromes read 0 while busy) and a clean rerun leaves them 0."""
    runs, reports, _ = rowcol_runs
    (_, _, a, b, _, check), first = runs[0], reports[0]
    refused = first["refused"]
    assert refused["status"] == 1 << Status.ERROR | 1 << Status.ABFT_ERROR | \
        1 << Status.ABFT_CORRECTED
    assert (refused["row_syndrome"], refused["col_syndrome"]) == (check.row_syndrome,
                                                                 check.col_syndrome)
    assert refused["result"] == tile_product(a, b).tolist()
    assert first["busy"] == {"status": 1 << Status.BUSY, "row_syndrome": 0, "col_syndrome": 0}
    assert first["rerun"] == {"status": 1 << Status.DONE, "row_syndrome": 0, "col_syndrome": 0}


def test_the_rtl_refuses_a_k_wider_than_its_register(col_runs):
    """Co-verification of the K register on Verilator: read back k_max + 1, ERROR on START."""
    refused = [COL.k_max + 1, 1 << Status.ERROR | 1 << Status.ABFT_ERROR]
    assert col_runs[2] == [refused] * len(wide_k_words(COL))
