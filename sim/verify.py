"""Co-verification: GEMMs on the RTL against the PyTorch twin, in one simulator run."""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hw.config import AcceleratorConfig
from sim.build import build_design
from sim.simulator import SimulationError, run_testbench
from sw.twin.gemm import random_operands
from sw.twin.protection import RangeBounds

__all__ = ["GemmJob", "verify_gemms", "default_suite", "job_operands", "MAX_GEMM_MEMORY",
           "gemm_memory", "check_gemm_memory"]

TESTBENCH = "sim.testbenches.gemm"
#: Memory a GEMM may need, in bytes (:func:`gemm_memory`): a third of the 24 GB of the
#: machine the suite runs on, so that a few runs fit side by side.
MAX_GEMM_MEMORY = 8 << 30
#: Peak bytes per element of A, B and C: drawing a seeded int8 operand goes through int16,
#: float32 and int64 tensors, checking C through int32, float32 and int64 ones (measured:
#: about 27 and 25 bytes).
_BYTES_PER_ELEMENT = 32


def gemm_memory(m, k, n):
    """Bytes the operands and results of an m x k x n GEMM take at their peak."""
    return _BYTES_PER_ELEMENT * (m * k + k * n + m * n)


def _binary_size(count):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}"
        count /= 1024


def check_gemm_memory(m, k, n):
    """Raise a ``ValueError`` saying how much memory an m x k x n GEMM needs, if that is
    more than :data:`MAX_GEMM_MEMORY`."""
    needed = gemm_memory(m, k, n)
    if needed > MAX_GEMM_MEMORY:
        raise ValueError(f"a {m}x{k}x{n} GEMM needs about {_binary_size(needed)} of memory "
                         f"for its operands and results, more than the "
                         f"{_binary_size(MAX_GEMM_MEMORY)} a GEMM may take")


@dataclass(frozen=True)
class GemmJob:
    """One GEMM: A is m x k, B is k x n.

    The operands are seeded random int8 values, a share ``extreme_fraction`` of them -128
    or 127, unless ``operands`` gives them explicitly as an (A, B) pair of int8 tensors.
    ``range_bounds`` programs the range checker (designs with one). ``upsets`` are
    accumulator upsets ``(tile, "array.pe_I_J.accumulator", bit, cycle)``, at most one
    per tile, at cycles 1 .. tile_cycles(k), which the twin predicts.
    """
    m: int
    k: int
    n: int
    seed: int = 0
    extreme_fraction: float = 0.1
    operands: tuple | None = field(default=None, repr=False, compare=False)
    range_bounds: RangeBounds | None = None
    upsets: tuple = ()

    @classmethod
    def from_operands(cls, a, b):
        return cls(m=a.shape[0], k=a.shape[1], n=b.shape[1], operands=(a, b))

    def check(self, config: AcceleratorConfig):
        """Raise an error naming the bad parameter, if the job cannot run: ``TypeError``
        for a value wrong by itself, ``ValueError`` for one that does not fit the design,
        the other parameters or the memory (:func:`check_gemm_memory`)."""
        for name in ("m", "k", "n"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise TypeError(f"seed must be a non-negative integer, not {self.seed!r}")
        check_gemm_memory(self.m, self.k, self.n)
        if self.k > config.k_max:
            raise ValueError(f"k must be at most the accelerator's k_max {config.k_max}, "
                             f"not {self.k} (tiles do not split K)")
        if self.range_bounds is not None and not config.range_check:
            raise ValueError("range bounds need a design with a range checker")
        tiles = -(-self.m // config.rows) * -(-self.n // config.cols)
        for tile, path, bit, cycle in self.upsets:
            if not 0 <= tile < tiles:
                raise ValueError(f"upset tile must be from 0 to {tiles - 1}, not {tile}")
            if not 1 <= cycle <= config.tile_cycles(self.k):
                raise ValueError(f"upset cycle must be from 1 to {config.tile_cycles(self.k)}, "
                                 f"not {cycle}")
            if not 0 <= bit < 32:
                raise TypeError(f"upset bit must be from 0 to 31, not {bit}")

    def to_request(self, config: AcceleratorConfig, work_dir: Path, index: int):
        """The job as the testbench reads it; explicit operands go to a file."""
        bounds = self.range_bounds
        if bounds is None and config.range_check:
            bounds = RangeBounds()
        request = {"m": self.m, "k": self.k, "n": self.n, "seed": self.seed,
                   "extreme_fraction": self.extreme_fraction, "operands_file": None,
                   "range": None if bounds is None else [bounds.lower, bounds.upper, bounds.zero],
                   "upsets": [list(upset) for upset in self.upsets]}
        if self.operands is not None:
            path = work_dir / f"operands-{index}.pt"
            a, b = self.operands
            torch.save({"a": a, "b": b}, path)
            request["operands_file"] = str(path)
        return request


def job_operands(job_request):
    """The (A, B) operands of a job request (inside the testbench)."""
    if job_request["operands_file"] is not None:
        operands = torch.load(job_request["operands_file"])
        return operands["a"], operands["b"]
    return random_operands(job_request["m"], job_request["k"], job_request["n"],
                           job_request["seed"], job_request["extreme_fraction"])


def default_suite(config: AcceleratorConfig, seed=0):
    """Shapes that exercise one tile, edge tiles, K = 1, K = k_max and many tiles."""
    r, c, k_max = config.rows, config.cols, config.k_max
    shapes = [
        (r, min(16, k_max), c),
        (r, 1, c),
        (r, k_max, c),
        (2 * r + 1, min(33, k_max), 3 * c - 1),
        (1, min(7, k_max), 1),
        (4 * r, min(64, k_max), 4 * c),
    ]
    jobs = [GemmJob(m, k, n, seed + i) for i, (m, k, n) in enumerate(shapes)]
    jobs.append(GemmJob(r, k_max, c, seed + len(shapes), extreme_fraction=1.0))
    return jobs


def verify_gemms(config: AcceleratorConfig, jobs, *, waves_file=None, work_dir=None,
                 timeout=None, testbench=TESTBENCH):
    """Run ``jobs`` on the RTL of ``config`` and return one report dict per job.

    ``testbench`` names the cocotb module (a variant of :mod:`sim.testbenches.gemm`).
    ``work_dir`` keeps the simulator's files (requests, log); without it they go to a
    temporary directory, removed at the end, error or not.

    Each report has ``bit_exact``, ``timing_ok``, ``tiles``, ``cycles`` (accelerator
    busy cycles, from its CYCLES register), ``bus_cycles`` (all simulated cycles of the
    GEMM, host transfers included), ``mismatches`` and ``first_mismatch``.
    """
    jobs = list(jobs)
    for job in jobs:
        job.check(config)
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="softerror-verify-") as temporary:
            return verify_gemms(config, jobs, waves_file=waves_file, work_dir=temporary,
                                timeout=timeout, testbench=testbench)
    waves = None
    if waves_file is not None:
        waves = "vcd" if str(waves_file).endswith(".vcd") else "fst"
    build = build_design(config, waves=waves)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    request = {"design": vars(config),
               "gemms": [job.to_request(config, work_dir, i) for i, job in enumerate(jobs)]}
    if waves_file is not None:
        Path(waves_file).unlink(missing_ok=True)   # so that a waveform found is this run's
    response = run_testbench(build, testbench, request, work_dir, waves_file=waves_file,
                             timeout=timeout)
    if waves_file is not None and not Path(waves_file).is_file():
        raise SimulationError(f"the simulation wrote no waveform to {waves_file}")
    reports = response["gemms"]
    for report in reports:
        report.update(rows=config.rows, cols=config.cols, k_max=config.k_max)
    return reports
