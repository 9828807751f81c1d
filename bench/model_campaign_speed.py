"""Model-level campaigns (``softerror vit campaign``): the RTL and twin engines' steady state.

Both engines run the same experiments of the ViT on digits on the 8x8 ``rowcol`` design
(and on a 16x16 one, whose simulation costs four times the PEs), one worker, after a
warm-up (the simulator session started, the model built), in chunks of
:data:`sim.cosim.campaign.CHUNK` as a campaign's worker runs them; the rate is experiments
per second including the rest of each inference in the twin. Each engine runs as its
default does: the RTL engine with the operation-level cross-check, the twin engine
without. Printed beside the tile-only campaign's steady state measured in the same run
(``bench.campaign_speed``), with the CPU time each engine spends per experiment (the RTL
engine's worker and its simulator run at the same time: the wall-clock rate of one worker
uses two cores), where the RTL engine's time goes and the cycles its simulator runs.
"""

import os
import time
from pathlib import Path

import torch

from bench.campaign_speed import steady_state, tile_only_campaign
from hw.config import AcceleratorConfig
from sim.campaign.worker import close_sessions
from sim.harness import experiment_cycles
from sim.cosim.campaign import CHUNK
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions

__all__ = ["measure", "report"]

#: K of the tile-only campaign's tile.
TILE_ONLY_K = 64


def _simulator_seconds():
    """CPU seconds this thread's simulators have used (Linux: ``/proc``)."""
    from sim.campaign.worker import _thread_sessions
    ticks = 0
    for session in _thread_sessions().values():
        fields = Path(f"/proc/{session.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])     # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _rate(campaign, engine, start, count):
    """(experiments per second, CPU microseconds per experiment of this process and its
    simulator), run in chunks as a campaign's worker runs them."""
    run = campaign.run_rtl if engine == "rtl" else campaign.run_twin
    begun, cpu, simulator = time.perf_counter(), time.process_time(), _simulator_seconds()
    for first in range(start, start + count, CHUNK):
        run(range(first, min(first + CHUNK, start + count)))
    used = time.process_time() - cpu + _simulator_seconds() - simulator
    return count / (time.perf_counter() - begun), 1e6 * used / count


#: The RTL engine's steps, timed one by one: the campaign's method and what it does. The
#: simulator runs a part of the chunk while the twin predicts, flips and judges: only the
#: time spent waiting for it is the simulator's.
_STEPS = {"draw": "drawing", "_rtl_tasks": "tile tasks",
          "_struck_tiles": "waiting for the simulator",
          "predict": "RTL-derived prediction", "operation_level": "operation-level flips",
          "judge": "inference of kept tiles"}


def _steps(campaign, start, count):
    """Microseconds per experiment the RTL engine spends in each of :data:`_STEPS`, and
    the clock cycles the simulator runs per experiment (``cycles``: loads, golden runs and
    upset runs)."""
    from sim.campaign import worker
    spent = dict.fromkeys(_STEPS, 0.0)
    cycles = [0]
    submit = worker.submit_batches

    def counted(tasks):
        collect = submit(tasks)

        def results():
            batches = collect()
            cycles[0] += sum(batch.cycles for batch in batches)
            return batches
        return results

    def timed(name, method):
        def run(*args):
            begun = time.perf_counter()
            try:
                return method(*args)
            finally:
                spent[name] += time.perf_counter() - begun
        return run

    # Instance attributes shadow the methods, then go; the engine looks the worker's
    # submit_batches up on each call.
    worker.submit_batches = counted
    for name in _STEPS:
        setattr(campaign, name, timed(name, getattr(campaign, name)))
    try:
        _rate(campaign, "rtl", start, count)
    finally:
        worker.submit_batches = submit
        for name in _STEPS:
            delattr(campaign, name)
    return {**{name: 1e6 * seconds / count for name, seconds in spent.items()},
            "cycles": cycles[0] / count}


def measure_designs(rounds=3):
    """:func:`measure` on the 8x8 and the 16x16 ``rowcol`` designs."""
    return [measure(AcceleratorConfig(rows=size, cols=size, k_max=256, abft="rowcol"), rounds)
            for size in (8, 16)]


def measure(config=AcceleratorConfig(rows=8, cols=8, k_max=256, abft="rowcol"), rounds=3):
    torch.set_num_threads(1)
    rates = {"rtl": [], "twin": [], "tile_only": []}
    cpu = {"rtl": [], "twin": []}
    campaigns = {engine: ModelCampaign.prepare(ModelCampaignOptions(
        config, model="vit", images=32, seed=0, engine=engine,
        classes=("operand", "accumulator", "output"))) for engine in ("rtl", "twin")}
    tile_only = tile_only_campaign(config, TILE_ONLY_K)
    try:
        for campaign in campaigns.values():
            campaign.run(range(50))     # warm-up: simulator, recorded images
        for r in range(rounds):         # interleaved: the machine's speed drifts
            rates["tile_only"].append(steady_state(tile_only))
            # The tile-only measurement ends the simulator it shares with the RTL engine:
            # start it again before the clock runs.
            campaigns["rtl"].run(range(100 * r, 100 * r + 20))
            for engine, count in (("rtl", 2048), ("twin", 6144)):
                rate, used = _rate(campaigns[engine], engine, 10_000 * (r + 1), count)
                rates[engine].append(rate)
                cpu[engine].append(used)
        steps = _steps(campaigns["rtl"], 10_000 * (rounds + 1), 2048)
    finally:
        close_sessions()
    return {"config": config.label, "tile_only_cycles": experiment_cycles(config, TILE_ONLY_K),
            **{name: max(values) for name, values in rates.items()},
            "cpu": {engine: min(values) for engine, values in cpu.items()},
            "rounds": rates, "steps": steps}


def report(r):
    return "\n".join([
        f"ViT on digits, {r['config']}, operand/accumulator/output upsets, one worker "
        f"(best of {len(r['rounds']['rtl'])} interleaved rounds):",
        f"  tile-only campaign (K={TILE_ONLY_K} tile): {r['tile_only']:10,.0f} injections/s",
        f"  RTL in the loop:                {r['rtl']:10,.0f} upsets/s  "
        f"({100 * r['rtl'] / r['tile_only']:.1f}% of tile-only)",
        f"  twin engine:                    {r['twin']:10,.0f} upsets/s  "
        f"({r['twin'] / r['rtl']:.1f}x the RTL)",
        f"  CPU time per upset (worker and simulator): RTL {r['cpu']['rtl']:,.0f} us, twin "
        f"{r['cpu']['twin']:,.0f} us ({r['cpu']['rtl'] / r['cpu']['twin']:.1f}x less)",
        "  RTL engine per upset (one more run): "
        + ", ".join(f"{_STEPS[name]} {r['steps'][name]:,.0f} us" for name in _STEPS)
        + f"; a tile-only injection: {1e6 / r['tile_only']:,.0f} us",
        f"  simulated cycles per upset: {r['steps']['cycles']:,.0f} (loads, golden and "
        f"upset runs); a tile-only injection: {r['tile_only_cycles']}"])
