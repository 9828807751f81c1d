"""cocotb testbench that serves fault-injection experiments to a campaign.

Runs inside the simulator, driven through a :class:`sim.simulator.SessionChannel`:

1. a set-up message names the design and the fault sites; every site's handle is looked
   up once and the design is reset;
2. each batch (:class:`sim.campaign.messages.BatchTask`) carries a tile (its operands, K
   and expected result, computed by the twin), the watchdog bound and experiments. When
   the tile changes, its operands are written into the operand buffers directly
   (:mod:`sim.memory_backdoor`, in zero simulated time; the buffers are memories: reset
   does not clear them, and upsets strike only during runs) and a golden run without an upset must reproduce
   the twin's result exactly at ``tile_cycles`` -- before the experiments, or (``golden_on_demand``)
   after the first experiment that does not already show it by reading back the twin's
   tile at that cycle without an alarm;
3. an experiment toggles the harness's ``run`` (the harness resets the accelerator, writes
   K and START, waits, reads every result row back over the host port and compares),
   sleeps until the injection cycle, flips one bit of one register with an immediate
   write (the next edge that loads the register overwrites it, as in silicon), sleeps
   until a clean run is over and reads the verdict: two Python wake-ups per experiment.
   A run not finished by then sleeps once more, until the harness's watchdog
   (:func:`sim.campaign.outcomes.watchdog_cycles` after START) has fired: a run that
   finishes late is classified by its output like any other and reports when DONE came;
   only a run with no DONE by the watchdog is a ``hang``.
   It also compares the control registers with the golden run's at the end: an upset that
   leaves them different is *latent* -- it could still affect the tiles that follow, which
   the experiment does not simulate (data-path registers are cleared or overwritten by the
   next tile before they are used, control registers need not be).

Cycle ``c`` of a tile's injection window means: just before the ``c``-th rising edge
after the edge that samples START (``c = 0``: before that edge).
"""

import time

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import Timer

from hw.accelerator import OPERAND_BUFFERS
from hw.register_map import Region, Status
from sim.campaign.messages import BatchResult, ExperimentResult, SessionReady
from sim.campaign.outcomes import classify
from sim.harness import CLOCK_PERIOD_NS, HARNESS_NAME, experiment_cycles, start_offset
from sim.host_bus import HostBus
from sim.memory_backdoor import MemoryBackdoor
from sim.signal_access import RawSignal, resolve
from sim.simulator import SessionChannel


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
        self.loaded_tile = None
        self.buffer_words = {}   # region -> the words it holds (buffers keep them across runs)
        self._timers = {}
        self._run, self._finished = RawSignal(dut.run), RawSignal(dut.finished)
        self._hang, self._mismatch = RawSignal(dut.hang), RawSignal(dut.mismatch)
        self._observed, self._done_cycles = RawSignal(dut.observed), RawSignal(dut.done_cycles)
        self._status = RawSignal(dut.status)
        # The tile's settings, written only when a tile changes them.
        names = ["tile_k", "watchdog", "expected", "row_mask", "lane_mask"]
        if config.range_check:
            names += ["range_lower", "range_upper", "range_control"]
        self._settings = {name: RawSignal(getattr(dut, name)) for name in names}
        self._written = {}
        self.buffers = {region: MemoryBackdoor(f"{HARNESS_NAME}.accelerator", name)
                        for region, name in OPERAND_BUFFERS.items()}
        self.start_offset = start_offset(config)

    def _wait(self, cycles):
        timer = self._timers.get(cycles)
        if timer is None:
            timer = self._timers[cycles] = Timer(cycles * CLOCK_PERIOD_NS, unit="ns")
        return timer

    async def load_tile(self, tile, watchdog_cycles, golden=True):
        """Load operands and expectations, then (``golden``) check a golden run against
        the twin."""
        self._load(Region.A, tile.a_words, tile.k)
        self._load(Region.B, tile.b_words, tile.k)
        self.tile_cycles = self.config.tile_cycles(tile.k)
        self.experiment_cycles = experiment_cycles(self.config, tile.k)
        self.watchdog = watchdog_cycles
        # The rows the host reads, int32 row after row, lane 0 lowest: the harness's
        # ``expected`` word.
        expected = int.from_bytes(np.asarray(tile.expected, dtype="<i4").tobytes(), "little")
        settings = {"tile_k": tile.k, "watchdog": watchdog_cycles, "expected": expected,
                    "row_mask": (1 << tile.valid_rows) - 1,
                    "lane_mask": (1 << (32 * tile.valid_cols)) - 1}
        if self.config.range_check:
            lower, upper, zero = tile.range
            settings.update(range_lower=lower & 0xFFFFFFFF, range_upper=upper & 0xFFFFFFFF,
                            range_control=int(zero))
        for name, value in settings.items():
            if self._written.get(name) != value:
                self._settings[name].deposit(value)
                self._written[name] = value
        self.loaded_tile = (tile.key, watchdog_cycles)
        self.golden_control = None
        if golden:
            await self.golden_run(tile)

    async def golden_run(self, tile):
        """A run without an upset: it must read back the twin's tile, without an alarm, at
        ``tile_cycles``; its control registers are the reference for latent upsets."""
        golden = await self.run(-1, None, 0, 0)
        self.golden_control = [register.read() for register in self.control]
        if not self._shows_clean(golden):
            raise AssertionError(
                f"Golden run of tile {tile.key} disagrees with the twin and the timing: "
                f"outcome {golden.outcome} (STATUS {self._status.read():#x}), DONE after "
                f"{golden.done_cycles} cycles (expected {self.tile_cycles})")

    def _shows_clean(self, result):
        return result.outcome == "masked" and result.done_cycles == self.tile_cycles

    def _load(self, region, words, k):
        """Write ``words`` (bytes: :class:`TileData`'s ``k`` buffer words) into operand
        buffer ``region``, unless it holds them already (a weight tile shared by passes of
        several images)."""
        if self.buffer_words.get(region) == words:
            return
        self.buffer_words[region] = None
        self.buffers[region].write(words, len(words) // k)
        self.buffer_words[region] = words

    async def run(self, experiment, site, bit, cycle):
        """One experiment; ``site=None`` runs without an upset."""
        self.run_toggle ^= 1
        self._run.deposit(self.run_toggle)
        if site is None:
            await self._wait(self.experiment_cycles)
        else:
            await self._wait(self.start_offset + cycle)
            self.registers[site].flip(bit)
            await self._wait(self.experiment_cycles - self.start_offset - cycle)
        if not self._finished.read():
            # Late or never: wait until the watchdog has fired and the rows are read.
            await self._wait(self.watchdog + self.config.rows + 4)
        hang = bool(self._hang.read())
        mismatch = self._mismatch.read()
        status = self._status.read()
        alarm = bool(status >> Status.ABFT_ERROR & 1 or status >> Status.RANGE_FLAG & 1)
        outcome = classify(hang=hang, output_wrong=not hang and mismatch != 0, alarm=alarm,
                           corrected=bool(status >> Status.ABFT_CORRECTED & 1))
        latent = self.golden_control is not None and any(
            register.read() != value for register, value in zip(self.control, self.golden_control))
        # The harness keeps DONE's cycle from the last run that had one: a hang has none.
        return ExperimentResult(
            experiment=experiment, outcome=outcome,
            done_cycles=None if hang else self._done_cycles.read(),
            observed=self._observed_tile() if outcome in ("sdc", "detected") else None,
            latent=latent, status=0 if hang else int(status))

    async def run_batch(self, batch):
        """The :class:`BatchResult` of a :class:`BatchTask`."""
        verified = True
        started, first_cycle = time.perf_counter(), get_sim_time(unit="ns")
        if (batch.tile.key, batch.watchdog_cycles) != self.loaded_tile:
            verified = not batch.golden_on_demand
            await self.load_tile(batch.tile, batch.watchdog_cycles, golden=verified)
        results = []
        for e in batch.experiments:
            results.append(await self.run(e.experiment, e.site, e.bit, e.cycle))
            if not verified:
                if not self._shows_clean(results[-1]):
                    await self.golden_run(batch.tile)
                verified = True
        return BatchResult(tuple(results), time.perf_counter() - started,
                           int(get_sim_time(unit="ns") - first_cycle) // CLOCK_PERIOD_NS)

    def _observed_tile(self):
        """The rows the host read: int32, little-endian, row by row."""
        regs = self.config.register_map
        return self._observed.read().to_bytes(4 * regs.rows * regs.cols, "little")


@cocotb.test()
async def serve_experiments(dut):
    """Serve set-up and batch messages (a batch, or a tuple of batches answered with a tuple
    of results) until the session closes."""
    channel = SessionChannel()
    setup = channel.receive()
    runner = ExperimentRunner(dut, setup.config, setup.site_paths, setup.control_paths)
    await runner.bus.reset()
    channel.send(SessionReady())
    while (message := channel.receive()) is not None:
        if isinstance(message, tuple):
            channel.send(tuple([await runner.run_batch(batch) for batch in message]))
        else:
            channel.send(await runner.run_batch(message))
