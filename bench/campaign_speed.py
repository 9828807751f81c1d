"""Fault-injection throughput on one worker: this campaign, a naive testbench, the ceiling.

* campaign: batches of experiments on one long-lived simulator (steady state, best of
  several rounds), and a whole ``run_campaign`` call (start-up included);
* naive: a testbench that drives every cycle from Python (``naive_testbench``);
* ceiling: the same harness and accelerator, Verilated with the same flags, running the
  same cycles per experiment from C++ with no Python and no VPI (``ceiling_main.cpp``),
  once with the fault sites public (the model a campaign must use) and once fully private.
"""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from hw.config import AcceleratorConfig
from sim import toolchain
from sim.build import MAKE_OPTIMIZATION, VERILATOR_FLAGS, build_design
from sim.campaign import worker as campaign_worker
from sim.campaign.engine import CampaignOptions, _batches, prepare_campaign, run_campaign
from sim.campaign.workload import Workload
from sim.harness import experiment_cycles
from sim.simulator import run_testbench

CEILING_MAIN = Path(__file__).with_name("ceiling_main.cpp")


def _campaign_steady_state(prepared, batches):
    """Injections per second over ``batches`` batches, once the simulator has started."""
    tasks = _batches(prepared, prepared.plan(np.arange((batches + 1) * 2000)), 1)
    campaign_worker.run_batch(tasks[0])            # start the simulator, load the tile
    started = time.perf_counter()
    for task in tasks[1:]:
        campaign_worker.run_batch(task)
    rate = sum(len(task.experiments) for task in tasks[1:]) / (time.perf_counter() - started)
    campaign_worker.close_sessions()
    return rate


def tile_only_campaign(config, k=64):
    """A prepared tile-only campaign of one K=``k`` GEMM tile, for :func:`steady_state`."""
    return prepare_campaign(CampaignOptions(config, Workload(config.rows, k, config.cols,
                                                             seed=0), seed=0,
                                            injections=10_000))


def steady_state(prepared, batches=5):
    """Injections per second of a prepared tile-only campaign, simulator already started."""
    return _campaign_steady_state(prepared, batches)


def _build_ceiling(build, directory, public):
    sources = [str(build.directory / name) for name in ("design.v", "harness.v")]
    control = [str(build.directory / "public.vlt")] if public else []
    env = toolchain.verilator_environment()
    subprocess.run(["verilator", "-cc", "--exe", "--prefix", "Vceiling", "--top-module",
                    build.toplevel, "-o", "ceiling", "-Mdir", str(directory), *VERILATOR_FLAGS,
                    "-CFLAGS", "-std=c++20", *control, str(CEILING_MAIN), *sources],
                   check=True, env=env, capture_output=True)
    subprocess.run(["make", f"-j{os.cpu_count() or 1}", "-C", str(directory), "-f",
                    "Vceiling.mk", f"OPT_FAST={MAKE_OPTIMIZATION}",
                    f"OPT_GLOBAL={MAKE_OPTIMIZATION}"],
                   check=True, env=env, capture_output=True)
    return directory / "ceiling"


def _ceiling_rate(binary, config, k, experiments):
    arguments = [str(experiments), str(k), str(config.rows), str(config.cols),
                 str(config.register_map.index_width), str(experiment_cycles(config, k))]
    return json.loads(subprocess.run([str(binary), *arguments], check=True, capture_output=True,
                                     text=True).stdout)["experiments_per_second"]


def measure(config=AcceleratorConfig(rows=8, cols=8, k_max=256), k=64, rounds=5):
    build = build_design(config)
    options = CampaignOptions(config, Workload(config.rows, k, config.cols, seed=0), seed=0,
                              injections=10_000)
    prepared = prepare_campaign(options)
    results = {"config": config.label, "k": k, "experiment_cycles": experiment_cycles(config, k)}
    with tempfile.TemporaryDirectory(prefix="softerror-bench-") as work:
        work = Path(work)
        ceilings = {name: _build_ceiling(build, work / name, name == "public")
                    for name in ("public", "private")}
        rates = {"campaign": [], "public": [], "private": []}
        for _ in range(rounds):   # interleaved: the machine's speed drifts
            rates["campaign"].append(_campaign_steady_state(prepared, 5))
            for name, binary in ceilings.items():
                rates[name].append(_ceiling_rate(binary, config, k, 10_000))
        results.update({f"{name}_per_second": max(values) for name, values in rates.items()})
        results["rounds"] = {name: [round(v) for v in values] for name, values in rates.items()}

        started = time.perf_counter()
        summary = run_campaign(options, work / "whole.db")
        results["whole_run"] = {"injections": summary["injections"],
                                "seconds": time.perf_counter() - started,
                                "per_second": summary["injections_per_second"]}

        sites = build.fault_sites()
        plan = prepared.plan(np.arange(300))
        naive = {}
        for naive_k in (16, k):
            window = config.tile_cycles(naive_k)
            response = run_testbench(build, "bench.naive_testbench", {
                "design": vars(config), "k": naive_k, "sites": [s.path for s in sites],
                "experiments": [[int(s), int(b), 1 + int(c) % (window - 1)]
                                for s, b, c in zip(plan.site, plan.bit, plan.cycle)],
            }, work / f"naive{naive_k}")
            naive[naive_k] = response["experiments"] / response["seconds"]
        results["naive_per_second"] = naive
    return results


def report(r):
    campaign = r["campaign_per_second"]
    return "\n".join([
        f"{r['config']}, K={r['k']} ({r['experiment_cycles']} cycles per experiment), one worker "
        f"(best of {len(r['rounds']['campaign'])} interleaved rounds):",
        f"  campaign, steady state:            {campaign:10,.0f} injections/s",
        f"  campaign, whole run of {r['whole_run']['injections']:,} (start-up included): "
        f"{r['whole_run']['injections'] / r['whole_run']['seconds']:,.0f} injections/s",
        f"  naive per-cycle testbench, K=16:   {r['naive_per_second'][16]:10,.0f} injections/s",
        f"  naive per-cycle testbench, K={r['k']}:   {r['naive_per_second'][r['k']]:10,.0f} "
        f"injections/s  (campaign is {campaign / r['naive_per_second'][r['k']]:,.0f}x faster)",
        f"  ceiling, C++ only, sites public:   {r['public_per_second']:10,.0f} injections/s  "
        f"(campaign within {r['public_per_second'] / campaign:.2f}x)",
        f"  ceiling, C++ only, model private:  {r['private_per_second']:10,.0f} injections/s  "
        f"(campaign within {r['private_per_second'] / campaign:.2f}x)",
    ])
