"""Running a model-level campaign into the campaign database, resumably, and summarising it.

The campaign's identity is everything that decides its experiments (the design, model,
data set, images, seed, modules, site classes and engine), not the number of injections:
re-running resumes it, a larger ``injections`` extends it. Chunks of experiments run on the
executors tile campaigns use (:mod:`sim.campaign.executors`: this thread, local worker
processes or a Dask cluster), each worker preparing the campaign once; results are
committed one chunk per transaction, so a killed run loses at most the chunks in flight.
"""

import dataclasses
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import torch

from sim.campaign.executors import check_executor_options, execute, open_executor
from sim.campaign.statistics import wilson_interval
from sim.campaign.store import CampaignDatabase, RunRecord
from hw.config import NONLINEAR_UNITS
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions
from sim.cosim.unit_engine import UnitModelCampaign
from sim.cosim.record import MODEL_OUTCOMES

__all__ = ["run_model_campaign", "summarize_model_campaign", "run_chunk", "ModelChunk",
           "CHUNK"]

#: Experiments per chunk: drawn, struck, carried through the model and committed together.
CHUNK = 512

#: This process's prepared campaigns (a worker prepares each campaign once).
_prepared = {}


@dataclass(frozen=True)
class ModelChunk:
    """What a worker needs to run some experiments of a model campaign."""
    options: ModelCampaignOptions
    experiments: tuple

    def __len__(self):
        return len(self.experiments)


def _campaign(options):
    if options not in _prepared:
        _prepared.clear()
        units = options.classes and any(c in NONLINEAR_UNITS for c in options.classes)
        _prepared[options] = (UnitModelCampaign if units else ModelCampaign).prepare(options)
    return _prepared[options]


def run_chunk(chunk: ModelChunk):
    """The :class:`~sim.cosim.record.ModelRecord` s of a chunk (in the worker, one torch
    thread: the workers share the machine's cores)."""
    torch.set_num_threads(1)
    return _campaign(chunk.options).run(list(chunk.experiments))


def identity_of(options):
    """What decides a model campaign's experiments and records."""
    fields = dataclasses.asdict(options)
    fields["config"] = options.config.fields
    if fields["operation_level"]:
        # Campaigns older than the option always ran the operation-level model: they keep
        # their identity (and resume).
        del fields["operation_level"]
    return {"kind": "model", **fields}


def run_model_campaign(options, injections, db_path, *, workers=None, scheduler=None,
                       scheduler_timeout=60.0, progress=False):
    """Run experiments ``0 .. injections - 1`` not yet stored; return the summary.

    ``workers`` local processes (default one, in this thread) or the workers of the Dask
    cluster at ``scheduler``, as for tile campaigns.
    """
    check_executor_options(workers, scheduler, scheduler_timeout)
    campaign = _campaign(options)     # every option checked before the database
    identity = identity_of(options)
    description = {**identity, **campaign.description()}
    database = CampaignDatabase(db_path)
    try:
        campaign_id = database.campaign(identity, description, campaign.sites, injections)
        done = set(database.done_model_experiments(campaign_id).tolist())
        todo = [number for number in range(injections) if number not in done]
        if not todo:
            return summarize_model_campaign(database, campaign_id)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=injections, initial=injections - len(todo), unit="upset",
                       desc="model campaign")
        cluster, label = open_executor(workers, scheduler, scheduler_timeout)
        chunk_size = CHUNK if workers in (None, 1) and scheduler is None else CHUNK // 4
        chunks = [ModelChunk(options, tuple(todo[start:start + chunk_size]))
                  for start in range(0, len(todo), chunk_size)]

        def store(chunk, records):
            database.insert_model_results(campaign_id, records)
            return len(chunk)

        started, begin = time.time(), time.perf_counter()
        previous_threads = torch.get_num_threads()
        ran = 0
        try:
            with cluster as (executor, check_workers):
                ran = execute(executor, chunks, run_chunk, store, workers=workers or 1,
                              check_workers=check_workers,
                              progress=None if bar is None else
                              lambda done, total: bar.update(done - bar.n))
        finally:
            torch.set_num_threads(previous_threads)
            if bar is not None:
                bar.close()
            database.record_run(campaign_id, RunRecord(
                started, time.perf_counter() - begin, ran, f"{options.engine}, {label}"))
        return summarize_model_campaign(database, campaign_id)
    finally:
        database.close()


def _rate(count, total):
    low, high = wilson_interval(count, total)
    return {"count": count, "rate": count / total if total else 0.0, "low": low, "high": high}


def _mean(values):
    """Mean of ``values`` with a 95% normal interval (the samples are independent draws)."""
    values = torch.tensor(values, dtype=torch.float64)
    mean = float(values.mean())
    half = 1.96 * float(values.std()) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": mean, "low": mean - half, "high": mean + half}


def exposure(description):
    """Per module, the flip-flop bits struck and the cycles they work per inference, and
    their product (bit-cycles): what a uniform upset rate per bit and cycle turns into
    upsets per inference, so ``sdc rate x bit_cycles`` compares modules of different size
    and duration."""
    if "units" in description:
        parts = {unit: (entry["bits"], entry["cycles"])
                 for unit, entry in description["units"].items()}
    else:
        parts = {module: (description["bits"], cycles)
                 for module, cycles in description.get("module_cycles", {}).items()}
    return {module: {"bits": bits, "cycles": cycles, "bit_cycles": bits * cycles}
            for module, (bits, cycles) in sorted(parts.items())}


def summarize_model_campaign(database, campaign_id):
    """The campaign's numbers, as ``softerror vit campaign --json`` prints them."""
    stored = database.stored_campaign(campaign_id)
    records = database.model_records(campaign_id)
    run = database.last_run(campaign_id)
    total = len(records)
    outcomes = Counter(record.outcome for record in records)
    per_module, per_class, per_pe = (defaultdict(Counter) for _ in range(3))
    operation_sdc, operation_runs = Counter(), Counter()
    margin_losses = defaultdict(list)
    for record in records:
        per_module[record.module][record.outcome] += 1
        margin_losses[record.module].append(max(0.0, -record.margin_change))
        per_class[record.fault_class][record.outcome] += 1
        if record.operation_level_sdc is not None:
            operation_sdc[record.module] += record.operation_level_sdc
            operation_runs[record.module] += 1
        position = pe_position(record.site)
        if position is not None:
            per_pe[position][record.outcome] += 1
    clean = {record.image: record.clean_top1 == record.label for record in records}
    cross_check = {}
    for module, counts in sorted(per_module.items()):
        trials = sum(counts.values())
        rtl = _rate(counts["sdc"], trials)
        operation = (_rate(operation_sdc[module], operation_runs[module])
                     if operation_runs[module] else None)
        cross_check[module] = {"experiments": trials, "model_sdc": rtl,
                               "operation_level_sdc": operation,
                               "agree": None if operation is None else
                               rtl["low"] <= operation["high"]
                               and operation["low"] <= rtl["high"]}
    predicted = Counter(record.predicted for record in records)
    return {
        "campaign": campaign_id,
        "description": stored.description,
        "injections": total,
        "outcomes": {outcome: outcomes[outcome] for outcome in MODEL_OUTCOMES},
        "per_module": {module: {o: counts[o] for o in MODEL_OUTCOMES}
                       for module, counts in sorted(per_module.items())},
        "per_class": {c: {o: counts[o] for o in MODEL_OUTCOMES}
                      for c, counts in sorted(per_class.items())},
        "per_pe": {f"{i},{j}": {o: counts[o] for o in MODEL_OUTCOMES}
                   for (i, j), counts in sorted(per_pe.items())},
        "clean_accuracy": sum(clean.values()) / len(clean) if clean else None,
        "model_sdc_rate": _rate(outcomes["sdc"], total),
        "recomputations": sum(record.action == "recompute" for record in records),
        "operation_level_cross_check": cross_check,
        "margin_loss": {module: _mean(losses) for module, losses in
                        sorted(margin_losses.items())},
        "exposure": exposure(stored.description),
        "prediction": {"equal": predicted["equal"], "not_modeled": predicted["not_modeled"],
                       "mismatch": predicted["mismatch"]},
        "prediction_mismatches": [record.experiment for record in records
                                  if record.predicted == "mismatch"],
        "injections_per_second": (run.experiments / run.seconds
                                  if run and run.seconds > 0 else None),
    }


def pe_position(site):
    """(row, col) of a PE's register (``array.pe_3_5.accumulator``), else ``None``."""
    parts = site.split(".")
    if len(parts) == 3 and parts[0] == "array" and parts[1].startswith("pe_"):
        row, col = parts[1][3:].split("_")
        return int(row), int(col)
    return None
