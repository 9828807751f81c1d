"""Verilator build time and simulated cycles per second of one configuration."""

import os
import tempfile
import time
from unittest import mock

from hw.config import AcceleratorConfig
from sim.build import build_design
from sim.simulator import run_testbench


def measure(config: AcceleratorConfig, *, idle_cycles=2_000_000, tiles=2000):
    with tempfile.TemporaryDirectory(prefix="softerror-bench-") as cache:
        with mock.patch.dict(os.environ, {"SOFTERROR_BUILD_DIR": cache}):
            started = time.perf_counter()
            build = build_design(config)
            build_seconds = time.perf_counter() - started
            response = run_testbench(build, "bench.speed_testbench",
                                     {"design": vars(config), "idle_cycles": idle_cycles,
                                      "tiles": tiles},
                                     os.path.join(cache, "run"))
    rates = {name: run["cycles"] / run["seconds"] for name, run in response.items()}
    return {"config": config.label, "build_seconds": build_seconds,
            "cycles_per_second": rates, "tile_cycles": response["tiles"]["tile_cycles"]}


def report(result):
    rates = result["cycles_per_second"]
    return "\n".join([
        f"{result['config']}: Verilator build (generate, verilate, compile) "
        f"{result['build_seconds']:.1f} s",
        f"  simulated cycles/s, clock only, no Python wake-ups:  {rates['idle']:,.0f}",
        f"  simulated cycles/s, back-to-back tiles, 2 wake-ups/tile ({result['tile_cycles']} "
        f"cycles each): {rates['tiles']:,.0f}",
        f"  simulated cycles/s, same tiles, Python wakes at every edge: "
        f"{rates['tiles_per_edge']:,.0f}",
    ])
