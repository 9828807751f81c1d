"""cocotb testbench that serves fault-injection experiments on the nonlinear units.

Runs inside the simulator, driven through a :class:`sim.simulator.SessionChannel`, in one
of two modes chosen by the first message:

* a :class:`~sim.campaign.messages.UnitSessionSetup` (:mod:`sim.nonlinear_campaign`)
  names the design, one unit, its parameters, the sites and the workload's rows; each
  row runs once without an upset, STATUS polled every cycle (the golden runs: their
  codes, flags and DONE cycle are checked against the twin outside); each message after
  it is a tuple of :class:`~sim.campaign.messages.UnitExperiment`, answered by a tuple
  of :class:`~sim.campaign.messages.UnitRun`;
* a :class:`~sim.campaign.messages.UnitRowSetup` (:mod:`sim.cosim.unit_engine`) names
  the design and the sites; each message after it is a tuple of
  :class:`~sim.campaign.messages.UnitRowTask`: a row a model feeds a unit with the
  unit's parameters, whose tables are written once, then the row with each upset and,
  unless one of those runs already reads back the task's expected codes at the latency
  with no checker flag, once without an upset, answered by a
  :class:`~sim.campaign.messages.UnitRowResult` each.

An experiment resets the accelerator (nothing of an earlier upset survives: a hung unit
too; the per-channel tables are memories, which reset leaves alone), writes the
parameters, N, the row (the softmax overwrites its input buffer) and START in one burst,
sleeps until the injection cycle, flips one bit of one register with an immediate write
(the next edge that loads the register overwrites it, as in silicon), sleeps until the
row's latency and reads STATUS and the codes in one pipelined burst. A row without DONE
by then is read once more at its watchdog. Python wakes up once per bus cycle of the
host's writes and reads and twice for the upset, never per busy cycle.

Cycle ``c`` of a row means: after the ``c``-th rising edge counted from the one that
samples START (the first), before the next one -- the bus phase ``c - 1`` cycles after
the START write returns.
"""

import cocotb
from cocotb.triggers import Timer

from hw.register_map import UNIT_CHECKS, UNIT_FLAGS_SHIFT, UnitStatus
from sim.campaign.messages import UnitRowResult, UnitRowSetup, UnitRun, UnitSessionReady
from sim.harness import CLOCK_PERIOD_NS
from sim.signal_access import RawSignal, resolve
from sim.simulator import SessionChannel
from sim.testbenches.nonlinear import UnitDriver, signed_codes


class _Striker:
    """Runs one row with at most one upset on a design's units; one per simulator."""

    def __init__(self, dut, config, units, site_paths):
        self.drivers = {unit: UnitDriver(dut, config, unit) for unit in units}
        self.bus = next(iter(self.drivers.values())).bus
        self.registers = [RawSignal(resolve(dut.accelerator, path)) for path in site_paths]
        self._timers = {}

    def _wait(self, cycles):
        timer = self._timers.get(cycles)
        if timer is None:
            timer = self._timers[cycles] = Timer(cycles * CLOCK_PERIOD_NS, unit="ns")
        return timer

    async def start(self, writes):
        """Reset, then ``writes`` (parameters, N, the row and START): returns after the
        START edge."""
        await self.bus.reset()
        await self.bus.write_many(writes)

    async def run(self, number, writes, reads, latency, watchdog, upset=None):
        """The :class:`UnitRun` of a row (``writes`` up to START, ``reads``: STATUS and the
        codes) with ``upset`` = (site, bit, cycle) or none."""
        await self.start(writes)
        cycle = 1
        if upset is not None:
            site, bit, cycle = upset
            if cycle > 1:
                await self._wait(cycle - 1)
            self.registers[site].flip(bit)
        if latency > cycle:
            await self._wait(latency - cycle)
        # The first read sees the unit after the latency-th edge.
        words = await self.bus.read_many(reads)
        done_cycles, late = latency, False
        if not words[0] >> UnitStatus.DONE & 1:
            await self._wait(watchdog - latency - len(reads))
            words = await self.bus.read_many(reads)
            late = bool(words[0] >> UnitStatus.DONE & 1)
            done_cycles = watchdog if late else None
        return UnitRun(number, words[0], tuple(signed_codes(words[1:])), done_cycles, late)


class UnitExperimentRunner:
    """A unit campaign's fixed rows and their experiments."""

    def __init__(self, dut, setup):
        self.striker = _Striker(dut, setup.config, (setup.unit,), setup.site_paths)
        self.driver = driver = self.striker.drivers[setup.unit]
        self.rows, self.latency, self.watchdog = setup.rows, setup.latency, setup.watchdog
        parameters = driver.parameter_writes(setup.csrs) + driver.table_writes(setup.tables)
        self.writes = [parameters + driver.row_writes(row) + [driver.start_write]
                       for row in self.rows]
        self.reads = [[driver.status_address, *driver.code_addresses(len(row))]
                      for row in self.rows]

    async def golden(self, row):
        """Row ``row`` without an upset, STATUS polled every cycle up to its watchdog."""
        await self.striker.start(self.writes[row])
        status, cycles = await self.driver.wait_done(self.watchdog[row])
        codes = await self.driver.read_codes(len(self.rows[row]))
        done = status >> UnitStatus.DONE & 1
        return UnitRun(-1 - row, status, tuple(codes), cycles if done else None)

    async def run(self, experiment):
        row = experiment.row
        return await self.striker.run(
            experiment.experiment, self.writes[row], self.reads[row], self.latency[row],
            self.watchdog[row], (experiment.site, experiment.bit, experiment.cycle))


class RowTaskRunner:
    """A model campaign's rows, each with its parameters and upsets."""

    def __init__(self, dut, setup):
        self.striker = _Striker(dut, setup.config, setup.config.nonlinear, setup.site_paths)

    async def run(self, task):
        driver = self.striker.drivers[task.unit]
        if task.tables:
            await self.striker.bus.reset()
            await self.striker.bus.write_many(driver.table_writes(task.tables))
        writes = (driver.parameter_writes(task.csrs) + driver.row_writes(task.row)
                  + [driver.start_write])
        reads = [driver.status_address, *driver.code_addresses(len(task.row))]
        runs = [await self.striker.run(experiment.experiment, writes, reads, task.latency,
                                       task.watchdog,
                                       (experiment.site, experiment.bit, experiment.cycle))
                for experiment in task.experiments]
        flags = (1 << len(UNIT_CHECKS[task.unit])) - 1
        golden = None if task.expected is None else next(
            (run for run in runs if run.codes == task.expected
             and run.done_cycles == task.latency and not run.status >> UNIT_FLAGS_SHIFT & flags),
            None)
        if golden is None:
            golden = await self.striker.run(-1, writes, reads, task.latency, task.watchdog)
        return UnitRowResult(golden, tuple(runs))


@cocotb.test()
async def serve_unit_experiments(dut):
    """Serve the set-up, then tuples of experiments or row tasks, until the session
    closes."""
    channel = SessionChannel()
    setup = channel.receive()
    if isinstance(setup, UnitRowSetup):
        runner = RowTaskRunner(dut, setup)
        channel.send(UnitSessionReady(()))
        while (message := channel.receive()) is not None:
            channel.send(tuple([await runner.run(task) for task in message]))
        return
    runner = UnitExperimentRunner(dut, setup)
    channel.send(UnitSessionReady(tuple([await runner.golden(row)
                                         for row in range(len(runner.rows))])))
    while (message := channel.receive()) is not None:
        channel.send(tuple([await runner.run(experiment) for experiment in message]))
