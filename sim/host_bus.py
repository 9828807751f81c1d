"""cocotb driver for the accelerator's memory-mapped host port.

Timing discipline: the bus acts at one phase of the clock, a quarter period before each
rising edge, and moves from phase to phase with ``Timer`` s only. Inputs driven at the
phase are sampled by the next rising edge; registers change only at rising edges, so
values read at the phase are stable. No wake-up ever coincides with a clock edge (a
``Timer`` ending exactly on an edge races with edge triggers), no ``ReadOnly`` phase is
needed, a bus cycle costs one Python wake-up and a bulk wait costs one, however long
(``ClockCycles`` would wake up at every edge).
"""

from cocotb.simtime import get_sim_time
from cocotb.triggers import Timer

from hw.register_map import Csr, Region, RegisterMap, Status, pack_lanes, unpack_lanes
from sim.harness import CLOCK_PERIOD_NS

__all__ = ["HostBus"]


class HostBus:
    """Drives the reset and host port of the harness (in pass-through mode) under cocotb.

    The clock runs by itself (see ``sim/harness_main.cpp``). Every coroutine starts and
    returns at the bus phase.
    """

    def __init__(self, dut, register_map: RegisterMap):
        self.dut = dut
        self.regs = register_map
        self._rst = dut.rst
        self._addr = dut.addr
        self._wdata = dut.wdata
        self._we = dut.we
        self._re = dut.re
        self._rdata = dut.rdata
        self._irq = dut.irq
        self._next_cycle = Timer(CLOCK_PERIOD_NS, unit="ns")
        self._started = False

    @property
    def cycle(self):
        """Rising clock edges since the clock started."""
        return int(get_sim_time(unit="ns") // CLOCK_PERIOD_NS)

    async def reset(self, cycles=2):
        """Move to the bus phase on first use, then hold reset for ``cycles`` rising edges."""
        if not self._started:
            # The clock is low for the first half period: rising edges at 1/2, 3/2 ...
            # periods; the bus phase is a quarter period before each of them.
            self._started = True
            self._we.value = 0
            self._re.value = 0
            self._addr.value = 0
            self._wdata.value = 0
            await Timer(CLOCK_PERIOD_NS / 4, unit="ns")
        self._rst.value = 1
        await self.wait_cycles(cycles)
        self._rst.value = 0

    async def wait_cycles(self, cycles):
        """Let ``cycles`` rising edges pass, with one wake-up."""
        if cycles == 1:
            await self._next_cycle
        elif cycles > 1:
            await Timer(cycles * CLOCK_PERIOD_NS, unit="ns")

    async def write(self, address, value):
        await self.write_many([(address, value)])

    async def write_many(self, pairs):
        """Write ``(address, value)`` pairs, one per cycle."""
        for address, value in pairs:
            self._addr.value = address
            self._wdata.value = value
            self._we.value = 1
            await self._next_cycle
        self._we.value = 0

    async def read_many(self, addresses):
        """Read words, pipelined: one cycle per address plus one."""
        values = []
        self._we.value = 0
        self._re.value = 1
        for address in addresses:
            self._addr.value = address
            await self._next_cycle
            values.append(int(self._rdata.value))
        self._re.value = 0
        return values

    async def read(self, address):
        return (await self.read_many([address]))[0]

    @property
    def irq(self):
        return int(self._irq.value)

    # Register-level helpers.

    async def load_tile(self, a_tile, b_tile):
        """Write the operand buffers (A by column, B by row) and K; 2K + 1 bus cycles."""
        regs = self.regs
        k = a_tile.shape[1]
        writes = [(regs.address(Region.A, step), pack_lanes(a_tile[:, step].tolist(), 8))
                  for step in range(k)]
        writes += [(regs.address(Region.B, step), pack_lanes(b_tile[step].tolist(), 8))
                   for step in range(k)]
        writes.append((regs.address(Region.CSR, Csr.K), k))
        await self.write_many(writes)

    async def start(self):
        await self.write(self.regs.address(Region.CSR, Csr.CTRL), 1)

    async def read_csr(self, csr):
        return await self.read(self.regs.address(Region.CSR, csr))

    async def read_result(self):
        """The result tile as a list of rows of int32 values."""
        regs = self.regs
        words = await self.read_many(regs.address(Region.RESULT, i) for i in range(regs.rows))
        return [unpack_lanes(word, regs.cols, 32) for word in words]

    async def status(self):
        word = await self.read_csr(Csr.STATUS)
        return {bit.name.lower(): bool(word >> bit & 1) for bit in Status}
