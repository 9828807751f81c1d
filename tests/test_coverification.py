"""RTL (Verilator, cocotb) against the PyTorch twin, bit for bit, over many shapes.

Each configuration is built once (the build cache) and simulated once: all of its GEMMs
run in one simulator process, and each GEMM's report is checked by its own test.
"""

import random
import re
import tempfile

import pytest
import torch

from hw.config import AcceleratorConfig
from sim.simulator import SimulationError
from sim.verify import (MAX_GEMM_MEMORY, GemmJob, check_gemm_memory, default_suite,
                        gemm_memory, verify_gemms)
from sw.twin.protection import RangeBounds


def clean_jobs(config, count, seed):
    """Random shapes, a third of them with every operand at -128 or 127."""
    rng = random.Random(seed)
    return [GemmJob(rng.randint(1, 3 * config.rows), rng.randint(1, config.k_max),
                    rng.randint(1, 3 * config.cols), seed=seed * 100 + n,
                    extreme_fraction=(0.1, 0.5, 1.0)[n % 3]) for n in range(count)]


def upset_jobs(config, count, seed):
    """Two-tile GEMMs with one accumulator upset in each tile, anywhere in the tile's life."""
    rng = random.Random(seed)
    k = min(24, config.k_max)
    jobs = []
    for n in range(count):
        upsets = tuple(
            (tile, f"array.pe_{rng.randrange(config.rows)}_{rng.randrange(config.cols)}"
                   ".accumulator", rng.randrange(32), rng.randint(1, config.tile_cycles(k)))
            for tile in range(2))
        jobs.append(GemmJob(2 * config.rows, k, config.cols, seed=seed * 100 + n,
                            upsets=upsets))
    return jobs

CONFIGURATIONS = {
    "8x8": (AcceleratorConfig(rows=8, cols=8, k_max=256), [
        GemmJob(19, 100, 23, seed=11),
        GemmJob(64, 256, 8, seed=12, extreme_fraction=1.0),
        GemmJob.from_operands(torch.full((8, 256), -128, dtype=torch.int8),
                              torch.full((256, 8), -128, dtype=torch.int8)),
        GemmJob.from_operands(torch.full((9, 256), 127, dtype=torch.int8),
                              torch.full((256, 9), -128, dtype=torch.int8)),
    ]),
    "1x1": (AcceleratorConfig(rows=1, cols=1, k_max=4), [
        GemmJob(1, 1, 1, seed=1), GemmJob(3, 4, 2, seed=2), GemmJob(1, 4, 5, seed=3),
    ]),
    "3x5": (AcceleratorConfig(rows=3, cols=5, k_max=16), [
        GemmJob(3, 16, 5, seed=1), GemmJob(7, 1, 11, seed=2), GemmJob(4, 9, 6, seed=3),
        GemmJob(10, 16, 10, seed=4, extreme_fraction=1.0),
    ]),
    "6x2": (AcceleratorConfig(rows=6, cols=2, k_max=9), [
        GemmJob(13, 9, 3, seed=5), GemmJob(6, 2, 2, seed=6),
    ]),
}

_ROWCOL_RANGE = AcceleratorConfig(rows=8, cols=8, k_max=64, abft="rowcol", range_check=True)
_COL = AcceleratorConfig(rows=3, cols=5, k_max=16, abft="col")
_ROWCOL = AcceleratorConfig(rows=5, cols=3, k_max=12, abft="rowcol")
CONFIGURATIONS.update({
    "8x8-rowcol-range": (_ROWCOL_RANGE, [
        *clean_jobs(_ROWCOL_RANGE, 12, seed=1),
        GemmJob(8, 64, 8, seed=3, range_bounds=RangeBounds(-20000, 20000)),
        GemmJob(12, 50, 9, seed=4, extreme_fraction=1.0,
                range_bounds=RangeBounds(-10**5, 10**5, zero=True)),
        *upset_jobs(_ROWCOL_RANGE, 16, seed=5),
    ]),
    "3x5-col": (_COL, [*clean_jobs(_COL, 12, seed=6), *upset_jobs(_COL, 16, seed=7)]),
    "5x3-rowcol": (_ROWCOL, [*clean_jobs(_ROWCOL, 12, seed=8), *upset_jobs(_ROWCOL, 16, seed=9)]),
})


def _cases():
    for name, (config, extra_jobs) in CONFIGURATIONS.items():
        jobs = default_suite(config) + extra_jobs
        for index, job in enumerate(jobs):
            yield pytest.param(name, index, id=f"{name}-{job.m}x{job.k}x{job.n}-{index}")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Simulate each configuration once, on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            config, extra_jobs = CONFIGURATIONS[name]
            jobs = default_suite(config) + extra_jobs
            cache[name] = (jobs, verify_gemms(config, jobs,
                                              work_dir=tmp_path_factory.mktemp(name)))
        return cache[name]
    return get


@pytest.mark.parametrize("name, index", list(_cases()))
def test_rtl_equals_twin(reports, name, index):
    jobs, results = reports(name)
    job, report = jobs[index], results[index]
    assert (report["m"], report["k"], report["n"]) == (job.m, job.k, job.n)
    assert report["mismatches"] == 0, report["first_mismatch"]
    assert report["flag_mismatches"] == []
    assert report["bit_exact"]
    if not job.upsets:
        assert report["detected_tiles"] == report["corrected_tiles"] == 0   # no false alarm
    config = CONFIGURATIONS[name][0]
    tiles = -(-job.m // config.rows) * -(-job.n // config.cols)
    assert report["tiles"] == tiles
    # DONE rose exactly tile_cycles(k) after START, and the CYCLES register agrees.
    assert report["timing_ok"]
    assert report["cycles"] == tiles * config.tile_cycles(job.k)


def test_protection_acts_on_the_upsets(reports):
    """The upset jobs are not vacuous: the checksum units flag and correct on the RTL."""
    totals = {}
    for name in ("8x8-rowcol-range", "3x5-col", "5x3-rowcol"):
        jobs, results = reports(name)
        results = [r for job, r in zip(jobs, results) if job.upsets]
        totals[name] = (sum(r["detected_tiles"] for r in results),
                        sum(r["corrected_tiles"] for r in results))
    assert totals["3x5-col"][0] > 10 and totals["3x5-col"][1] == 0
    for name in ("8x8-rowcol-range", "5x3-rowcol"):
        detected, corrected = totals[name]
        assert detected > 10 and corrected == detected      # single upsets: all corrected


def test_a_wrong_twin_would_be_caught(tmp_path):
    """The checker is live: a corrupted expected value is reported as a mismatch."""
    config = CONFIGURATIONS["1x1"][0]
    a = torch.tensor([[3, -4]], dtype=torch.int8)
    b = torch.tensor([[5], [6]], dtype=torch.int8)
    [report] = verify_gemms(config, [GemmJob.from_operands(a, b)], work_dir=tmp_path)
    assert report["bit_exact"] and report["mismatches"] == 0
    # The same job against a testbench whose model is off by one on purpose.
    [report] = verify_gemms(config, [GemmJob.from_operands(a, b)], work_dir=tmp_path / "bad",
                            testbench="wrong_model_testbench")
    assert not report["bit_exact"]
    assert report["first_mismatch"] == {"tile": 0, "row": 0, "col": 0, "rtl": -9, "model": -8}


@pytest.fixture
def temporary_root(tmp_path, monkeypatch):
    """Temporary directories go to ``tmp_path``, where a test can see what is left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_the_temporary_directory_is_removed_after_a_run_and_an_error(temporary_root):
    config = CONFIGURATIONS["1x1"][0]
    [report] = verify_gemms(config, [GemmJob(1, 2, 1, seed=1)])
    assert report["bit_exact"]
    assert list(temporary_root.iterdir()) == []
    with pytest.raises(SimulationError, match="^Simulation wrote no response; log "):
        verify_gemms(config, [GemmJob(1, 2, 1, seed=1)], testbench="no_such_testbench")
    assert list(temporary_root.iterdir()) == []


def test_a_waveform_the_simulation_could_not_write_is_an_error(tmp_path):
    config = CONFIGURATIONS["1x1"][0]
    waves = tmp_path / "missing-folder" / "run.vcd"
    with pytest.raises(SimulationError, match=f"^the simulation wrote no waveform to {waves}$"):
        verify_gemms(config, [GemmJob(1, 2, 1, seed=1)], waves_file=waves,
                     work_dir=tmp_path / "work")


@pytest.mark.parametrize("job, error, message", [
    (GemmJob(0, 1, 1), TypeError, "m must be a positive integer, not 0"),
    (GemmJob(1, 5, 1), ValueError, "k must be at most the accelerator's k_max 4, not 5 "
                                   "(tiles do not split K)"),
    (GemmJob(1 << 20, 4, 1 << 20), ValueError,
     "a 1048576x4x1048576 GEMM needs about 32.0 TiB of memory for its operands and results, "
     "more than the 8.0 GiB a GEMM may take"),
])
def test_jobs_that_cannot_run_are_refused_before_any_work(job, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        verify_gemms(CONFIGURATIONS["1x1"][0], [job], work_dir="/nonexistent-dir/work")


def test_the_memory_bound_is_the_stated_estimate():
    assert gemm_memory(3, 5, 7) == 32 * (3 * 5 + 5 * 7 + 3 * 7)
    assert MAX_GEMM_MEMORY == 8 << 30
    check_gemm_memory(8192, 4096, 8192)          # 4 GiB: fits
    with pytest.raises(ValueError, match="^a 16384x4096x16384 GEMM needs about 12.0 GiB "):
        check_gemm_memory(16384, 4096, 16384)
