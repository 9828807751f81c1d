"""Fault-injection campaigns on the RTL: plan, run in parallel, store, summarise.

A campaign injects single-event upsets into the accelerator's flip-flops while it runs a
workload (one GEMM). Experiments are planned deterministically from the seed
(:mod:`sim.campaign.plan`), those not yet in the database are cut into batches of one
tile each and run through a ``concurrent.futures`` executor -- a thread for one local
worker, a process pool for several, a Dask cluster when a scheduler address is given --
on long-lived simulators (:mod:`sim.campaign.worker`). Results are stored as each batch
completes, so a campaign can be killed and resumed at any point.

Tiles are independent: START clears the accumulators and restarts the controller, the
host rewrites K, and the only registers that survive a tile (the TILES counter) do not
feed the data path. An upset during one tile can therefore change only that tile's
output, and an experiment simulates that tile alone (a test holds this against runs of
whole multi-tile GEMMs).
"""

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from hw.config import AcceleratorConfig
from hw.netlist.fault_sites import FAULT_CLASSES
from sim import toolchain
from sim.build import build_design
from sim.campaign.outcomes import OUTCOMES
from sim.campaign.plan import exhaustive_plan, random_plan
from sim.campaign.statistics import leveugle_sample_size, margin_of_error, wilson_interval
from sim.campaign.store import CampaignDatabase, ExperimentRecord, RunRecord
from sim.campaign.worker import BatchTask, run_batch, start_session
from sim.campaign.workload import Workload
from sim.cli.table import format_table
from sim.harness import window_cycles
from sw.twin.protection import RangeBounds

__all__ = ["CampaignOptions", "run_campaign", "summarize", "format_summary",
           "prepare_campaign", "replay"]

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
        "design": asdict(config), "design_verilog_sha256": design_digest,
        "workload": asdict(workload), "seed": options.seed, "classes": list(classes),
        "exhaustive_cycle": options.exhaustive_cycle,
        "range_bounds": None if options.bounds is None else asdict(options.bounds),
    }
    description = {**identity, "tiles": tile_count, "window_cycles": window,
                   "versions": toolchain.versions()}
    return PreparedCampaign(options=options, sites=sites, control_sites=control_sites,
                            tile_count=tile_count,
                            window_cycles=window, injections=injections, identity=identity,
                            description=description)


def _batches(prepared, plan, workers):
    """Tasks of experiments from one tile each, sized so that every worker gets several."""
    site_paths = tuple(site.path for site in prepared.sites)
    control_paths = tuple(site.path for site in prepared.control_sites)
    tiles = plan.cycle // prepared.window_cycles
    offsets = plan.cycle % prepared.window_cycles
    size = int(np.clip(len(plan) // (workers * 8), 50, 2000))
    order = np.lexsort((plan.experiment, tiles))
    tasks = []
    for tile in np.unique(tiles):
        chosen = order[tiles[order] == tile]
        for start in range(0, len(chosen), size):
            part = chosen[start:start + size]
            experiments = tuple(zip(plan.experiment[part].tolist(), plan.site[part].tolist(),
                                    plan.bit[part].tolist(), offsets[part].tolist()))
            tasks.append(BatchTask(prepared.options.config, prepared.options.workload,
                                   prepared.options.bounds, site_paths, control_paths,
                                   int(tile), experiments))
    return tasks


def _records(prepared, task, results):
    """The :class:`ExperimentRecord` of a finished batch: output errors measured against
    the twin."""
    config = prepared.options.config
    tile = prepared.options.workload.tiles(config.rows, config.cols, task.bounds)[task.tile]
    expected = np.array(tile.expected, dtype=np.int64)[:tile.valid_rows, :tile.valid_cols]
    by_experiment = {experiment[0]: experiment for experiment in task.experiments}
    rows = []
    for experiment, outcome, done_cycles, observed_hex, latent in results:
        _, site, bit, cycle = by_experiment[experiment]
        wrong = max_error = faulty = None
        if observed_hex is not None:
            raw = int(observed_hex, 16).to_bytes(4 * config.rows * config.cols, "little")
            observed = np.frombuffer(raw, dtype="<i4").reshape(config.rows, config.cols)
            faulty = observed[:tile.valid_rows, :tile.valid_cols]
            error = np.abs(faulty.astype(np.int64) - expected)
            wrong, max_error = int(np.count_nonzero(error)), int(error.max())
        elif outcome != "hang":
            wrong, max_error = 0, 0
        rows.append(ExperimentRecord(experiment, site, bit, task.tile, cycle, outcome, wrong,
                                     max_error, done_cycles, bool(latent), faulty))
    return rows


def replay(options: CampaignOptions, upsets, *, waves_file=None):
    """Run chosen upsets ``(site path, bit, tile, cycle)`` of a campaign's workload.

    No database; returns one :class:`ExperimentRecord` per upset, numbered from 0, its
    ``site`` indexing all the design's sites. ``waves_file`` (``.vcd`` or ``.fst``) receives
    the waveform of the whole simulation: reset, then per tile a golden run and the upsets.
    """
    prepared = prepare_campaign(dataclasses.replace(options, classes=None))
    index = {site.path: number for number, site in enumerate(prepared.sites)}
    site_paths = tuple(site.path for site in prepared.sites)
    control_paths = tuple(site.path for site in prepared.control_sites)
    session = None
    if waves_file is not None:
        session = start_session(options.config, site_paths, control_paths, waves_file=waves_file)
    records = {}
    try:
        for tile in sorted({upset[2] for upset in upsets}):
            experiments = tuple((number, index[path], bit, cycle)
                                for number, (path, bit, upset_tile, cycle) in enumerate(upsets)
                                if upset_tile == tile)
            task = BatchTask(options.config, options.workload, options.bounds, site_paths,
                             control_paths, tile, experiments)
            for record in _records(prepared, task, run_batch(task, session)):
                records[record.experiment] = record
    finally:
        if session is not None:
            session.close()
    return [records[number] for number in range(len(upsets))]


def _executor(workers, scheduler):
    if scheduler is not None:
        from distributed import Client
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as error:
            raise ValueError(f"--scheduler: cannot reach {scheduler!r}: {error}") from None
        return client.get_executor(), client.close, f"dask {scheduler}"
    if workers == 1:
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        return executor, lambda: None, "1 local"
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    return executor, lambda: None, f"{workers} local"


def run_campaign(options: CampaignOptions, db_path, *, workers=1, scheduler=None,
                 progress=False):
    """Run (or resume, or extend) a campaign into ``db_path``; return its summary."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    prepared = prepare_campaign(options)
    database = CampaignDatabase(db_path)
    try:
        campaign_id = database.campaign(prepared.identity, prepared.description,
                                        prepared.sites, prepared.injections)
        done = database.done_experiments(campaign_id)
        pending = np.setdiff1d(np.arange(prepared.injections, dtype=np.int64), done)
        ran, seconds = 0, 0.0
        if len(pending):
            bar = _progress_bar(progress, prepared.injections, prepared.injections - len(pending))
            executor, shutdown, label = _executor(workers, scheduler)
            started = time.time()
            clock = time.perf_counter()
            try:
                ran = _execute(executor, _batches(prepared, prepared.plan(pending), workers),
                               prepared, database, campaign_id, bar, workers)
            finally:
                executor.shutdown(wait=True)
                shutdown()
                if bar is not None:
                    bar.close()
            seconds = time.perf_counter() - clock
            database.record_run(campaign_id, RunRecord(started, seconds, ran, label))
        return summarize(database, campaign_id)
    finally:
        database.close()


def _execute(executor, tasks, prepared, database, campaign_id, bar, workers):
    """Keep a few batches per worker in flight; store each as it completes."""
    queue = list(reversed(tasks))
    in_flight = {}
    ran = 0
    try:
        while queue or in_flight:
            while queue and len(in_flight) < 2 * workers:
                task = queue.pop()
                in_flight[executor.submit(run_batch, task)] = task
            finished, _ = concurrent.futures.wait(in_flight, return_when="FIRST_COMPLETED")
            for future in finished:
                task = in_flight.pop(future)
                database.insert_results(campaign_id, _records(prepared, task, future.result()))
                ran += len(task.experiments)
                if bar is not None:
                    bar.update(len(task.experiments))
    finally:
        for future in in_flight:
            future.cancel()
    return ran


def _progress_bar(enabled, total, initial):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="inj", desc="injections", file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def summarize(database, campaign_id):
    """The campaign's results as one JSON-ready dict (see ``softerror campaign --json``)."""
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
        "injections_per_second": (run.experiments / run.seconds
                                  if run and run.seconds > 0 else None),
        "last_run": None if run is None else asdict(run),
    }


def _rate_cell(entry):
    low, high = entry["ci95"]
    return f"{100 * entry['rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _protection_label(design, bounds):
    parts = []
    if design.get("abft", "none") != "none":
        parts.append(f"abft={design['abft']}")
    if design.get("range_check"):
        parts.append(f"range [{bounds['lower']}, {bounds['upper']}]"
                     f"{' zero' if bounds['zero'] else ''}")
    return f" ({', '.join(parts)})" if parts else ""


def format_summary(summary):
    """The summary table and the statistical notes, for a terminal."""
    campaign = summary["campaign"]
    design, workload = campaign["design"], campaign["workload"]
    shown = [o for o in OUTCOMES if o in ("masked", "sdc", "hang") or summary["outcomes"][o]]
    rows = []
    for name, rates in summary["rates"].items():
        counts = summary["outcomes"] if name == "all" else summary["per_class"][name]
        bits = sum(summary["bits"].values()) if name == "all" else summary["bits"][name]
        rows.append([name, bits, sum(counts.values()), *(_rate_cell(rates[o]) for o in shown)])
    mode = ("exhaustive at cycle " + str(campaign["exhaustive_cycle"])
            if campaign["exhaustive_cycle"] is not None else "uniform over bits x cycles")
    leveugle = summary["leveugle"]
    lines = [
        f"Campaign {summary['campaign_id']}: {design['rows']}x{design['cols']} array"
        f"{_protection_label(design, campaign.get('range_bounds'))}, "
        f"GEMM {workload['m']}x{workload['k']}x{workload['n']} ({campaign['tiles']} "
        f"tile{'s' if campaign['tiles'] != 1 else ''} of {campaign['window_cycles']} cycles), "
        f"seed {campaign['seed']}, {mode}",
        format_table(["class", "bits", "injections", *shown], rows),
        f"Rates with 95% Wilson intervals. Population {summary['population']:,} "
        f"(bit, cycle) pairs; Leveugle et al. (DATE 2009) ask for "
        f"{leveugle['required_injections']:,} injections for a ±{100 * leveugle['margin']:.0f}% "
        f"margin at 95% confidence; these {summary['injections']:,} give "
        f"±{100 * leveugle['achieved_margin']:.2f}%.",
    ]
    design = summary["campaign"]["design"]
    if design.get("abft", "none") != "none" or design.get("range_check"):
        rows = [[name, entry["corrupting"], entry["caught"],
                 "-" if entry["coverage"] is None else
                 f"{100 * entry['coverage']:.1f}% [{100 * entry['coverage_ci95'][0]:.1f}, "
                 f"{100 * entry['coverage_ci95'][1]:.1f}]",
                 f"{100 * entry['false_alarm_rate']:.2f}%"]
                for name, entry in summary["coverage"].items()]
        lines += ["Protection: of the upsets that corrupted the output (corrected + detected + "
                  "sdc), the share caught (corrected + detected), and the false alarms:",
                  format_table(["class", "corrupting", "caught", "coverage", "false alarms"],
                               rows)]
    if summary["latent"]:
        lines.append(f"{summary['latent']:,} upsets left the control state different from the "
                     "golden run's at the end of their tile (latent: later tiles may differ).")
    if summary["last_run"]:
        run = summary["last_run"]
        lines.append(f"Last run: {run['experiments']:,} injections in {run['seconds']:.1f} s "
                     f"({summary['injections_per_second']:,.0f}/s, workers: {run['workers']}).")
    return "\n".join(lines)
