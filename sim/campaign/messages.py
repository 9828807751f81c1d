"""What crosses a process boundary during a campaign: typed messages, not lists or dicts.

The engine ships a :class:`BatchTask` to a worker (a thread, a local process or a Dask
worker, which pickle it), the worker forwards it to its simulator over a pipe (pickled
too: both ends are this package) and gets a :class:`BatchResult` back. A batch carries
its tile's operands and expected output, so a worker never regenerates them.
"""

from dataclasses import dataclass

from hw.config import AcceleratorConfig
from sim.campaign.workload import TileData

__all__ = ["Experiment", "BatchTask", "SessionSetup", "SessionReady", "ExperimentResult",
           "BatchResult"]


@dataclass(frozen=True)
class Experiment:
    """One upset: bit ``bit`` of site ``site`` (an index into the campaign's sites),
    flipped ``cycle`` cycles into its tile's injection window."""
    experiment: int
    site: int
    bit: int
    cycle: int


@dataclass(frozen=True)
class BatchTask:
    """Experiments that all fall in one tile, with everything a worker needs to run them.

    ``site_paths`` are the campaign's sites; ``control_paths`` the design's control
    registers, compared with the golden run's to flag latent upsets. ``watchdog_cycles``
    is how long after START the harness waits for DONE before it calls a run a hang
    (:func:`sim.campaign.outcomes.watchdog_cycles`).
    """
    config: AcceleratorConfig
    site_paths: tuple[str, ...]
    control_paths: tuple[str, ...]
    tile: TileData
    watchdog_cycles: int
    experiments: tuple[Experiment, ...]


@dataclass(frozen=True)
class SessionSetup:
    """The first message to a campaign simulator: the design and the registers it upsets."""
    config: AcceleratorConfig
    site_paths: tuple[str, ...]
    control_paths: tuple[str, ...]


@dataclass(frozen=True)
class SessionReady:
    """The simulator's answer to :class:`SessionSetup`: handles found, design reset."""


@dataclass(frozen=True)
class ExperimentResult:
    """What the simulator observed in one experiment.

    ``done_cycles``: cycles from START to DONE, ``None`` when DONE never came (a hang).
    ``observed``: the output tile the host read, only when it was wrong: rows x cols
    int32 values, little-endian, row by row (as the harness holds them).
    ``latent``: the control registers differed from the golden run's at the end.
    ``status``: the STATUS word the host read after the tile (0 after a hang).
    """
    experiment: int
    outcome: str
    done_cycles: int | None
    observed: bytes | None
    latent: bool
    status: int = 0


@dataclass(frozen=True)
class BatchResult:
    """The results of one :class:`BatchTask`, in its order, and the simulator's time."""
    results: tuple[ExperimentResult, ...]
    seconds: float
