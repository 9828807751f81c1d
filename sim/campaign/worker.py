"""The worker side of a campaign: batches of experiments on a long-lived simulator.

A :class:`BatchTask` is what an executor ships to a worker (a local process, a thread, a
Dask worker). :func:`run_batch` finds (or builds, through the build cache) the model,
keeps one simulator session per thread and configuration alive across batches, and
returns the raw verdicts. Only picklable, small values cross the executor.
"""

import atexit
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from hw.config import AcceleratorConfig
from sim.build import build_design
from sim.campaign.workload import Workload
from sim.simulator import SimulatorSession

__all__ = ["BatchTask", "run_batch", "start_session", "close_sessions"]

TESTBENCH = "sim.testbenches.campaign"

_local = threading.local()
_all_sessions = []
_all_sessions_lock = threading.Lock()


@dataclass(frozen=True)
class BatchTask:
    """Experiments ``[experiment, site, bit, cycle]`` that all fall in one tile.

    ``bounds`` programs the range checker (``None`` without one).
    ``site_paths`` are the campaign's sites (``site`` indexes them); ``control_paths``
    are the design's control registers, compared with the golden run to flag latent
    upsets.
    """
    config: AcceleratorConfig
    workload: Workload
    bounds: object
    site_paths: tuple
    control_paths: tuple
    tile: int
    experiments: tuple


def _session(config, site_paths, control_paths):
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    key = (config, site_paths, control_paths)
    if key not in sessions:
        session = start_session(config, site_paths, control_paths)
        sessions[key] = session
        with _all_sessions_lock:
            _all_sessions.append(session)
    return sessions[key]


def start_session(config, site_paths, control_paths, *, waves_file=None):
    """A simulator ready to run experiments on these sites (the caller closes it);
    ``waves_file`` (``.vcd`` or ``.fst``): on a tracing build, writing its waveform there."""
    waves = None if waves_file is None else Path(waves_file).suffix[1:]
    build = build_design(config, waves=waves)
    work_dir = tempfile.mkdtemp(prefix="softerror-campaign-")
    session = SimulatorSession(build, TESTBENCH, work_dir, waves_file=waves_file)
    session.request({"design": vars(config), "sites": list(site_paths),
                     "control_sites": list(control_paths)})
    return session


def run_batch(task: BatchTask, session=None):
    """Run the task's experiments, on ``session`` if given (else on this thread's own).

    Returns ``[experiment, outcome, done_cycles, observed tile (hex) or None, latent]``.
    """
    session = session or _session(task.config, task.site_paths, task.control_paths)
    tile = task.workload.tiles(task.config.rows, task.config.cols, task.bounds)[task.tile]
    response = session.request({"tile": tile.message(), "experiments": list(task.experiments)})
    return response["results"]


@atexit.register
def close_sessions():
    """End every simulator this process started."""
    with _all_sessions_lock:
        while _all_sessions:
            _all_sessions.pop().close()
    if hasattr(_local, "sessions"):
        _local.sessions.clear()
