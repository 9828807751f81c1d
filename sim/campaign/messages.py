"""What crosses a process boundary during a campaign: typed messages, not lists or dicts.

The engine ships a :class:`BatchTask` to a worker (a thread, a local process or a Dask
worker, which pickle it), the worker forwards it to its simulator over a pipe (pickled
too: both ends are this package) and gets a :class:`BatchResult` back. A batch carries
its tile's operands and expected output, so a worker never regenerates them.

A nonlinear unit's campaign (:mod:`sim.nonlinear_campaign`) talks to its own testbench
(:mod:`sim.testbenches.unit_campaign`) with the ``Unit*`` messages: a
:class:`UnitSessionSetup`, answered by :class:`UnitSessionReady`, then tuples of
:class:`UnitExperiment`, answered by tuples of :class:`UnitRun`. A model campaign on the
units (:mod:`sim.cosim.unit_engine`) sends a :class:`UnitRowSetup` instead, then tuples of
:class:`UnitRowTask` (the rows the model feeds the units, each with its parameters),
answered by tuples of :class:`UnitRowResult`.
"""

from dataclasses import dataclass

from hw.config import AcceleratorConfig
from sim.campaign.workload import TileData

__all__ = ["Experiment", "BatchTask", "SessionSetup", "SessionReady", "ExperimentResult",
           "BatchResult", "UnitExperiment", "UnitSessionSetup", "UnitRun", "UnitSessionReady",
           "UnitRowSetup", "UnitRowTask", "UnitRowResult"]


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

    ``golden_on_demand``: a newly loaded tile gets its golden run only when an experiment
    does not itself read back the twin's tile, without an alarm, at the clean DONE cycle
    (a model campaign's tiles carry one experiment each; its records have no latent flag,
    which needs the golden run's control registers first).
    """
    config: AcceleratorConfig
    site_paths: tuple[str, ...]
    control_paths: tuple[str, ...]
    tile: TileData
    watchdog_cycles: int
    experiments: tuple[Experiment, ...]
    golden_on_demand: bool = False


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
    """The results of one :class:`BatchTask`, in its order, and what it cost the simulator."""
    results: tuple[ExperimentResult, ...]
    seconds: float
    """Wall-clock seconds, the tile's loads and golden run included."""
    cycles: int = 0
    """Clock cycles simulated, the tile's loads and golden run included."""


@dataclass(frozen=True)
class UnitExperiment:
    """One upset in a nonlinear unit's row: bit ``bit`` of site ``site`` (an index into
    the campaign's sites) flipped after the ``cycle``-th edge of row ``row`` (the edge
    that samples START is the first: the cycle of ``SoftmaxUnit.stage_cycle``)."""
    experiment: int
    row: int
    site: int
    bit: int
    cycle: int


@dataclass(frozen=True)
class UnitSessionSetup:
    """The first message to a unit campaign's simulator: the design, the unit's parameters
    (CSR values by port name) and per-channel tables (LayerNorm's gains and offsets), the
    registers it upsets and the workload's rows, with each row's latency and watchdog
    (edges after START, the START edge included)."""
    config: AcceleratorConfig
    unit: str
    csrs: dict
    tables: dict
    site_paths: tuple[str, ...]
    rows: tuple[tuple[int, ...], ...]
    latency: tuple[int, ...]
    watchdog: tuple[int, ...]


@dataclass(frozen=True)
class UnitRun:
    """What the host read after one row: the STATUS word and the row's int8 codes.

    ``done_cycles``: the edges from START to DONE when they were counted (the golden
    runs poll every cycle); an experiment polls at the latency, then at the watchdog:
    its ``done_cycles`` is the latency, the watchdog (``late``: DONE came in between)
    or ``None`` (no DONE by the watchdog: a hang, whose codes are what the ROW window
    held then).
    """
    experiment: int
    status: int
    codes: tuple[int, ...]
    done_cycles: int | None
    late: bool = False


@dataclass(frozen=True)
class UnitSessionReady:
    """The answer to :class:`UnitSessionSetup`: each row's golden run (no upset)."""
    golden: tuple[UnitRun, ...]


@dataclass(frozen=True)
class UnitRowSetup:
    """The first message of a model campaign on the units: the design (with its units)
    and the registers it upsets (the experiments' ``site`` indices into ``site_paths``)."""
    config: AcceleratorConfig
    site_paths: tuple[str, ...]


@dataclass(frozen=True)
class UnitRowTask:
    """One row a model feeds ``unit``, with the unit's parameters (CSR values by port name
    and per-channel tables), its latency and watchdog, and the upsets to run on it (their
    ``row`` is 0)."""
    unit: str
    csrs: dict
    tables: dict
    row: tuple[int, ...]
    latency: int
    watchdog: int
    experiments: tuple[UnitExperiment, ...]
    expected: tuple[int, ...] | None = None
    """The codes the row gives without an upset: an upset run that reads them back at the
    latency with no checker flag stands for the run without an upset (else, and without
    ``expected``, that run comes after the upsets)."""


@dataclass(frozen=True)
class UnitRowResult:
    """The answer to a :class:`UnitRowTask`: the row without an upset (run and read as an
    experiment is, or the upset run that stood for it) and one :class:`UnitRun` per
    experiment, in order."""
    golden: UnitRun
    runs: tuple[UnitRun, ...]
