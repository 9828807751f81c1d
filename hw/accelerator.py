"""The GEMM accelerator: operand buffers, skew, systolic array, drain, control, host port."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.checksum_unit import ChecksumUnit
from hw.range_checker import RangeChecker
from hw.register_map import ABFT_MODES, Csr, Region, RegisterMap, Status
from hw.result_buffer import ResultBuffer
from hw.skew_buffer import SkewBuffer
from hw.systolic_array import MAX_DIMENSION, SystolicArray
from hw.tile_controller import TileController, busy_cycles
from hw.validation import check_int

__all__ = ["GemmAccelerator", "MAX_K"]

MAX_K = 4096


class GemmAccelerator(wiring.Component):
    """Output-stationary int8 GEMM accelerator computing one ``rows x cols`` tile at a time.

    The host loads a tile's operands into two on-chip buffers (A: ``rows x k``, stored by
    column; B: ``k x cols``, stored by row), writes K and START, waits for DONE (or the
    ``irq`` pin) and reads the tile back row by row. C = A x B with int8 operands and int32
    accumulators that wrap around. The register map is in :mod:`hw.register_map` and
    ``docs/register-map.md``.

    Optional protection: a checksum unit (:class:`hw.checksum_unit.ChecksumUnit`) checks
    each tile as it drains and, in ``rowcol`` mode, corrects single-row or single-column
    errors as the host reads; a range checker (:class:`hw.range_checker.RangeChecker`)
    clamps what the host reads to programmable bounds. Neither adds a cycle to a tile.

    Timing: the tile is busy for :meth:`tile_cycles` cycles after the edge that samples
    START (buffer read, skew, wavefront, drain); :meth:`tile_cycles` is the number a
    testbench waits, never a hard-coded latency. Bus reads return one cycle later.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each; need not be equal or powers of two.
    k_max : int
        Depth of the operand buffers: the longest K one tile can take (1 to 4096).
    abft : str
        ``"none"``, ``"col"`` (column checksums: detect and locate columns) or
        ``"rowcol"`` (row and column checksums: also correct).
    range_check : bool
        Whether the output path has a range checker.

    Members
    -------
    addr : In(register_map.addr_width)
    wdata : In(register_map.data_width)
    we : In(1)
    re : In(1)
        The host consumes the word read (only counts out-of-range values).
    rdata : Out(register_map.data_width)
        The word addressed in the previous cycle.
    irq : Out(1)
        The DONE status bit.

    Raises
    ------
    TypeError
        If a parameter is not an integer in its range.
    """

    def __init__(self, *, rows=8, cols=8, k_max=256, abft="none", range_check=False):
        self.check_parameters(rows=rows, cols=cols, k_max=k_max, abft=abft,
                              range_check=range_check)
        self._rows, self._cols, self._k_max = rows, cols, k_max
        self._abft, self._range_check = abft, range_check
        self._register_map = RegisterMap(rows, cols, k_max, abft, range_check)
        regs = self._register_map
        super().__init__({
            "addr": In(regs.addr_width),
            "wdata": In(regs.data_width),
            "we": In(1),
            "re": In(1),
            "rdata": Out(regs.data_width),
            "irq": Out(1),
        })

    @staticmethod
    def check_parameters(*, rows, cols, k_max, abft="none", range_check=False):
        """Raise ``TypeError`` unless the parameters make a legal accelerator."""
        check_int("Array rows", rows, 1, MAX_DIMENSION)
        check_int("Array cols", cols, 1, MAX_DIMENSION)
        check_int("k_max", k_max, 1, MAX_K)
        if abft not in ABFT_MODES:
            raise TypeError(f"abft must be one of {', '.join(map(repr, ABFT_MODES))}, "
                            f"not {abft!r}")
        if not isinstance(range_check, bool):
            raise TypeError(f"range_check must be True or False, not {range_check!r}")

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    @property
    def k_max(self):
        return self._k_max

    @property
    def abft(self):
        return self._abft

    @property
    def range_check(self):
        return self._range_check

    @property
    def register_map(self):
        return self._register_map

    def tile_cycles(self, k):
        """Clock cycles one tile of depth ``k`` is busy, from START sampled to DONE set."""
        check_int("K", k, 1, self._k_max)
        return busy_cycles(self._rows, self._cols, k)

    def elaborate(self, platform):
        m = Module()
        rows, cols, regs = self._rows, self._cols, self._register_map

        m.submodules.controller = controller = TileController(
            rows=rows, cols=cols, k_max=self._k_max)
        m.submodules.a_skew = a_skew = SkewBuffer(lanes=rows)
        m.submodules.b_skew = b_skew = SkewBuffer(lanes=cols)
        m.submodules.array = array = SystolicArray(rows=rows, cols=cols)
        m.submodules.results = results = ResultBuffer(rows=rows, cols=cols)
        m.submodules.a_buffer = a_buffer = Memory(shape=8 * rows, depth=self._k_max, init=[])
        m.submodules.b_buffer = b_buffer = Memory(shape=8 * cols, depth=self._k_max, init=[])

        region = self.addr[regs.index_width:]
        index = self.addr[:regs.index_width]

        # Host writes into the operand buffers and the CSRs.
        csr_write = self.we & (region == Region.CSR)
        for buffer, buffer_region in ((a_buffer, Region.A), (b_buffer, Region.B)):
            port = buffer.write_port()
            m.d.comb += [
                port.addr.eq(index),
                port.data.eq(self.wdata),
                port.en.eq(self.we & (region == buffer_region)),
            ]
        k = Signal(range(self._k_max + 1), name="k", init=self._k_max)
        with m.If(csr_write & (index == Csr.K)):
            m.d.sync += k.eq(self.wdata)
        m.d.comb += [
            controller.start.eq(csr_write & (index == Csr.CTRL) & self.wdata[0]),
            controller.k.eq(k),
        ]

        # Compute: buffer read, zero outside the tile's K steps, skew, array.
        a_read = a_buffer.read_port()
        b_read = b_buffer.read_port()
        m.d.comb += [a_read.addr.eq(controller.read_addr), b_read.addr.eq(controller.read_addr)]
        for lane in range(rows):
            m.d.comb += a_skew.i_lanes[lane].eq(
                Mux(controller.feed_valid, a_read.data[8 * lane:8 * lane + 8], 0))
        for lane in range(cols):
            m.d.comb += b_skew.i_lanes[lane].eq(
                Mux(controller.feed_valid, b_read.data[8 * lane:8 * lane + 8], 0))
        result_row = results.read_data
        abft_error = abft_corrected = range_flag = 0
        csr_values = {}
        if self._abft != "none":
            m.submodules.checksums = checksums = ChecksumUnit(rows=rows, cols=cols,
                                                              mode=self._abft)
            m.d.comb += [
                checksums.a_lanes.eq(a_skew.i_lanes), checksums.b_lanes.eq(b_skew.i_lanes),
                checksums.clear.eq(controller.clear), checksums.drain.eq(controller.shift),
                checksums.drain_row.eq(controller.result_write_row),
                checksums.drain_last.eq(controller.drain_last),
                checksums.drain_out.eq(array.drain_out),
                checksums.feed_valid.eq(controller.feed_valid),
                checksums.a_edge.eq(array.a_edge), checksums.b_edge.eq(array.b_edge),
                checksums.read_row.eq(index), checksums.read_in.eq(result_row),
            ]
            result_row = checksums.read_out
            abft_error, abft_corrected = checksums.tile_error, checksums.tile_corrected
            csr_values.update({Csr.ROW_SYNDROME: checksums.row_syndrome,
                               Csr.COL_SYNDROME: checksums.col_syndrome,
                               Csr.DETECTED: checksums.detected_tiles,
                               Csr.CORRECTED: checksums.corrected_tiles})
        if self._range_check:
            m.submodules.range_checker = range_checker = RangeChecker(lanes=cols)
            m.d.comb += [
                range_checker.lanes_in.eq(result_row),
                range_checker.count_enable.eq(self.re & (region == Region.RESULT)
                                              & (index < rows)),
                range_checker.wdata.eq(self.wdata[:32]),
                range_checker.lower_we.eq(csr_write & (index == Csr.RANGE_LOWER)),
                range_checker.upper_we.eq(csr_write & (index == Csr.RANGE_UPPER)),
                range_checker.control_we.eq(csr_write & (index == Csr.RANGE_CONTROL)),
            ]
            result_row = range_checker.lanes_out
            range_flag = range_checker.flag
            csr_values.update({Csr.RANGE_LOWER: range_checker.lower[:32],
                               Csr.RANGE_UPPER: range_checker.upper[:32],
                               Csr.RANGE_CONTROL: range_checker.zero_mode,
                               Csr.RANGE_COUNT: range_checker.count})
        m.d.comb += [
            array.a_in.eq(a_skew.o_lanes),
            array.b_in.eq(b_skew.o_lanes),
            array.clear.eq(controller.clear),
            array.shift.eq(controller.shift),
        ]

        # Drain into the result registers.
        m.d.comb += [
            results.write_en.eq(controller.result_write_en),
            results.write_row.eq(controller.result_write_row),
            results.write_data.eq(array.drain_out),
            results.read_row.eq(index),
        ]

        # Host reads, registered.
        status = Signal(len(Status))
        m.d.comb += [
            status[Status.BUSY].eq(controller.busy),
            status[Status.DONE].eq(controller.done),
            status[Status.ERROR].eq(controller.error),
            status[Status.ABFT_ERROR].eq(abft_error),
            status[Status.ABFT_CORRECTED].eq(abft_corrected),
            status[Status.RANGE_FLAG].eq(range_flag),
        ]
        csr_values.update({
            Csr.STATUS: status,
            Csr.K: k,
            Csr.CYCLES: controller.cycles,
            Csr.TILES: controller.tiles,
            Csr.CONFIG: regs.config_word,
        })
        read_value = Signal(regs.data_width)
        with m.Switch(region):
            with m.Case(Region.CSR):
                with m.Switch(index):
                    for csr, value in csr_values.items():
                        with m.Case(csr):
                            m.d.comb += read_value.eq(value)
            with m.Case(Region.RESULT):
                with m.If(index < rows):
                    m.d.comb += read_value.eq(result_row.as_value())
        rdata = Signal(regs.data_width, name="rdata_reg", attrs={"fault_class": "output"})
        m.d.sync += rdata.eq(read_value)
        m.d.comb += [self.rdata.eq(rdata), self.irq.eq(controller.done)]
        return m
