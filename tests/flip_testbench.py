"""Upsets land where they are written and are overwritten when the register next loads."""

import cocotb
from cocotb.handle import Immediate

from hw.config import AcceleratorConfig
from hw.register_map import Region
from sim.host_bus import HostBus
from sim.signal_access import RawSignal
from sim.simulator import read_request, write_response
from sw.twin.gemm import iter_tiles, random_operands, tile_product


@cocotb.test()
async def flips(dut):
    config = AcceleratorConfig(**read_request()["design"])
    bus = HostBus(dut, config.register_map)
    await bus.reset()
    a, b = random_operands(config.rows, 16, config.cols, seed=1)
    tile = next(iter_tiles(a, b, config.rows, config.cols))
    await bus.load_tile(tile.a, tile.b)
    await bus.start()
    await bus.wait_cycles(config.tile_cycles(16))
    report = {"golden": tile_product(tile.a, tile.b).tolist()}
    array = dut.accelerator.array

    # An operand register loads every cycle (zeros while idle): the upset lasts one cycle.
    operand = RawSignal(array.pe_0_0.a_reg)
    report["operand"] = [operand.read()]
    operand.flip(3)
    report["operand"].append(operand.read())
    await bus.wait_cycles(1)
    report["operand"].append(operand.read())

    # An idle accumulator holds its value: the upset stays until START clears it.
    accumulator = RawSignal(array.pe_2_3.accumulator)
    report["accumulator"] = [accumulator.read()]
    accumulator.flip(31)
    report["accumulator"].append(accumulator.read())
    await bus.wait_cycles(3)
    report["accumulator"].append(accumulator.read())

    # The public cocotb API writes the same upset.
    handle = array.pe_1_1.accumulator
    before = int(handle.value)
    handle.set(Immediate(before ^ 1))
    report["public"] = [before, int(handle.value)]

    # A wide result register: the host reads the flipped value back.
    row = RawSignal(dut.accelerator.results.row_5)
    report["row"] = [row.read()]
    row.flip(200)
    report["row"].append(row.read())
    report["row"].append(await bus.read(config.register_map.address(Region.RESULT, 5)))

    # The next tile overwrites every upset above.
    await bus.start()
    await bus.wait_cycles(config.tile_cycles(16))
    report["rerun"] = await bus.read_result()
    write_response(report)
