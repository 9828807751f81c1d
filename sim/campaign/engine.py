"""Fault-injection campaigns on the RTL: plan, run in parallel, store, summarise.

A campaign injects single-event upsets into the accelerator's flip-flops while it runs a
workload (one GEMM). Experiments are planned deterministically from the seed
(:mod:`sim.campaign.plan`), those not yet in the database are cut into batches of one
tile each (:class:`~sim.campaign.messages.BatchTask`, which carries the tile's operands)
and run through a ``concurrent.futures`` executor -- the calling thread for one local
worker, a process pool for several, a Dask cluster when a scheduler address is given --
on long-lived simulators (:mod:`sim.campaign.worker`). Results are stored as each batch
completes, so a campaign can be killed and resumed at any point: an interrupted run
(Ctrl-C, SIGTERM, an error, a lost scheduler) stops its workers and simulators and keeps
what it stored. The engine returns data; :mod:`sim.cli.campaign_tables` formats it.

Tiles are independent: START clears the accumulators and restarts the controller, the
host rewrites K, and the only registers that survive a tile (the TILES counter) do not
feed the data path. An upset during one tile can therefore change only that tile's
output, and an experiment simulates that tile alone (a test holds this against runs of
whole multi-tile GEMMs).
"""

import dataclasses
import hashlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from hw.config import AcceleratorConfig
from hw.netlist.fault_sites import FAULT_CLASSES
from sim import toolchain
from sim.build import build_design
from sim.campaign.executors import (
    CampaignError,
    check_executor_options,
    execute,
    open_executor,
)
from sim.campaign.messages import BatchTask, Experiment
from sim.campaign.outcomes import OUTCOMES, step_width, watchdog_cycles
from sim.campaign.plan import ExperimentPlan, exhaustive_plan, random_plan
from sim.campaign.statistics import (
    leveugle_sample_size,
    margin_of_error,
    wilson_interval,
)
from sim.campaign.store import CampaignDatabase, ExperimentRecord, RunRecord
from sim.campaign.worker import close_sessions, run_batch, start_session
from sim.campaign.workload import Workload
from sim.harness import window_cycles
from sw.twin.protection import RangeBounds

__all__ = ["CampaignOptions", "CampaignError", "ExperimentRecord", "run_campaign",
           "summarize", "prepare_campaign", "replay", "check_executor_options"]

#: Margin the summary quotes Leveugle et al.'s sample size for.
REPORT_MARGIN = 0.01
@dataclass(frozen=True)
class CampaignOptions:
    """Everything that decides a campaign's experiments, plus how many to run.

    ``classes`` selects site classes (``None``: all). ``exhaustive_cycle``, when given,
    replaces random sampling by one experiment per selected bit, all at that workload
    cycle; ``injections`` is then ignored. ``range_bounds`` programs the range checker of
    a design that has one (default: the int32 limits, which clamp nothing).
    """
    config: AcceleratorConfig
    workload: Workload
    seed: int = 0
    injections: int = 1000
    classes: tuple | None = None
    exhaustive_cycle: int | None = None
    range_bounds: RangeBounds | None = None

    @property
    def bounds(self):
        """The range checker's bounds, or ``None`` without a range checker."""
        if not self.config.range_check:
            return None
        return self.range_bounds or RangeBounds()


@dataclass
class PreparedCampaign:
    options: CampaignOptions
    sites: list
    control_sites: list
    tile_count: int
    window_cycles: int
    watchdog_cycles: int
    injections: int
    identity: dict = field(repr=False)
    description: dict = field(repr=False)

    @property
    def workload_cycles(self):
        return self.tile_count * self.window_cycles

    def plan(self, indices):
        widths = [site.width for site in self.sites]
        if self.options.exhaustive_cycle is None:
            return random_plan(self.options.seed, widths, self.workload_cycles, indices)
        return exhaustive_plan(widths, self.options.exhaustive_cycle, indices)


def prepare_campaign(options: CampaignOptions):
    """Build the model, select the sites, size the workload; raise ``ValueError`` on bad
    options, naming the option and the value."""
    config, workload = options.config, options.workload
    if options.range_bounds is not None and not config.range_check:
        raise ValueError("range bounds need a design with a range checker (--range-check)")
    if workload.k > config.k_max:
        raise ValueError(f"--k must be at most --k-max ({config.k_max}), not {workload.k}")
    build = build_design(config)
    all_sites = build.fault_sites()
    present = sorted({site.fault_class for site in all_sites}, key=FAULT_CLASSES.index)
    classes = tuple(present) if options.classes is None else options.classes
    for fault_class in classes:
        if fault_class not in FAULT_CLASSES:
            raise ValueError(f"--sites: unknown class {fault_class!r} (classes: "
                             f"{', '.join(FAULT_CLASSES)})")
        if fault_class not in present:
            raise ValueError(f"--sites: this design has no {fault_class!r} sites (it has: "
                             f"{', '.join(present)})")
    sites = [site for site in all_sites if site.fault_class in classes]
    control_sites = [site for site in all_sites if site.fault_class == "control"]
    tile_count = workload.tile_count(config.rows, config.cols)
    window = window_cycles(config, workload.k)
    tile_cycles = config.tile_cycles(workload.k)
    watchdog = watchdog_cycles(tile_cycles, step_width(all_sites))
    if options.exhaustive_cycle is None:
        if options.injections < 1:
            raise ValueError(f"--injections must be at least 1, not {options.injections}")
        injections = options.injections
    else:
        cycle = options.exhaustive_cycle
        if not 0 <= cycle < tile_count * window:
            raise ValueError(f"--exhaustive-cycle must be from 0 to {tile_count * window - 1} "
                             f"(the workload's cycles), not {cycle}")
        injections = sum(site.width for site in sites)
    if options.bounds is not None:
        for tile in workload.tiles(config.rows, config.cols):
            values = np.array(tile.expected)[:tile.valid_rows, :tile.valid_cols]
            if values.min() < options.bounds.lower or values.max() > options.bounds.upper:
                raise ValueError(
                    f"--range-lower/--range-upper [{options.bounds.lower}, "
                    f"{options.bounds.upper}] clamp the clean output of tile {tile.index} "
                    f"(from {values.min()} to {values.max()}): every experiment would raise "
                    "the alarm; widen the bounds")
    design_digest = hashlib.sha256((build.directory / "design.v").read_bytes()).hexdigest()
    identity = {
        "design": config.fields, "design_verilog_sha256": design_digest,
        "workload": asdict(workload), "seed": options.seed, "classes": list(classes),
        "exhaustive_cycle": options.exhaustive_cycle,
        "range_bounds": None if options.bounds is None else asdict(options.bounds),
        "watchdog_cycles": watchdog,
    }
    description = {**identity, "tiles": tile_count, "window_cycles": window,
                   "tile_cycles": tile_cycles, "versions": toolchain.versions()}
    return PreparedCampaign(options=options, sites=sites, control_sites=control_sites,
                            tile_count=tile_count, window_cycles=window, watchdog_cycles=watchdog,
                            injections=injections, identity=identity, description=description)


def _batches(prepared, plan, workers):
    """Tasks of experiments from one tile each, sized so that every worker gets several."""
    options = prepared.options
    tiles = options.workload.tiles(options.config.rows, options.config.cols, options.bounds)
    site_paths = tuple(site.path for site in prepared.sites)
    control_paths = tuple(site.path for site in prepared.control_sites)
    tile_of = plan.cycle // prepared.window_cycles
    offsets = plan.cycle % prepared.window_cycles
    size = int(np.clip(len(plan) // (workers * 8), 50, 2000))
    order = np.lexsort((plan.experiment, tile_of))
    tasks = []
    for tile in np.unique(tile_of):
        chosen = order[tile_of[order] == tile]
        for start in range(0, len(chosen), size):
            part = chosen[start:start + size]
            experiments = tuple(map(Experiment, plan.experiment[part].tolist(),
                                    plan.site[part].tolist(), plan.bit[part].tolist(),
                                    offsets[part].tolist()))
            tasks.append(BatchTask(options.config, site_paths, control_paths, tiles[tile],
                                   prepared.watchdog_cycles, experiments))
    return tasks


def _records(task, batch):
    """What to store of a finished batch: output errors measured against the twin."""
    tile = task.tile
    expected = np.array(tile.expected, dtype=np.int64)[:tile.valid_rows, :tile.valid_cols]
    records = []
    for experiment, result in zip(task.experiments, batch.results, strict=True):
        if result.experiment != experiment.experiment:
            raise RuntimeError(f"The simulator answered experiment {result.experiment} for "
                               f"{experiment.experiment}")
        wrong = max_error = faulty = None
        if result.observed is not None:
            observed = np.frombuffer(result.observed, dtype="<i4").reshape(
                task.config.rows, task.config.cols)
            faulty = observed[:tile.valid_rows, :tile.valid_cols]
            error = np.abs(faulty.astype(np.int64) - expected)
            wrong, max_error = int(np.count_nonzero(error)), int(error.max())
        elif result.outcome != "hang":
            wrong, max_error = 0, 0
        records.append(ExperimentRecord(
            experiment=experiment.experiment, site=experiment.site, bit=experiment.bit,
            tile=tile.index, cycle=experiment.cycle, outcome=result.outcome,
            wrong_elements=wrong, max_abs_error=max_error, done_cycles=result.done_cycles,
            latent=result.latent, faulty_tile=faulty))
    return records


def replay(options: CampaignOptions, upsets, *, waves_file=None):
    """Run chosen upsets ``(site path, bit, tile, cycle)`` of a campaign's workload.

    No database; returns one :class:`ExperimentRecord` per upset, in order (``site``
    indexes the design's sites, all classes). ``waves_file`` (``.vcd`` or ``.fst``)
    receives the waveform of the whole simulation: reset, then per tile a golden run and
    the upsets.
    """
    prepared = prepare_campaign(dataclasses.replace(options, classes=None))
    index = {site.path: number for number, site in enumerate(prepared.sites)}
    for path, bit, tile, cycle in upsets:
        if not 0 <= cycle < prepared.window_cycles or not 0 <= tile < prepared.tile_count:
            raise ValueError(f"upset {(path, bit, tile, cycle)!r}: the workload has tiles 0 to "
                             f"{prepared.tile_count - 1} of {prepared.window_cycles} cycles")
    plan = ExperimentPlan(
        experiment=np.arange(len(upsets)), site=np.array([index[u[0]] for u in upsets]),
        bit=np.array([u[1] for u in upsets]),
        cycle=np.array([u[2] * prepared.window_cycles + u[3] for u in upsets]))
    session = None
    if waves_file is not None:
        session = start_session(options.config, tuple(site.path for site in prepared.sites),
                                tuple(site.path for site in prepared.control_sites),
                                waves_file=waves_file)
    records = {}
    try:
        for task in _batches(prepared, plan, workers=1):
            records.update((record.experiment, record)
                           for record in _records(task, run_batch(task, session)))
    finally:
        if session is not None:
            session.close()
        close_sessions()
    return [records[number] for number in range(len(upsets))]


def run_campaign(options: CampaignOptions, db_path, *, workers=None, scheduler=None,
                 scheduler_timeout=60.0, progress=None):
    """Run (or resume, or extend) a campaign into ``db_path``; return its summary.

    ``workers`` local processes (default one, in this thread), or the workers of the Dask
    cluster whose ``scheduler`` address is given (waiting up to ``scheduler_timeout``
    seconds for one to join). ``progress(done, total)`` is called as experiments complete.
    Raises ``TypeError``/``ValueError`` for bad options before anything is written,
    :class:`CampaignError` when the cluster fails; stored results are kept in every case.
    """
    check_executor_options(workers, scheduler, scheduler_timeout)
    prepared = prepare_campaign(options)     # every option checked before the database
    database = CampaignDatabase(db_path)
    try:
        campaign_id = database.campaign(prepared.identity, prepared.description,
                                        prepared.sites, prepared.injections)
        done = database.done_experiments(campaign_id)
        pending = np.setdiff1d(np.arange(prepared.injections, dtype=np.int64), done)
        if len(pending):
            cluster, label = open_executor(workers, scheduler, scheduler_timeout)
            started, clock = time.time(), time.perf_counter()
            with cluster as (executor, check_workers):
                tasks = _batches(prepared, prepared.plan(pending), workers or 1)

                def store(task, batch):
                    database.insert_results(campaign_id, _records(task, batch))
                    return len(task.experiments)

                ran = execute(executor, tasks, run_batch, store, workers=workers or 1,
                              check_workers=check_workers, progress=progress,
                              done=prepared.injections - len(pending),
                              total=prepared.injections)
            database.record_run(campaign_id, RunRecord(started, time.perf_counter() - clock, ran,
                                                       label))
        return summarize(database, campaign_id)
    finally:
        database.close()


def summarize(database, campaign_id):
    """The campaign's results as one JSON-ready dict (see ``softerror campaign --json``).

    ``late`` counts the runs that finished after a clean tile's ``tile_cycles`` (counted
    by their outputs, not as hangs) and the latest DONE among them; ``None`` for a
    campaign stored before the watchdog bound was recorded.
    """
    stored = database.stored_campaign(campaign_id)
    description = {**stored.description, "injections": stored.injections}
    per_class = database.counts(campaign_id)
    bits = database.bits_per_class(campaign_id)
    outcomes = {outcome: sum(per_class[c][outcome] for c in per_class) for outcome in OUTCOMES}
    injections = sum(outcomes.values())
    rates, coverage = {}, {}
    for name, counts in [*per_class.items(), ("all", outcomes)]:
        total = sum(counts.values())
        if not total:
            continue
        rates[name] = {outcome: {"rate": count / total,
                                 "ci95": list(wilson_interval(count, total))}
                       for outcome, count in counts.items()}
        caught = counts["corrected"] + counts["detected"]
        corrupting = caught + counts["sdc"]
        coverage[name] = {
            "caught": caught, "corrupting": corrupting,
            "coverage": caught / corrupting if corrupting else None,
            "coverage_ci95": list(wilson_interval(caught, corrupting)),
            "false_alarm_rate": counts["false_alarm"] / total,
            "false_alarm_ci95": list(wilson_interval(counts["false_alarm"], total)),
        }
    population = sum(bits.values()) * description["tiles"] * description["window_cycles"]
    if description["exhaustive_cycle"] is not None:
        population = sum(bits.values())
    run = database.last_run(campaign_id)
    late = None
    if "tile_cycles" in description:
        count, latest = database.late_runs(campaign_id, description["tile_cycles"])
        late = {"count": count, "latest_done_cycles": latest,
                "tile_cycles": description["tile_cycles"],
                "watchdog_cycles": description["watchdog_cycles"]}
    return {
        "campaign_id": campaign_id,
        "campaign": description,
        "injections": injections,
        "outcomes": outcomes,
        "per_class": per_class,
        "rates": rates,
        "coverage": coverage,
        "bits": bits,
        "population": population,
        "leveugle": {
            "margin": REPORT_MARGIN, "confidence": 0.95,
            "required_injections": leveugle_sample_size(population, REPORT_MARGIN),
            "achieved_margin": margin_of_error(injections, population),
        },
        "latent": database.latent_count(campaign_id),
        "late": late,
        "injections_per_second": (run.experiments / run.seconds
                                  if run and run.seconds > 0 else None),
        "last_run": None if run is None else asdict(run),
    }
