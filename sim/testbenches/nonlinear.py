"""cocotb testbench: rows through a nonlinear unit over the host port, as a driver does.

Per row: N, the parameters and the per-channel tables (LayerNorm), the row into the ROW
window, START; STATUS is polled until DONE (the cycles from the START write are counted:
they must be the unit's latency), then the codes are read back from the ROW window and the
checker flags from STATUS. The counters are read at the end.
"""

import cocotb

from hw.config import AcceleratorConfig
from hw.register_map import UNIT_CHECKS, UNIT_FLAGS_SHIFT, UnitCsr, UnitStatus, UnitWindow
from sim.host_bus import HostBus
from sim.simulator import read_request, write_response

#: Polls of STATUS per row before the row counts as hung, beyond its latency.
HANG_MARGIN = 64


@cocotb.test()
async def run_rows(dut):
    request = read_request()
    config = AcceleratorConfig(**request["design"])
    unit = request["unit"]
    regs = config.register_map
    bus = HostBus(dut, regs)
    await bus.reset()

    def csr(entry):
        return regs.unit_address(unit, UnitWindow.CSR, entry)

    results = []
    for row in request["rows"]:
        values, n = row["values"], len(row["values"])
        writes, entry = [(csr(UnitCsr.N), n)], UnitCsr.PARAM
        for name in regs.unit_parameters(unit):
            value = row["csrs"][name]
            for word in range(0, regs.unit_parameter_widths(unit)[name], 32):
                writes.append((csr(entry), (value >> word) & 0xFFFFFFFF))
                entry += 1
        for table, entries in row["tables"].items():
            window = UnitWindow[table.upper()]
            writes += [(regs.unit_address(unit, window, j), value & 0xFFFFFFFF)
                       for j, value in enumerate(entries)]
        writes += [(regs.unit_address(unit, UnitWindow.ROW, i), value & 0xFFFFFFFF)
                   for i, value in enumerate(values)]
        await bus.write_many(writes)
        await bus.write(csr(UnitCsr.CTRL), 1)
        # The START edge was the last write's; each poll is one more edge.
        cycles, status = 0, 0
        while not status >> UnitStatus.DONE & 1 and cycles < row["latency"] + HANG_MARGIN:
            status = await bus.read(csr(UnitCsr.STATUS))
            cycles += 1
        codes = await bus.read_many(regs.unit_address(unit, UnitWindow.ROW, i)
                                    for i in range(n))
        results.append({
            "codes": [code - 256 if code & 0x80 else code for code in codes],
            "flags": [bool(status >> (UNIT_FLAGS_SHIFT + check) & 1)
                      for check in range(len(UNIT_CHECKS[unit]))],
            "cycles": cycles, "error": bool(status >> UnitStatus.ERROR & 1)})
    counts = await bus.read_many(csr(UnitCsr.COUNT + check)
                                 for check in range(len(UNIT_CHECKS[unit])))
    write_response({"rows": results, "counts": counts})
