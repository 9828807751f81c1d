"""cocotb testbench: tiles with one operand upset each; what the host reads back.

Each case loads a tile, writes START, flips one bit of one register at a cycle of the tile
(counted as in ``sim.testbenches.gemm``: cycle ``c`` is the bus phase just before the
``c``-th rising edge after the edge that samples START), waits for DONE and reads the
rows, STATUS and the syndromes. After the first case it also probes how the flags live on:
a refused START (K = 0), then an accepted one, read while busy and after DONE. Last, it
writes the words ``wide_k`` to K and START after each (they must be refused).
"""

import cocotb
import torch

from hw.config import AcceleratorConfig
from hw.register_map import Csr, Region
from sim.host_bus import HostBus
from sim.signal_access import RawSignal, resolve
from sim.simulator import read_request, write_response

#: How many tile lengths to wait for DONE.
WATCHDOG_TILES = 4


async def _flags(bus):
    return {"status": await bus.read_csr(Csr.STATUS),
            "row_syndrome": await bus.read_csr(Csr.ROW_SYNDROME),
            "col_syndrome": await bus.read_csr(Csr.COL_SYNDROME)}


async def _wait_done(bus, cycles):
    for _ in range(WATCHDOG_TILES * cycles):
        if bus.irq:
            return
        await bus.wait_cycles(1)
    raise AssertionError("DONE never rose")


async def _after_the_tile(bus, k, cycles):
    """A refused START, then an accepted one: the flags before, while busy and after."""
    await bus.write(bus.regs.address(Region.CSR, Csr.K), 0)
    await bus.start()
    refused = {**await _flags(bus), "result": await bus.read_result()}
    await bus.write(bus.regs.address(Region.CSR, Csr.K), k)
    await bus.start()
    busy = await _flags(bus)
    await _wait_done(bus, cycles)
    return {"refused": refused, "busy": busy, "rerun": await _flags(bus)}


@cocotb.test()
async def operand_upsets(dut):
    request = read_request()
    config = AcceleratorConfig(**request["design"])
    bus = HostBus(dut, config.register_map)
    reports = []
    for number, case in enumerate(request["cases"]):
        await bus.reset()
        a = torch.tensor(case["a"], dtype=torch.int8)
        b = torch.tensor(case["b"], dtype=torch.int8)
        k = b.shape[0]
        cycles = config.tile_cycles(k)
        await bus.load_tile(a, b)
        await bus.start()               # returns one cycle after the edge that samples START
        path, bit, cycle = case["upset"]
        await bus.wait_cycles(cycle - 1)
        RawSignal(resolve(dut.accelerator, path)).flip(bit)
        await _wait_done(bus, cycles)
        report = {"result": await bus.read_result(), **await _flags(bus)}
        if number == 0:
            report.update(await _after_the_tile(bus, k, cycles))
        reports.append(report)
    write_response({"cases": reports, "wide_k": [await _refused_k(bus, word)
                                                 for word in request["wide_k"]]})


async def _refused_k(bus, word):
    """K as it reads back after writing ``word``, and STATUS after a START."""
    await bus.write(bus.regs.address(Region.CSR, Csr.K), word)
    k = await bus.read_csr(Csr.K)
    await bus.start()
    return [k, await bus.read_csr(Csr.STATUS)]
