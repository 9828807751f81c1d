"""cocotb testbench for the simulation-speed benchmark.

Measures wall time for (1) the clock running with the design idle and no Python wake-up
until the end, and (2) back-to-back tiles of depth k_max, two wake-ups per tile (START
write, then one Timer for the whole tile), and (3) the same tiles driven the naive way,
awaiting every rising edge from Python.
"""

import time

import cocotb
from cocotb.triggers import RisingEdge

from hw.config import AcceleratorConfig
from sim.host_bus import HostBus
from sim.simulator import read_request, write_response
from sw.twin.gemm import iter_tiles, random_operands


@cocotb.test()
async def simulation_speed(dut):
    request = read_request()
    config = AcceleratorConfig(**request["design"])
    bus = HostBus(dut, config.register_map)
    await bus.reset()
    k = config.k_max
    a, b = random_operands(config.rows, k, config.cols, seed=0)
    tile = next(iter_tiles(a, b, config.rows, config.cols))
    await bus.load_tile(tile.a, tile.b)
    results = {}

    cycles = request["idle_cycles"]
    started = time.perf_counter()
    await bus.wait_cycles(cycles)
    results["idle"] = {"cycles": cycles, "seconds": time.perf_counter() - started}

    tile_cycles = config.tile_cycles(k)
    tiles = request["tiles"]
    first = bus.cycle
    started = time.perf_counter()
    for _ in range(tiles):
        await bus.start()
        await bus.wait_cycles(tile_cycles)
    results["tiles"] = {"cycles": bus.cycle - first, "seconds": time.perf_counter() - started,
                        "tiles": tiles, "tile_cycles": tile_cycles}

    edge = RisingEdge(dut.clk)
    first = bus.cycle
    started = time.perf_counter()
    for _ in range(tiles):
        await bus.start()
        for _ in range(tile_cycles):
            await edge
        await bus.wait_cycles(1)
    results["tiles_per_edge"] = {"cycles": bus.cycle - first,
                                 "seconds": time.perf_counter() - started}
    write_response(results)
