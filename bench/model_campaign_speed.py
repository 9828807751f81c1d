"""Model-level campaigns (``softerror vit campaign``): the RTL and twin engines' steady state.

Both engines run the same experiments of the ViT on digits on the 8x8 ``rowcol`` design
(and on a 16x16 one, whose simulation costs four times the PEs), one worker, after a
warm-up (the simulator session started, the model built), in chunks of
:data:`sim.cosim.campaign.CHUNK` as a campaign's worker runs them; the rate is experiments
per second including the rest of each inference in the twin. Each engine runs as its
default does: the RTL engine with the operation-level cross-check, the twin engine
without. Printed beside the tile-only campaign's steady state measured in the same run
(``bench.campaign_speed``).
"""

import time

import torch

from bench.campaign_speed import steady_state, tile_only_campaign
from hw.config import AcceleratorConfig
from sim.campaign.worker import close_sessions
from sim.cosim.campaign import CHUNK
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions

__all__ = ["measure", "report"]


def _rate(campaign, engine, start, count):
    """Experiments per second, run in chunks as a campaign's worker runs them."""
    run = campaign.run_rtl if engine == "rtl" else campaign.run_twin
    begun = time.perf_counter()
    for first in range(start, start + count, CHUNK):
        run(range(first, min(first + CHUNK, start + count)))
    return count / (time.perf_counter() - begun)


#: The RTL engine's steps, timed one by one: the campaign's method and what it does.
_STEPS = {"draw": "drawing", "_strike_rtl": "simulator (loads, runs, round trip)",
          "predict": "RTL-derived prediction",
          "judge": "inference (kept tiles, operation-level flips)"}


def _steps(campaign, start, count):
    """Microseconds per experiment the RTL engine spends in each of :data:`_STEPS`."""
    spent = dict.fromkeys(_STEPS, 0.0)

    def timed(name, method):
        def run(*args):
            begun = time.perf_counter()
            try:
                return method(*args)
            finally:
                spent[name] += time.perf_counter() - begun
        return run

    for name in _STEPS:     # instance attributes shadow the methods, then go
        setattr(campaign, name, timed(name, getattr(campaign, name)))
    try:
        _rate(campaign, "rtl", start, count)
    finally:
        for name in _STEPS:
            delattr(campaign, name)
    return {name: 1e6 * seconds / count for name, seconds in spent.items()}


def measure_designs(rounds=3):
    """:func:`measure` on the 8x8 and the 16x16 ``rowcol`` designs."""
    return [measure(AcceleratorConfig(rows=size, cols=size, k_max=256, abft="rowcol"), rounds)
            for size in (8, 16)]


def measure(config=AcceleratorConfig(rows=8, cols=8, k_max=256, abft="rowcol"), rounds=3):
    torch.set_num_threads(1)
    rates = {"rtl": [], "twin": [], "tile_only": []}
    campaigns = {engine: ModelCampaign.prepare(ModelCampaignOptions(
        config, model="vit", images=32, seed=0, engine=engine,
        classes=("operand", "accumulator", "output"))) for engine in ("rtl", "twin")}
    tile_only = tile_only_campaign(config)
    try:
        for campaign in campaigns.values():
            campaign.run(range(50))     # warm-up: simulator, recorded images
        for r in range(rounds):         # interleaved: the machine's speed drifts
            rates["tile_only"].append(steady_state(tile_only))
            # The tile-only measurement ends the simulator it shares with the RTL engine:
            # start it again before the clock runs.
            campaigns["rtl"].run(range(100 * r, 100 * r + 20))
            for engine, count in (("rtl", 2048), ("twin", 6144)):
                rates[engine].append(_rate(campaigns[engine], engine, 10_000 * (r + 1), count))
        steps = _steps(campaigns["rtl"], 10_000 * (rounds + 1), 2048)
    finally:
        close_sessions()
    return {"config": config.label, **{name: max(values) for name, values in rates.items()},
            "rounds": rates, "steps": steps}


def report(r):
    return "\n".join([
        f"ViT on digits, {r['config']}, operand/accumulator/output upsets, one worker "
        f"(best of {len(r['rounds']['rtl'])} interleaved rounds):",
        f"  tile-only campaign (K=64 tile): {r['tile_only']:10,.0f} injections/s",
        f"  RTL in the loop:                {r['rtl']:10,.0f} upsets/s  "
        f"({100 * r['rtl'] / r['tile_only']:.1f}% of tile-only)",
        f"  twin engine:                    {r['twin']:10,.0f} upsets/s  "
        f"({r['twin'] / r['rtl']:.1f}x the RTL)",
        "  RTL engine per upset (one more run): "
        + ", ".join(f"{_STEPS[name]} {us:,.0f} us" for name, us in r["steps"].items())
        + f"; a tile-only injection: {1e6 / r['tile_only']:,.0f} us"])
