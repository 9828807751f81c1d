"""The naive way to run fault-injection experiments, for comparison.

Per experiment: reset, load the operands over the host port, start, advance one clock
edge at a time from Python (flipping the bit at its cycle), poll for DONE every cycle,
read the rows back and compare them in Python -- the usual first cocotb testbench.
"""

import time

import cocotb
from cocotb.handle import Immediate
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from hw.config import AcceleratorConfig
from hw.register_map import Csr, Region, pack_lanes, unpack_lanes
from sim.signal_access import resolve
from sim.simulator import read_request, write_response
from sw.twin.gemm import iter_tiles, random_operands, tile_product


@cocotb.test()
async def naive_experiments(dut):
    request = read_request()
    config = AcceleratorConfig(**request["design"])
    regs = config.register_map
    k = request["k"]
    a, b = random_operands(config.rows, k, config.cols, seed=0)
    tile = next(iter_tiles(a, b, config.rows, config.cols))
    expected = tile_product(tile.a, tile.b).tolist()
    sites = request["sites"]
    edge = RisingEdge(dut.clk)
    await Timer(2.5, unit="ns")

    async def write(address, value):
        dut.addr.value = address
        dut.wdata.value = value
        dut.we.value = 1
        await edge
        dut.we.value = 0

    started = time.perf_counter()
    wrong = 0
    for number, (path, bit, cycle) in enumerate(request["experiments"]):
        dut.rst.value = 1
        await edge
        dut.rst.value = 0
        for step in range(k):
            await write(regs.address(Region.A, step), pack_lanes(tile.a[:, step].tolist(), 8))
            await write(regs.address(Region.B, step), pack_lanes(tile.b[step].tolist(), 8))
        await write(regs.address(Region.CSR, Csr.K), k)
        await write(regs.address(Region.CSR, Csr.CTRL), 1)
        elapsed = 0
        while True:
            await edge
            elapsed += 1
            if elapsed == cycle:
                handle = resolve(dut.accelerator, sites[path])
                handle.set(Immediate(int(handle.value) ^ (1 << bit)))
            await ReadOnly()
            if int(dut.irq.value) or elapsed > 4 * config.tile_cycles(k):
                break
        await edge
        rows = []
        for i in range(config.rows):
            dut.addr.value = regs.address(Region.RESULT, i)
            await edge
            await edge
            await ReadOnly()
            rows.append(unpack_lanes(int(dut.rdata.value), config.cols, 32))
            await edge
        wrong += rows != expected
    write_response({"experiments": len(request["experiments"]),
                    "seconds": time.perf_counter() - started, "wrong": wrong})
