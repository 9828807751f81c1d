"""The control FSM that sequences one tile: compute, drain, done."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import BUFFER_READ_LATENCY
from hw.validation import check_int

__all__ = ["TileController"]


class TileController(wiring.Component):
    """Sequences a tile: IDLE, then COMPUTE, then DRAIN, then back to IDLE with DONE set.

    The operand buffers are loaded by the host while the controller is idle (the "load"
    phase of the tile). A ``start`` strobe in IDLE with a legal ``k`` clears the
    accumulators and enters COMPUTE, which lasts :func:`compute_cycles` cycles: it reads
    buffer entries 0 .. k-1 (``read_addr``, one per cycle; ``feed_valid`` marks the cycles
    whose buffer data is real, zeros are fed otherwise) and waits for the wavefront to
    cross the array. DRAIN then shifts the array down for ``rows`` cycles, writing result
    row ``rows - 1 - d`` in drain cycle ``d``. ``done`` is sticky until the next start.

    A ``start`` that is refused sets ``error`` (cleared by the next accepted start): with
    ``k`` of 0 or above ``k_max`` it also clears ``done``, so that nobody waiting for
    ``done`` takes the previous tile's results for the refused one; while busy it leaves
    the running tile alone, which sets ``done`` when it ends.

    Parameters
    ----------
    rows, cols, k_max : int
        Array size and buffer depth.

    Members
    -------
    start : In(1)
    k : In(range(k_max + 2))
        The K register: a value above ``k_max`` is illegal.
    busy, done, error : Out(1)
    read_addr : Out(range(k_max))
    feed_valid : Out(1)
    clear, shift : Out(1)
        To the array.
    result_write_en : Out(1)
    result_write_row : Out(range(rows))
        In DRAIN: the array row leaving this cycle.
    drain_last : Out(1)
        The last DRAIN cycle.
    cycles : Out(32)
        Busy cycles of the last (or current) tile.
    tiles : Out(32)
        Tiles completed since reset.
    """

    def __init__(self, *, rows, cols, k_max):
        self._rows = check_int("Array rows", rows, 1, 256)
        self._cols = check_int("Array cols", cols, 1, 256)
        self._k_max = check_int("k_max", k_max, 1, 1 << 16)
        super().__init__({
            "start": In(1),
            "k": In(range(k_max + 2)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "read_addr": Out(range(k_max)),
            "feed_valid": Out(1),
            "clear": Out(1),
            "shift": Out(1),
            "result_write_en": Out(1),
            "result_write_row": Out(range(rows)),
            "drain_last": Out(1),
            "cycles": Out(32),
            "tiles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        last_compute_step = BUFFER_READ_LATENCY + rows + cols - 3  # plus k, added below
        step = Signal(range(self._k_max + rows + cols + 1), name="step")
        feed_valid = Signal(name="feed_valid")
        done = Signal(name="done")
        error = Signal(name="error")
        cycles = Signal(32, name="cycle_count")
        tiles = Signal(32, name="tile_count")

        legal_k = (self.k != 0) & (self.k <= self._k_max)
        m.d.comb += [
            self.read_addr.eq(step),
            self.feed_valid.eq(feed_valid),
            self.done.eq(done),
            self.error.eq(error),
            self.cycles.eq(cycles),
            self.tiles.eq(tiles),
        ]

        with m.FSM(name="tile"):
            with m.State("IDLE"):
                m.d.sync += feed_valid.eq(0)
                with m.If(self.start):
                    with m.If(legal_k):
                        m.d.comb += self.clear.eq(1)
                        m.d.sync += [step.eq(0), done.eq(0), error.eq(0), cycles.eq(0)]
                        m.next = "COMPUTE"
                    with m.Else():
                        m.d.sync += [error.eq(1), done.eq(0)]
            with m.State("COMPUTE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    cycles.eq(cycles + 1),
                    feed_valid.eq(step < self.k),
                    step.eq(step + 1),
                ]
                with m.If(step == last_compute_step + self.k):
                    m.d.sync += step.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.shift.eq(1),
                    self.result_write_en.eq(1),
                    self.result_write_row.eq(rows - 1 - step),
                ]
                m.d.sync += [cycles.eq(cycles + 1), step.eq(step + 1)]
                with m.If(step == rows - 1):
                    m.d.comb += self.drain_last.eq(1)
                    m.d.sync += [done.eq(1), tiles.eq(tiles + 1)]
                    m.next = "IDLE"
        with m.If(self.start & self.busy):
            m.d.sync += error.eq(1)
        return m
