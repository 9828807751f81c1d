"""The GEMM accelerator: operand buffers, skew, systolic array, drain, control, host port."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.gemm.result_buffer import ResultBuffer
from hw.gemm.skew_buffer import SkewBuffer
from hw.gemm.systolic_array import SystolicArray
from hw.gemm.tile_controller import TileController
from hw.protect.checksum_unit import ChecksumUnit
from hw.protect.range_checker import RangeChecker
from hw.config import NONLINEAR_UNITS
from hw.nonlinear.units import build_unit
from hw.register_map import (NONLINEAR_REGION_BASE, UNIT_FLAGS_SHIFT, Csr, Region, Status,
                             UnitCsr, UnitWindow)

__all__ = ["GemmAccelerator", "OPERAND_BUFFERS"]

#: The operand buffers' memories by region: their names in the accelerator's Verilog
#: module, where a testbench may write them directly (:mod:`sim.memory_backdoor`).
OPERAND_BUFFERS = {Region.A: "a_buffer", Region.B: "b_buffer"}


class GemmAccelerator(wiring.Component):
    """Output-stationary int8 GEMM accelerator computing one ``rows x cols`` tile at a time.

    The host loads a tile's operands into two on-chip buffers (A: ``rows x k``, stored by
    column; B: ``k x cols``, stored by row), writes K and START, waits for DONE (or the
    ``irq`` pin) and reads the tile back row by row. C = A x B with int8 operands and int32
    accumulators that wrap around. The register map is in :mod:`hw.register_map` and
    ``docs/register-map.md``.

    Optional protection: a checksum unit (:class:`hw.protect.checksum_unit.ChecksumUnit`) checks
    each tile as it drains and, in ``rowcol`` mode, corrects single-row or single-column
    errors as the host reads; a range checker (:class:`hw.protect.range_checker.RangeChecker`)
    clamps what the host reads to programmable bounds. Neither adds a cycle to a tile.

    Optional nonlinear units (``config.nonlinear``: softmax, GELU, LayerNorm of
    docs/nonlinear.md) sit beside the array behind the same host port, each in its own
    address region with a row buffer and CSRs; they share nothing with the array.

    Timing: the tile is busy for :meth:`tile_cycles` cycles after the edge that samples
    START (buffer read, skew, wavefront, drain); :meth:`tile_cycles` is the number a
    testbench waits, never a hard-coded latency. Bus reads return one cycle later.

    Parameters
    ----------
    config : AcceleratorConfig
        Array size, buffer depth and protection units (:class:`hw.config.AcceleratorConfig`).

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
        If ``config`` is not an :class:`~hw.config.AcceleratorConfig`.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        regs = config.register_map
        super().__init__({
            "addr": In(regs.addr_width),
            "wdata": In(regs.data_width),
            "we": In(1),
            "re": In(1),
            "rdata": Out(regs.data_width),
            "irq": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def register_map(self):
        return self._config.register_map

    def tile_cycles(self, k):
        """Clock cycles one tile of depth ``k`` is busy, from START sampled to DONE set."""
        return self._config.tile_cycles(k)

    def elaborate(self, platform):
        m = Module()
        config = self._config
        m.submodules.controller = controller = TileController(
            rows=config.rows, cols=config.cols, k_max=config.k_max)
        m.submodules.array = array = SystolicArray(rows=config.rows, cols=config.cols)
        index = self.addr[:config.register_map.index_width]
        region = self.addr[config.register_map.index_width:]
        csr_write = self.we & (region == Region.CSR)

        k = self._csr_k(m, controller, index, csr_write)
        a_lanes, b_lanes = self._operand_path(m, controller, array, index, region)
        result_row = self._drain(m, controller, array, index)
        csr_values = {}
        abft_error = abft_corrected = range_flag = 0
        if config.abft != "none":
            result_row, abft_error, abft_corrected = self._checksums(
                m, controller, array, a_lanes, b_lanes, index, result_row, csr_values)
        if config.range_check:
            result_row, range_flag = self._range_checker(
                m, index, region, csr_write, result_row, csr_values)
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
            Csr.CONFIG: config.register_map.config_word,
        })
        units = [self._nonlinear_unit(m, name, index, region) for name in config.nonlinear]
        self._read_port(m, index, region, csr_values, result_row, units)
        m.d.comb += self.irq.eq(controller.done)
        return m

    def _csr_k(self, m, controller, index, csr_write):
        """The K register and the START strobe into the controller; returns K.

        The whole written word is checked: a value above k_max (however wide) is stored
        as k_max + 1, which START refuses with ERROR, instead of being truncated to a
        legal K.
        """
        k_max = self._config.k_max
        k = Signal(range(k_max + 2), name="k", init=k_max)
        with m.If(csr_write & (index == Csr.K)):
            m.d.sync += k.eq(Mux(self.wdata > k_max, k_max + 1, self.wdata))
        m.d.comb += [
            controller.start.eq(csr_write & (index == Csr.CTRL) & self.wdata[0]),
            controller.k.eq(k),
        ]
        return k

    def _operand_path(self, m, controller, array, index, region):
        """Operand buffers (host writes), zero gate outside the tile's K steps, skew, array.

        Returns the A and B lanes as they enter the skew buffers (what the checksums tap).
        """
        rows, cols, k_max = self._config.rows, self._config.cols, self._config.k_max
        a_buffer = Memory(shape=8 * rows, depth=k_max, init=[])
        b_buffer = Memory(shape=8 * cols, depth=k_max, init=[])
        m.submodules[OPERAND_BUFFERS[Region.A]] = a_buffer
        m.submodules[OPERAND_BUFFERS[Region.B]] = b_buffer
        m.submodules.a_skew = a_skew = SkewBuffer(lanes=rows)
        m.submodules.b_skew = b_skew = SkewBuffer(lanes=cols)
        for buffer, buffer_region, skew, lanes in ((a_buffer, Region.A, a_skew, rows),
                                                   (b_buffer, Region.B, b_skew, cols)):
            write = buffer.write_port()
            m.d.comb += [
                write.addr.eq(index),
                write.data.eq(self.wdata),
                # Entries past k_max do not exist: no write, rather than an alias.
                write.en.eq(self.we & (region == buffer_region) & (index < k_max)),
            ]
            read = buffer.read_port()
            m.d.comb += read.addr.eq(controller.read_addr)
            for lane in range(lanes):
                m.d.comb += skew.i_lanes[lane].eq(
                    Mux(controller.feed_valid, read.data[8 * lane:8 * lane + 8], 0))
        m.d.comb += [
            array.a_in.eq(a_skew.o_lanes),
            array.b_in.eq(b_skew.o_lanes),
            array.clear.eq(controller.clear),
            array.shift.eq(controller.shift),
        ]
        return a_skew.i_lanes, b_skew.i_lanes

    def _drain(self, m, controller, array, index):
        """The result registers the array drains into; returns the row the host addresses."""
        m.submodules.results = results = ResultBuffer(rows=self._config.rows,
                                                      cols=self._config.cols)
        m.d.comb += [
            results.write_en.eq(controller.result_write_en),
            results.write_row.eq(controller.result_write_row),
            results.write_data.eq(array.drain_out),
            results.read_row.eq(index),
        ]
        return results.read_data

    def _checksums(self, m, controller, array, a_lanes, b_lanes, index, result_row,
                   csr_values):
        """The checksum unit: checks the tile as it drains, corrects on the read path."""
        m.submodules.checksums = checksums = ChecksumUnit(
            rows=self._config.rows, cols=self._config.cols, mode=self._config.abft)
        m.d.comb += [
            checksums.a_lanes.eq(a_lanes), checksums.b_lanes.eq(b_lanes),
            checksums.clear.eq(controller.clear), checksums.drain.eq(controller.shift),
            checksums.drain_row.eq(controller.result_write_row),
            checksums.drain_last.eq(controller.drain_last),
            checksums.drain_out.eq(array.drain_out),
            checksums.feed_valid.eq(controller.feed_valid),
            checksums.a_edge.eq(array.a_edge), checksums.b_edge.eq(array.b_edge),
            checksums.read_row.eq(index), checksums.read_in.eq(result_row),
        ]
        # While a tile runs the checksums hold partial sums: the syndromes read 0.
        csr_values.update({Csr.ROW_SYNDROME: Mux(controller.busy, 0, checksums.row_syndrome),
                           Csr.COL_SYNDROME: Mux(controller.busy, 0, checksums.col_syndrome),
                           Csr.DETECTED: checksums.detected_tiles,
                           Csr.CORRECTED: checksums.corrected_tiles})
        return checksums.read_out, checksums.tile_error, checksums.tile_corrected

    def _range_checker(self, m, index, region, csr_write, result_row, csr_values):
        """The range checker on the read path and its CSRs; returns the row and the flag."""
        m.submodules.range_checker = range_checker = RangeChecker(lanes=self._config.cols)
        m.d.comb += [
            range_checker.lanes_in.eq(result_row),
            range_checker.count_enable.eq(self.re & (region == Region.RESULT)
                                          & (index < self._config.rows)),
            range_checker.wdata.eq(self.wdata[:32]),
            range_checker.lower_we.eq(csr_write & (index == Csr.RANGE_LOWER)),
            range_checker.upper_we.eq(csr_write & (index == Csr.RANGE_UPPER)),
            range_checker.control_we.eq(csr_write & (index == Csr.RANGE_CONTROL)),
        ]
        csr_values.update({Csr.RANGE_LOWER: range_checker.lower[:32],
                           Csr.RANGE_UPPER: range_checker.upper[:32],
                           Csr.RANGE_CONTROL: range_checker.zero_mode,
                           Csr.RANGE_COUNT: range_checker.count})
        return range_checker.lanes_out, range_checker.flag

    def _nonlinear_unit(self, m, name, index, region):
        """A nonlinear unit and its CSRs (register map: ``UnitWindow``, ``UnitCsr``).

        Returns ``(region code, {CSR entry: value}, row read, output code)``: the bus reads
        of the unit's CSR window, and whether the row buffer is addressed (its codes come
        with the buffer's one cycle of read latency, like any registered read)."""
        regs = self._config.register_map
        length = self._config.nonlinear_length
        unit = build_unit(name, length, self._config.nonlinear_checkers)
        m.submodules[name] = unit
        code = NONLINEAR_REGION_BASE + NONLINEAR_UNITS.index(name)
        entry_bits = regs.unit_window.bit_length() - 1
        entry, window = index[:entry_bits], index[entry_bits:entry_bits + 2]
        write = self.we & (region == code)
        csr_write = write & (window == UnitWindow.CSR)
        # A row length above the buffer reads back as 0, which START refuses.
        n = Signal(range(length + 1), name=f"{name}_n", init=1)
        with m.If(csr_write & (entry == UnitCsr.N)):
            m.d.sync += n.eq(Mux(self.wdata > length, 0, self.wdata))
        values = {UnitCsr.N: n}
        csr = UnitCsr.PARAM
        for parameter in regs.unit_parameters(name):
            port = getattr(unit, parameter)
            register = Signal(len(port), name=f"{name}_{parameter}")
            for word in range(0, len(port), 32):
                with m.If(csr_write & (entry == csr)):
                    m.d.sync += register[word:word + 32].eq(self.wdata)
                values[csr] = register[word:word + 32]
                csr += 1
            m.d.comb += port.eq(register)
        row = (window == UnitWindow.ROW) & (entry < length)
        m.d.comb += [
            unit.n.eq(n),
            unit.start.eq(csr_write & (entry == UnitCsr.CTRL) & self.wdata[0]),
            unit.in_we.eq(write & row),
            unit.in_addr.eq(entry),
            unit.in_data.eq(self.wdata[:32]),
            unit.out_addr.eq(entry),
        ]
        for table in ("gain", "offset"):       # LayerNorm's per-channel memories
            if hasattr(unit, f"{table}_we"):
                m.d.comb += [
                    getattr(unit, f"{table}_we").eq(
                        write & (window == UnitWindow[table.upper()]) & (entry < length)),
                    getattr(unit, f"{table}_addr").eq(entry),
                    getattr(unit, f"{table}_data").eq(self.wdata),
                ]
        status = Signal(UNIT_FLAGS_SHIFT + len(unit.flags), name=f"{name}_status")
        m.d.comb += status.eq(Cat(unit.busy, unit.done, unit.error, unit.flags.any(),
                                  Const(0, UNIT_FLAGS_SHIFT - 4), unit.flags))
        values[UnitCsr.STATUS] = status
        for check in range(len(unit.flags)):
            values[UnitCsr.COUNT + check] = unit.flag_counts[check]
        return code, values, (region == code) & row, unit.out_data

    def _read_port(self, m, index, region, csr_values, result_row, units=()):
        """Host reads, registered: a CSR, a result row or a nonlinear unit's register, the
        word addressed last cycle (a unit's row codes come from its buffer's registered
        read port)."""
        regs = self._config.register_map
        read_value = Signal(self._config.register_map.data_width)
        with m.Switch(region):
            with m.Case(Region.CSR):
                with m.Switch(index):
                    for csr, value in csr_values.items():
                        with m.Case(csr):
                            m.d.comb += read_value.eq(value)
            with m.Case(Region.RESULT):
                with m.If(index < self._config.rows):
                    m.d.comb += read_value.eq(result_row.as_value())
            for code, values, _, _ in units:
                with m.Case(code):
                    with m.Switch(index):
                        for entry, value in values.items():
                            with m.Case(regs.unit_window * UnitWindow.CSR + entry):
                                m.d.comb += read_value.eq(value)
        rdata = Signal(self._config.register_map.data_width, name="rdata_reg",
                       attrs={"fault_class": "output"})
        m.d.sync += rdata.eq(read_value)
        word = rdata
        for (_, _, row_read, code), name in zip(units, self._config.nonlinear):
            row_was_read = Signal(name=f"{name}_row_read")
            m.d.sync += row_was_read.eq(row_read)
            word = Mux(row_was_read, code.as_unsigned(), word)
        m.d.comb += self.rdata.eq(word)
