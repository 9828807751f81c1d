"""cocotb testbench: rows through a nonlinear unit over the host port, as a driver does.

Per row: the parameters and the per-channel tables (LayerNorm), N, the row into the ROW
window, START; STATUS is polled until DONE (the cycles from the START write are counted:
they must be the unit's latency), then the codes are read back from the ROW window and the
checker flags from STATUS. The counters are read at the end.

:class:`UnitDriver` is that host, shared with the fault-injection testbench
(:mod:`sim.testbenches.unit_campaign`).
"""

import cocotb

from hw.config import AcceleratorConfig
from hw.register_map import UNIT_CHECKS, UNIT_FLAGS_SHIFT, UnitCsr, UnitStatus, UnitWindow
from sim.host_bus import HostBus
from sim.simulator import read_request, write_response

#: Polls of STATUS per row before the row counts as hung, beyond its latency.
HANG_MARGIN = 64


class UnitDriver:
    """The host side of one nonlinear unit (docs/register-map.md, "Nonlinear units").

    Every coroutine starts and returns at the bus phase (:class:`sim.host_bus.HostBus`).
    """

    def __init__(self, dut, config, unit):
        self.unit = unit
        self.regs = config.register_map
        self.bus = HostBus(dut, self.regs)
        self.status_address = self.csr(UnitCsr.STATUS)
        self.start_write = (self.csr(UnitCsr.CTRL), 1)

    def csr(self, entry):
        return self.regs.unit_address(self.unit, UnitWindow.CSR, entry)

    def code_addresses(self, n):
        """The ROW window's first ``n`` entries: the last row's codes when read."""
        return [self.regs.unit_address(self.unit, UnitWindow.ROW, i) for i in range(n)]

    def parameter_writes(self, csrs):
        """``(address, word)`` pairs writing the parameters ``csrs`` (by port name), a
        parameter wider than 32 bits as several words, its low bits first."""
        writes, entry = [], UnitCsr.PARAM
        for name in self.regs.unit_parameters(self.unit):
            value = csrs[name]
            for word in range(0, self.regs.unit_parameter_widths(self.unit)[name], 32):
                writes.append((self.csr(entry), (value >> word) & 0xFFFFFFFF))
                entry += 1
        return writes

    def table_writes(self, tables):
        """``(address, word)`` pairs writing per-channel tables (LayerNorm's ``gain`` and
        ``offset``, by name)."""
        return [(self.regs.unit_address(self.unit, UnitWindow[table.upper()], j),
                 value & 0xFFFFFFFF)
                for table, entries in tables.items() for j, value in enumerate(entries)]

    def row_writes(self, row):
        """``(address, word)`` pairs writing N and the row's elements."""
        return [(self.csr(UnitCsr.N), len(row))] + [
            (address, value & 0xFFFFFFFF)
            for address, value in zip(self.code_addresses(len(row)), row)]

    async def wait_done(self, limit):
        """Poll STATUS from the START edge on until DONE or ``limit`` polls: (STATUS, the
        edges from START to DONE, the START edge included)."""
        # The START edge was the last write's; each poll is one more edge.
        cycles, status = 0, 0
        while not status >> UnitStatus.DONE & 1 and cycles < limit:
            status = await self.bus.read(self.status_address)
            cycles += 1
        return status, cycles

    async def read_codes(self, n):
        """The last row's ``n`` output codes, signed."""
        return signed_codes(await self.bus.read_many(self.code_addresses(n)))

    def flags(self, status):
        """The checker flags in a STATUS word, in the order of :data:`UNIT_CHECKS`."""
        return [bool(status >> (UNIT_FLAGS_SHIFT + check) & 1)
                for check in range(len(UNIT_CHECKS[self.unit]))]

    async def read_counts(self):
        return await self.bus.read_many(self.csr(UnitCsr.COUNT + check)
                                        for check in range(len(UNIT_CHECKS[self.unit])))


def signed_codes(words):
    """int8 codes from the zero-extended words the ROW window reads."""
    return [(word & 0xFF) - 256 if word & 0x80 else word & 0xFF for word in words]


@cocotb.test()
async def run_rows(dut):
    request = read_request()
    driver = UnitDriver(dut, AcceleratorConfig(**request["design"]), request["unit"])
    await driver.bus.reset()
    results = []
    for row in request["rows"]:
        values = row["values"]
        await driver.bus.write_many(driver.parameter_writes(row["csrs"])
                                    + driver.table_writes(row["tables"])
                                    + driver.row_writes(values) + [driver.start_write])
        status, cycles = await driver.wait_done(row["latency"] + HANG_MARGIN)
        results.append({"codes": await driver.read_codes(len(values)),
                        "flags": driver.flags(status), "cycles": cycles,
                        "error": bool(status >> UnitStatus.ERROR & 1)})
    write_response({"rows": results, "counts": await driver.read_counts()})
