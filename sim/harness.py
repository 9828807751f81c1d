"""The simulation top level: a host model around the unmodified accelerator.

The accelerator is instantiated as a black box (``accelerator``), so the design under
test is exactly the Verilog ``softerror generate`` writes. The harness has two modes:

* Pass-through (idle): ``addr``, ``wdata``, ``we``, ``rdata``, ``irq`` and ``rst`` connect
  straight to the accelerator; ordinary testbenches drive it as an SoC would.
* Experiment: a toggle of ``run`` makes the harness run one tile the way a host does --
  reset the accelerator, write K (and the range bounds, when the accelerator has a range
  checker: reset restores their defaults), write START, wait for ``irq`` (or give up after
  ``watchdog`` cycles: ``hang``), read every result row and the STATUS register back over
  the host port, and compare the rows with ``expected``. Python only flips the bit and
  reads the verdict: an experiment costs two wake-ups, not one per cycle.

The harness's own registers are test equipment, not fault sites.

Timing (cycles counted from the bus phase at which ``run`` is toggled):
:func:`start_offset` cycles to the phase just before the edge that samples START, and
:func:`experiment_cycles` until ``finished`` reads 1 on a clean run.
"""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.netlist.generate import TOP_NAME
from hw.register_map import Csr, Region, RegisterMap

__all__ = ["ExperimentHarness", "HARNESS_NAME", "CLOCK_PERIOD_NS", "start_offset",
           "experiment_cycles", "window_cycles"]

HARNESS_NAME = "softerror_harness"
#: Clock period of every simulation; the clock is generated in C++ (``harness_main.cpp``),
#: low at time 0, rising at half a period.
CLOCK_PERIOD_NS = 10
#: CSR writes after the accelerator's reset and before START, with a range checker.
_RANGE_WRITES = (Csr.RANGE_LOWER, Csr.RANGE_UPPER, Csr.RANGE_CONTROL)


def start_offset(config):
    """Cycles from the ``run`` toggle to the phase before the START edge: the harness sees
    the toggle, resets the accelerator, writes K (and the range bounds), writes START."""
    return 3 + (len(_RANGE_WRITES) if config.range_check else 0)


def experiment_cycles(config, k):
    """Cycles from the ``run`` toggle until ``finished`` reads 1, for a clean tile of depth
    ``k`` on the accelerator ``config`` (:class:`hw.config.AcceleratorConfig`)."""
    # The start offset, the tile, the cycle that sees irq, then READ: rows + 2 cycles
    # (rows + 1 addresses, one capture behind), and the phase after the edge that sets
    # ``finished``.
    return start_offset(config) + config.tile_cycles(k) + 1 + (config.rows + 2) + 1


def window_cycles(config, k):
    """Injection window of a tile: from the START edge to the last result read."""
    return experiment_cycles(config, k) - start_offset(config)


class ExperimentHarness(wiring.Component):
    """Host model around a ``GemmAccelerator`` black box of the given geometry.

    Parameters
    ----------
    register_map : RegisterMap
        The accelerator's geometry and addresses.

    Members
    -------
    addr, wdata, we, re : In
        Pass-through host port (ignored while an experiment runs).
    rdata, irq : Out
        Pass-through host port.
    run : In(1)
        Toggle to start an experiment.
    tile_k : In(range(k_max + 1))
        K of the experiment's tile (its operands are already in the buffers: written over
        the pass-through port, or directly by :mod:`sim.memory_backdoor`).
    watchdog : In(32)
        Cycles to wait for ``irq`` before declaring a hang.
    range_lower, range_upper, range_control : In(32)
        Written to the range checker's registers after each reset (only with one).
    expected : In(rows * cols * 32)
        The expected result tile, row 0 in the low bits.
    row_mask : In(rows)
        Rows that belong to the GEMM's output (edge tiles are zero-padded).
    lane_mask : In(cols * 32)
        Bits of a row that belong to the output (all ones for the valid columns).
    finished, hang : Out(1)
        Sticky until the next experiment.
    mismatch : Out(rows)
        Bit i: the output part of result row i differed from ``expected``.
    observed : Out(rows * cols * 32)
        The rows as read back.
    done_cycles : Out(32)
        Cycles from the START edge to ``irq``.
    status : Out(32)
        The STATUS register, read after the rows.
    """

    def __init__(self, register_map: RegisterMap):
        self._regs = register_map
        row_bits = 32 * register_map.cols
        super().__init__({
            "addr": In(register_map.addr_width),
            "wdata": In(register_map.data_width),
            "we": In(1),
            "re": In(1),
            "rdata": Out(register_map.data_width),
            "irq": Out(1),
            "run": In(1),
            "tile_k": In(range(register_map.k_max + 1)),
            "watchdog": In(32),
            **({name: In(32) for name in ("range_lower", "range_upper", "range_control")}
               if register_map.range_check else {}),
            "expected": In(register_map.rows * row_bits),
            "row_mask": In(register_map.rows),
            "lane_mask": In(row_bits),
            "finished": Out(1),
            "hang": Out(1),
            "mismatch": Out(register_map.rows),
            "observed": Out(register_map.rows * row_bits),
            "done_cycles": Out(32),
            "status": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        regs = self._regs
        rows, row_bits = regs.rows, 32 * regs.cols

        bus_addr = Signal.like(self.addr)
        bus_wdata = Signal.like(self.wdata)
        bus_we, bus_re = Signal(), Signal()
        accelerator_reset = Signal()
        m.submodules.accelerator = Instance(
            TOP_NAME,
            i_clk=ClockSignal(),
            i_rst=accelerator_reset | ResetSignal(),
            i_addr=bus_addr, i_wdata=bus_wdata, i_we=bus_we, i_re=bus_re,
            o_rdata=self.rdata, o_irq=self.irq,
        )

        run_seen = Signal()
        counter = Signal(32)
        read_index = Signal(range(rows + 2))
        observed = [Signal(row_bits, name=f"observed_{i}") for i in range(rows)]
        finished, hang = Signal(), Signal()
        mismatch = Signal(rows)
        done_cycles, status = Signal(32), Signal(32)
        m.d.comb += [
            self.observed.eq(Cat(*observed)),
            self.finished.eq(finished), self.hang.eq(hang), self.mismatch.eq(mismatch),
            self.done_cycles.eq(done_cycles), self.status.eq(status),
            bus_addr.eq(self.addr), bus_wdata.eq(self.wdata), bus_we.eq(self.we),
            bus_re.eq(self.re),
        ]
        configuration = [(Csr.K, self.tile_k)]
        if regs.range_check:
            configuration += zip(_RANGE_WRITES,
                                 (self.range_lower, self.range_upper, self.range_control))

        with m.FSM(name="sequencer"):
            with m.State("IDLE"):
                with m.If(self.run != run_seen):
                    m.d.sync += [run_seen.eq(self.run), finished.eq(0), hang.eq(0),
                                 mismatch.eq(0)]
                    m.next = "RESET"
            with m.State("RESET"):
                m.d.comb += [accelerator_reset.eq(1), bus_we.eq(0), bus_re.eq(0)]
                m.next = "CONFIGURE_0"
            for number, (csr, value) in enumerate(configuration):
                with m.State(f"CONFIGURE_{number}"):
                    m.d.comb += [bus_addr.eq(regs.address(Region.CSR, csr)),
                                 bus_wdata.eq(value), bus_we.eq(1), bus_re.eq(0)]
                    last = number == len(configuration) - 1
                    m.next = "WRITE_START" if last else f"CONFIGURE_{number + 1}"
            with m.State("WRITE_START"):
                m.d.comb += [bus_addr.eq(regs.address(Region.CSR, Csr.CTRL)),
                             bus_wdata.eq(1), bus_we.eq(1), bus_re.eq(0)]
                m.d.sync += counter.eq(0)
                m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += [bus_we.eq(0), bus_re.eq(0)]
                m.d.sync += counter.eq(counter + 1)
                with m.If(self.irq):
                    m.d.sync += [done_cycles.eq(counter), read_index.eq(0)]
                    m.next = "READ"
                with m.Elif(counter == self.watchdog):
                    m.d.sync += [hang.eq(1), finished.eq(1)]
                    m.next = "IDLE"
            with m.State("READ"):
                # Cycle i addresses row i (row ``rows`` is STATUS) and captures what
                # cycle i - 1 addressed.
                m.d.comb += [bus_we.eq(0), bus_re.eq(1)]
                with m.If(read_index < rows):
                    m.d.comb += bus_addr.eq(regs.address(Region.RESULT, 0) + read_index)
                with m.Else():
                    m.d.comb += bus_addr.eq(regs.address(Region.CSR, Csr.STATUS))
                m.d.sync += read_index.eq(read_index + 1)
                with m.Switch(read_index):
                    for i in range(rows):
                        with m.Case(i + 1):
                            row = self.rdata[:row_bits]
                            expected = self.expected[i * row_bits:(i + 1) * row_bits]
                            differs = ((row ^ expected) & self.lane_mask).any()
                            m.d.sync += [observed[i].eq(row),
                                         mismatch[i].eq(differs & self.row_mask[i])]
                    with m.Case(rows + 1):
                        m.d.sync += [status.eq(self.rdata[:32]), finished.eq(1)]
                        m.next = "IDLE"
        return m
