"""cocotb testbench: GEMMs on the RTL, checked bit for bit against the PyTorch twin.

Runs inside the simulator (launched by :func:`sim.simulator.run_testbench`). The request
names the design and a list of GEMMs (shape and operand seed, or an operand file); for
each GEMM the
testbench cuts the operands into tiles with the twin's tiling (so RTL and model share one
definition of the tile order and padding), and for each tile

* the driver loads the operand buffers over the host port and writes START,
* the timing check waits exactly the accelerator's ``tile_cycles(k)``: DONE must still be
  low one cycle before and high at that cycle, and the CYCLES register must agree,
* the monitor reads the result rows back over the host port,
* the checker compares the whole tile, padding included, with the twin's tile product.

The response gives, per GEMM, bit-exactness, mismatch details, tiles and cycles.
"""

import time

import cocotb
import torch

from hw.register_map import Csr
from sim.build import DesignConfig
from sim.host_bus import HostBus
from sim.simulator import read_request, write_response
from sim.verify import job_operands
from sw.accelerator_model import gemm_int8, iter_tiles, tile_product

#: How many tile lengths to wait for DONE before calling the tile hung.
WATCHDOG_TILES = 4


async def _run_tile(bus, tile, expected_cycles):
    """Drive one tile and return (result rows, timing report)."""
    await bus.load_tile(tile.a, tile.b)
    await bus.start()
    await bus.wait_cycles(expected_cycles - 1)
    early = bus.irq == 1
    await bus.wait_cycles(1)
    waited = expected_cycles
    while bus.irq == 0 and waited < WATCHDOG_TILES * expected_cycles:
        await bus.wait_cycles(1)
        waited += 1
    if bus.irq == 0:
        return None, {"hang": True, "waited": waited}
    counted = await bus.read_csr(Csr.CYCLES)
    timing_ok = not early and waited == expected_cycles and counted == expected_cycles
    return await bus.read_result(), {"hang": False, "waited": waited, "counted": counted,
                                     "early": early, "timing_ok": timing_ok}


async def _run_gemm(bus, config, job):
    a, b = job_operands(job)
    expected_cycles = config.tile_cycles(job["k"])
    result = torch.zeros((job["m"], job["n"]), dtype=torch.int32)
    report = {**job, "tiles": 0, "cycles": 0, "tile_cycles": expected_cycles,
              "timing_ok": True, "hang": False, "mismatches": 0, "first_mismatch": None}
    first_cycle = bus.cycle
    started = time.perf_counter()
    for tile in iter_tiles(a, b, config.rows, config.cols):
        observed, timing = await _run_tile(bus, tile, expected_cycles)
        report["tiles"] += 1
        if timing["hang"]:
            report.update(hang=True, timing_ok=False)
            break
        report["cycles"] += timing["counted"]
        report["timing_ok"] &= timing["timing_ok"]
        observed = torch.tensor(observed, dtype=torch.int32)
        wrong = (observed != tile_product(tile.a, tile.b)).nonzero().tolist()
        if wrong and report["first_mismatch"] is None:
            i, j = wrong[0]
            report["first_mismatch"] = {"tile": tile.index, "row": i, "col": j,
                                        "rtl": int(observed[i, j]),
                                        "model": int(tile_product(tile.a, tile.b)[i, j])}
        report["mismatches"] += len(wrong)
        result[tile.row0:tile.row0 + tile.valid_rows, tile.col0:tile.col0 + tile.valid_cols] = \
            observed[:tile.valid_rows, :tile.valid_cols]
    report["bit_exact"] = (not report["hang"] and report["mismatches"] == 0
                           and torch.equal(result, gemm_int8(a, b)))
    report["bus_cycles"] = bus.cycle - first_cycle
    report["wall_seconds"] = time.perf_counter() - started
    return report


@cocotb.test()
async def gemm_requests(dut):
    """Run every GEMM of the request and report; fails if any is not bit-exact."""
    request = read_request()
    config = DesignConfig(**request["design"])
    bus = HostBus(dut, config.register_map)
    await bus.reset()
    started = time.perf_counter()
    reports = []
    for job in request["gemms"]:
        reports.append(await _run_gemm(bus, config, job))
        await bus.reset()
    write_response({"gemms": reports, "sim_cycles": bus.cycle,
                    "wall_seconds": time.perf_counter() - started})
    failed = [r for r in reports if not (r["bit_exact"] and r["timing_ok"])]
    assert not failed, f"{len(failed)} of {len(reports)} GEMMs failed"
