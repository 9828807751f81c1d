"""cocotb testbench that serves fault-injection experiments to a campaign.

Runs inside the simulator, driven through a :class:`sim.simulator.SessionChannel`:

1. a set-up message names the design and the fault sites; every site's handle is looked
   up once and the design is reset;
2. each batch message carries a tile (its operands, K and expected result, computed by
   the twin) and experiments ``[id, site, bit, cycle]``. When the tile changes, its
   operands are loaded over the host port (the buffers are memories: reset does not clear
   them) and a golden run without an upset must reproduce the twin's result exactly at
   ``tile_cycles``;
3. an experiment toggles the harness's ``run`` (the harness resets the accelerator, writes
   K and START, waits, reads every result row back over the host port and compares),
   sleeps until the injection cycle, flips one bit of one register with an immediate
   write (the next edge that loads the register overwrites it, as in silicon), sleeps
   until the run must be over and reads the verdict: two Python wake-ups per experiment.
   It also compares the control registers with the golden run's at the end: an upset that
   leaves them different is *latent* -- it could still affect the tiles that follow, which
   the experiment does not simulate (data-path registers are cleared or overwritten by the
   next tile before they are used, control registers need not be).

Cycle ``c`` of a tile's injection window means: just before the ``c``-th rising edge
after the edge that samples START (``c = 0``: before that edge).
"""

import time

import cocotb
from cocotb.triggers import Timer

from hw.config import AcceleratorConfig
from hw.register_map import Region, Status, pack_lanes
from sim.campaign.outcomes import OUTCOMES, classify
from sim.harness import CLOCK_PERIOD_NS, experiment_cycles, start_offset
from sim.host_bus import HostBus
from sim.signal_access import RawSignal, resolve
from sim.simulator import SessionChannel

#: Extra cycles the watchdog allows beyond a clean tile, as a multiple of its length.
WATCHDOG_FACTOR = 2


class ExperimentRunner:
    """Runs experiments on the harness; one instance per simulator process."""

    def __init__(self, dut, config, site_paths, control_paths):
        self.dut = dut
        self.config = config
        self.bus = HostBus(dut, config.register_map)
        self.registers = [RawSignal(resolve(dut.accelerator, path)) for path in site_paths]
        self.control = [RawSignal(resolve(dut.accelerator, path)) for path in control_paths]
        self.golden_control = None
        self.run_toggle = 0
        self.late = False
        self.loaded_tile = None
        self.tile_cycles = None
        self._timers = {}
        self._run, self._finished = RawSignal(dut.run), RawSignal(dut.finished)
        self._hang, self._mismatch = RawSignal(dut.hang), RawSignal(dut.mismatch)
        self._observed, self._done_cycles = RawSignal(dut.observed), RawSignal(dut.done_cycles)
        self._status = RawSignal(dut.status)
        self.start_offset = start_offset(config)

    def _wait(self, cycles):
        timer = self._timers.get(cycles)
        if timer is None:
            timer = self._timers[cycles] = Timer(cycles * CLOCK_PERIOD_NS, unit="ns")
        return timer

    async def load_tile(self, tile):
        """Load operands and expectations, then check a golden run against the twin."""
        regs = self.config.register_map
        writes = [(regs.address(Region.A, step), word) for step, word in enumerate(tile["a_words"])]
        writes += [(regs.address(Region.B, step), word) for step, word in enumerate(tile["b_words"])]
        await self.bus.write_many(writes)
        k = len(tile["a_words"])
        self.tile_cycles = self.config.tile_cycles(k)
        self.experiment_cycles = experiment_cycles(self.config, k)
        self.watchdog = WATCHDOG_FACTOR * self.tile_cycles
        row_bits = 32 * regs.cols
        self.dut.tile_k.value = k
        self.dut.watchdog.value = self.watchdog
        self.dut.expected.value = sum(pack_lanes(row, 32) << (i * row_bits)
                                      for i, row in enumerate(tile["expected"]))
        self.dut.row_mask.value = (1 << tile["valid_rows"]) - 1
        self.dut.lane_mask.value = (1 << (32 * tile["valid_cols"])) - 1
        if self.config.range_check:
            lower, upper, zero = tile["range"]
            self.dut.range_lower.value = lower & 0xFFFFFFFF
            self.dut.range_upper.value = upper & 0xFFFFFFFF
            self.dut.range_control.value = int(zero)
        self.loaded_tile = tile["key"]
        self.golden_control = None
        outcome, done_cycles, _, _ = await self.run(None, 0, 0)
        self.golden_control = [register.read() for register in self.control]
        if outcome != "masked" or done_cycles != self.tile_cycles or self.late:
            raise AssertionError(
                f"Golden run of tile {tile['key']} disagrees with the twin and the timing: "
                f"outcome {outcome} (STATUS {self._status.read():#x}), DONE after "
                f"{done_cycles} cycles (expected {self.tile_cycles}), finished "
                f"{'late' if self.late else 'on time'}")

    async def run(self, site, bit, cycle):
        """One experiment; ``site=None`` runs without an upset.

        Returns (outcome, DONE cycles, observed tile as hex when the output is wrong,
        latent)."""
        self.run_toggle ^= 1
        self._run.deposit(self.run_toggle)
        await self._wait(self.start_offset + cycle)
        if site is not None:
            self.registers[site].flip(bit)
        await self._wait(self.experiment_cycles - self.start_offset - cycle)
        self.late = not self._finished.read()
        if self.late:
            # Late or hung: give the watchdog time to fire, then read the harness.
            await self._wait(self.watchdog + self.config.rows + 4)
        hang = bool(self._hang.read())
        mismatch = self._mismatch.read()
        status = self._status.read()
        alarm = bool(status >> Status.ABFT_ERROR & 1 or status >> Status.RANGE_FLAG & 1)
        outcome = classify(hang=hang, output_wrong=not hang and mismatch != 0, alarm=alarm,
                           corrected=bool(status >> Status.ABFT_CORRECTED & 1))
        observed = (format(self._observed.read(), "x") if outcome in ("sdc", "detected")
                    else None)
        latent = self.golden_control is not None and any(
            register.read() != value for register, value in zip(self.control, self.golden_control))
        return outcome, self._done_cycles.read(), observed, latent


@cocotb.test()
async def serve_experiments(dut):
    """Serve set-up and batch messages until the session closes."""
    channel = SessionChannel()
    setup = channel.receive()
    config = AcceleratorConfig(**setup["design"])
    runner = ExperimentRunner(dut, config, setup["sites"], setup["control_sites"])
    await runner.bus.reset()
    channel.send({"ready": True, "outcomes": list(OUTCOMES)})
    while (batch := channel.receive()) is not None:
        if batch["tile"]["key"] != runner.loaded_tile:
            await runner.load_tile(batch["tile"])
        started = time.perf_counter()
        results = []
        for experiment, site, bit, cycle in batch["experiments"]:
            outcome, done_cycles, observed, latent = await runner.run(site, bit, cycle)
            results.append([experiment, outcome, done_cycles, observed, latent])
        channel.send({"results": results, "seconds": time.perf_counter() - started})
