"""cocotb testbench that serves a nonlinear unit's fault-injection experiments.

Runs inside the simulator, driven through a :class:`sim.simulator.SessionChannel` by
:mod:`sim.nonlinear_campaign`:

1. a :class:`~sim.campaign.messages.UnitSessionSetup` names the design, the unit, its
   parameters, the sites and the rows; every site's handle is looked up once and each
   row runs once without an upset, STATUS polled every cycle (the golden runs: their
   codes, flags and DONE cycle are checked against the twin outside);
2. each message after it is a tuple of :class:`~sim.campaign.messages.UnitExperiment`,
   answered by a tuple of :class:`~sim.campaign.messages.UnitRun`. An experiment resets
   the accelerator (nothing of an earlier upset survives: a hung unit too), writes the
   parameters, N, the row (the softmax overwrites its input buffer) and START in one
   burst, sleeps until the injection cycle, flips one bit of one register with an
   immediate write (the next edge that loads the register overwrites it, as in silicon),
   sleeps until the row's latency and reads STATUS and the codes in one pipelined burst.
   A row without DONE by then is read once more at its watchdog. Python wakes up once
   per bus cycle of the host's writes and reads and twice for the upset, never per
   busy cycle.

Cycle ``c`` of a row means: after the ``c``-th rising edge counted from the one that
samples START (the first), before the next one -- the bus phase ``c - 1`` cycles after
the START write returns.
"""

import cocotb
from cocotb.triggers import Timer

from hw.register_map import UnitStatus
from sim.campaign.messages import UnitRun, UnitSessionReady
from sim.harness import CLOCK_PERIOD_NS
from sim.signal_access import RawSignal, resolve
from sim.simulator import SessionChannel
from sim.testbenches.nonlinear import UnitDriver, signed_codes


class UnitExperimentRunner:
    """Runs a unit's experiments; one instance per simulator process."""

    def __init__(self, dut, setup):
        self.driver = driver = UnitDriver(dut, setup.config, setup.unit)
        self.registers = [RawSignal(resolve(dut.accelerator, path))
                          for path in setup.site_paths]
        self.rows, self.latency, self.watchdog = setup.rows, setup.latency, setup.watchdog
        parameters = driver.parameter_writes(setup.csrs) + driver.table_writes(setup.tables)
        self.writes = [parameters + driver.row_writes(row) + [driver.start_write]
                       for row in self.rows]
        self.reads = [[driver.status_address, *driver.code_addresses(len(row))]
                      for row in self.rows]
        self._timers = {}

    def _wait(self, cycles):
        timer = self._timers.get(cycles)
        if timer is None:
            timer = self._timers[cycles] = Timer(cycles * CLOCK_PERIOD_NS, unit="ns")
        return timer

    async def _start(self, row):
        """Reset, then parameters, N, the row and START: returns after the START edge."""
        await self.driver.bus.reset()
        await self.driver.bus.write_many(self.writes[row])

    async def golden(self, row):
        """Row ``row`` without an upset, STATUS polled every cycle up to its watchdog."""
        await self._start(row)
        status, cycles = await self.driver.wait_done(self.watchdog[row])
        codes = await self.driver.read_codes(len(self.rows[row]))
        done = status >> UnitStatus.DONE & 1
        return UnitRun(-1 - row, status, tuple(codes), cycles if done else None)

    async def run(self, experiment):
        row, cycle = experiment.row, experiment.cycle
        latency, reads = self.latency[row], self.reads[row]
        await self._start(row)
        if cycle > 1:
            await self._wait(cycle - 1)
        self.registers[experiment.site].flip(experiment.bit)
        if latency > cycle:
            await self._wait(latency - cycle)
        # The first read sees the unit after the latency-th edge.
        words = await self.driver.bus.read_many(reads)
        done_cycles, late = latency, False
        if not words[0] >> UnitStatus.DONE & 1:
            await self._wait(self.watchdog[row] - latency - len(reads))
            words = await self.driver.bus.read_many(reads)
            late = bool(words[0] >> UnitStatus.DONE & 1)
            done_cycles = self.watchdog[row] if late else None
        return UnitRun(experiment.experiment, words[0], tuple(signed_codes(words[1:])),
                       done_cycles, late)


@cocotb.test()
async def serve_unit_experiments(dut):
    """Serve the set-up, then tuples of experiments, until the session closes."""
    channel = SessionChannel()
    runner = UnitExperimentRunner(dut, channel.receive())
    channel.send(UnitSessionReady(tuple([await runner.golden(row)
                                         for row in range(len(runner.rows))])))
    while (message := channel.receive()) is not None:
        channel.send(tuple([await runner.run(experiment) for experiment in message]))
