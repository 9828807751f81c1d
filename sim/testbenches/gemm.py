"""cocotb testbench: GEMMs on the RTL, checked bit for bit against the PyTorch twin.

Runs inside the simulator (launched by :func:`sim.simulator.run_testbench`). The request
names the design and a list of GEMMs (shape and operand seed, or an operand file; range
bounds; accumulator upsets); for each GEMM the testbench cuts the operands into tiles with
the twin's tiling (so RTL and model share one definition of the tile order and padding),
and for each tile

* the driver programs the range checker (if any), loads the operand buffers over the host
  port and writes START; an upset of the tile flips its accumulator bit at its cycle;
* the timing check waits exactly the accelerator's ``tile_cycles(k)``: DONE must still be
  low one cycle before and high at that cycle, and the CYCLES register must agree;
* the monitor reads the result rows back over the host port, then STATUS, the syndromes
  and the range count;
* the checker compares all of it -- the whole tile, padding included, the ABFT and range
  flags, the syndromes and the count -- with the twin (``sw.twin.protection``), which
  predicts the corrupted tile from the upset and checks and corrects it as the hardware
  does.

The response gives, per GEMM, bit-exactness, mismatch details, tiles, cycles and flags.
"""

import re
import time

import cocotb
import torch

from hw.config import AcceleratorConfig
from hw.register_map import Csr, Region
from sim.host_bus import HostBus
from sim.signal_access import RawSignal, resolve
from sim.simulator import read_request, write_response
from sim.verify import job_operands
from sw.twin.gemm import gemm_int8, iter_tiles, tile_product
from sw.twin.protection import RangeBounds, accumulator_upset, check_tile

#: How many tile lengths to wait for DONE before calling the tile hung.
WATCHDOG_TILES = 4
_ACCUMULATOR = re.compile(r"array\.pe_(\d+)_(\d+)\.accumulator")


async def _run_tile(bus, dut, tile, expected_cycles, upsets):
    """Drive one tile, with its upsets; return (result rows, timing report)."""
    await bus.load_tile(tile.a, tile.b)
    await bus.start()                   # returns one cycle after the edge that samples START
    waited = 1
    for path, bit, cycle in sorted(upsets, key=lambda upset: upset[2]):
        await bus.wait_cycles(cycle - waited)
        waited = cycle
        RawSignal(resolve(dut.accelerator, path)).flip(bit)
    await bus.wait_cycles(expected_cycles - waited)
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
    return await bus.read_result(), {"hang": False, "counted": counted, "timing_ok": timing_ok}


def _twin_raw(tile, upsets):
    raw = tile_product(tile.a, tile.b)
    for path, bit, cycle in upsets:
        match = _ACCUMULATOR.fullmatch(path)
        if match is None:
            raise ValueError(f"The twin models accumulator upsets only, not {path!r}")
        if len(upsets) > 1:
            raise ValueError("The twin models one upset per tile")
        raw = accumulator_upset(tile.a, tile.b, int(match[1]), int(match[2]), bit, cycle)
    return raw


async def _run_gemm(bus, dut, config, job):
    a, b = job_operands(job)
    bounds = RangeBounds(*job["range"]) if job["range"] is not None else None
    expected_cycles = config.tile_cycles(job["k"])
    result = torch.zeros((job["m"], job["n"]), dtype=torch.int32)
    report = {**job, "tiles": 0, "cycles": 0, "tile_cycles": expected_cycles,
              "timing_ok": True, "hang": False, "mismatches": 0, "first_mismatch": None,
              "flag_mismatches": [], "detected_tiles": 0, "corrected_tiles": 0,
              "out_of_range": 0}
    first_cycle = bus.cycle
    started = time.perf_counter()
    regs = config.register_map
    for tile in iter_tiles(a, b, config.rows, config.cols):
        if config.range_check:
            lower, upper, zero = bounds.lower, bounds.upper, bounds.zero
            await bus.write_many([
                (regs.address(Region.CSR, Csr.RANGE_LOWER), lower & 0xFFFFFFFF),
                (regs.address(Region.CSR, Csr.RANGE_UPPER), upper & 0xFFFFFFFF),
                (regs.address(Region.CSR, Csr.RANGE_CONTROL), int(zero) | 2)])
        upsets = [upset[1:] for upset in job["upsets"] if upset[0] == tile.index]
        observed, timing = await _run_tile(bus, dut, tile, expected_cycles, upsets)
        report["tiles"] += 1
        if timing["hang"]:
            report.update(hang=True, timing_ok=False)
            break
        report["cycles"] += timing["counted"]
        report["timing_ok"] &= timing["timing_ok"]
        observed = torch.tensor(observed, dtype=torch.int32)
        twin = check_tile(tile.a, tile.b, _twin_raw(tile, upsets), config.abft, bounds)
        wrong = (observed != twin.output).nonzero().tolist()
        if wrong and report["first_mismatch"] is None:
            i, j = wrong[0]
            report["first_mismatch"] = {"tile": tile.index, "row": i, "col": j,
                                        "rtl": int(observed[i, j]),
                                        "model": int(twin.output[i, j])}
        report["mismatches"] += len(wrong)
        status = await bus.status()
        rtl_flags = {name: status[name] for name in ("abft_error", "abft_corrected",
                                                     "range_flag")}
        twin_flags = {"abft_error": twin.error, "abft_corrected": twin.corrected,
                      "range_flag": twin.out_of_range > 0}
        if config.abft != "none":
            rtl_flags["row_syndrome"] = await bus.read_csr(Csr.ROW_SYNDROME)
            rtl_flags["col_syndrome"] = await bus.read_csr(Csr.COL_SYNDROME)
            twin_flags["row_syndrome"] = twin.row_syndrome
            twin_flags["col_syndrome"] = twin.col_syndrome
        if config.range_check:
            rtl_flags["range_count"] = await bus.read_csr(Csr.RANGE_COUNT)
            twin_flags["range_count"] = twin.out_of_range
        if rtl_flags != twin_flags:
            report["flag_mismatches"].append({"tile": tile.index, "rtl": rtl_flags,
                                              "model": twin_flags})
        report["detected_tiles"] += rtl_flags["abft_error"]
        report["corrected_tiles"] += rtl_flags["abft_corrected"]
        report["out_of_range"] += rtl_flags.get("range_count", 0)
        result[tile.row0:tile.row0 + tile.valid_rows, tile.col0:tile.col0 + tile.valid_cols] = \
            observed[:tile.valid_rows, :tile.valid_cols]
    clean = not job["upsets"] and bounds is None
    report["bit_exact"] = (not report["hang"] and report["mismatches"] == 0
                           and not report["flag_mismatches"]
                           and (not clean or torch.equal(result, gemm_int8(a, b))))
    report["bus_cycles"] = bus.cycle - first_cycle
    report["wall_seconds"] = time.perf_counter() - started
    return report


@cocotb.test()
async def gemm_requests(dut):
    """Run every GEMM of the request and report; fails if any is not bit-exact."""
    request = read_request()
    config = AcceleratorConfig(**request["design"])
    bus = HostBus(dut, config.register_map)
    await bus.reset()
    started = time.perf_counter()
    reports = []
    for job in request["gemms"]:
        reports.append(await _run_gemm(bus, dut, config, job))
        await bus.reset()
    write_response({"gemms": reports, "sim_cycles": bus.cycle,
                    "wall_seconds": time.perf_counter() - started})
    failed = [r for r in reports if not (r["bit_exact"] and r["timing_ok"])]
    assert not failed, f"{len(failed)} of {len(reports)} GEMMs failed"
