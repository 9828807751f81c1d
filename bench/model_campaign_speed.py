"""Model-level campaigns (``softerror vit campaign``): the RTL and twin engines' steady state.

Both engines run the same experiments of the ViT on digits on the 8x8 ``rowcol`` design
(and on a 16x16 one, whose simulation costs four times the PEs), one worker, after a
warm-up (the simulator session started, the model built); the rate is experiments per
second including the rest of each inference in the twin. Printed beside the tile-only
campaign's steady state measured in the same run (``bench.campaign_speed``).
"""

import time

import torch

from hw.config import AcceleratorConfig
from sim.campaign.worker import close_sessions
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions

__all__ = ["measure", "report"]


def _rate(campaign, engine, start, count):
    run = campaign.run_rtl if engine == "rtl" else campaign.run_twin
    begun = time.perf_counter()
    run(range(start, start + count))
    return count / (time.perf_counter() - begun)


def measure_designs(rounds=3):
    """:func:`measure` on the 8x8 and the 16x16 ``rowcol`` designs."""
    return [measure(AcceleratorConfig(rows=size, cols=size, k_max=256, abft="rowcol"), rounds)
            for size in (8, 16)]


def measure(config=AcceleratorConfig(rows=8, cols=8, k_max=256, abft="rowcol"), rounds=3):
    torch.set_num_threads(1)
    rates = {}
    try:
        for engine, count in (("rtl", 600), ("twin", 3000)):
            campaign = ModelCampaign.prepare(ModelCampaignOptions(
                config, model="vit", images=32, seed=0, engine=engine,
                classes=("operand", "accumulator", "output")))
            campaign.run(range(50))     # warm-up: simulator, recorded images
            rates[engine] = [_rate(campaign, engine, 1000 * (r + 1), count)
                             for r in range(rounds)]
    finally:
        close_sessions()
    return {"config": config.label, "rtl": max(rates["rtl"]), "twin": max(rates["twin"]),
            "rounds": rates}


def report(r, tile_only=None):
    lines = [f"ViT on digits, {r['config']}, operand/accumulator/output upsets, one worker "
             f"(best of {len(r['rounds']['rtl'])}):",
             f"  RTL in the loop:   {r['rtl']:10,.0f} upsets/s",
             f"  twin engine:       {r['twin']:10,.0f} upsets/s  ({r['twin'] / r['rtl']:.1f}x)"]
    if tile_only:
        lines.append(f"  tile-only campaign (same run): {tile_only:,.0f} injections/s; RTL in "
                     f"the loop at {100 * r['rtl'] / tile_only:.1f}% of it")
    return "\n".join(lines)
