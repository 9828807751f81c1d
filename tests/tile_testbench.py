"""A whole multi-tile GEMM driven like a host, with one upset in one tile."""

import cocotb

from hw.config import AcceleratorConfig
from sim.host_bus import HostBus
from sim.signal_access import RawSignal, resolve
from sim.simulator import read_request, write_response
from sw.twin.gemm import iter_tiles, random_operands


@cocotb.test()
async def upsets_in_whole_gemms(dut):
    request = read_request()
    config = AcceleratorConfig(**request["design"])
    workload = request["workload"]
    a, b = random_operands(workload["m"], workload["k"], workload["n"], workload["seed"],
                           workload["extreme_fraction"])
    tiles = list(iter_tiles(a, b, config.rows, config.cols))
    tile_cycles = config.tile_cycles(workload["k"])
    bus = HostBus(dut, config.register_map)
    results = []
    for path, bit, upset_tile, cycle in request["upsets"]:
        await bus.reset()
        outputs = []
        for tile in tiles:
            await bus.load_tile(tile.a, tile.b)
            await bus.start()           # returns one cycle after the edge that samples START
            waited = 0
            if tile.index == upset_tile:
                await bus.wait_cycles(cycle - 1)
                RawSignal(resolve(dut.accelerator, path)).flip(bit)
                waited = cycle - 1
            await bus.wait_cycles(max(0, tile_cycles - waited))
            for _ in range(4 * tile_cycles):
                if bus.irq:
                    break
                await bus.wait_cycles(1)
            outputs.append(await bus.read_result() if bus.irq else None)
        results.append(outputs)
    write_response({"results": results})
