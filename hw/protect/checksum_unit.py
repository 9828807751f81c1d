"""Lightweight block-wise ABFT: the checksum unit of one output tile."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.gemm.processing_element import ProcessingElement
from hw.validation import check_int

__all__ = ["ChecksumUnit", "CHECKED_MODES", "INTEGRITY_WIDTH"]

CHECKED_MODES = ("col", "rowcol")
#: Width of the operand-integrity counters: an upset changes an int8 by 1 to 255 in
#: magnitude, never a multiple of 2**9.
INTEGRITY_WIDTH = 9


def _sum_width(operand_width, terms):
    return operand_width + (terms - 1).bit_length()


def _one_hot(value):
    return (value != 0) & ((value & (value - 1)) == 0)


def _located(check_bad, integrity_bad):
    """The rows (columns) an error is in: the checksums', else the integrity counters' one."""
    return Mux(check_bad != 0, check_bad, Mux(_one_hot(integrity_bad), integrity_bad, 0))


class ChecksumUnit(wiring.Component):
    """Lightweight block-wise ABFT: checksums of one output tile, checked as the tile drains.

    Column checksums: a row of ``cols`` checksum PEs, fed at every feed step k with the column
    sum of the A tile, ``s[k] = sum_i A[i][k]`` (an adder tree on the A buffer's read side),
    and with ``B[k][j]``; PE j accumulates ``sum_k s[k] B[k][j] = sum_i C[i][j]``. Row
    checksums (``rowcol``): a column of ``rows`` checksum PEs fed with ``A[i][k]`` and the row
    sum of the B tile, ``r[k] = sum_j B[k][j]``, accumulating ``sum_j C[i][j]``.

    The checksum PEs take their operands from the buffers' read side, not through the array:
    an upset anywhere in the array's operand pipeline (skew stages, PE operand registers) then
    corrupts the data but not the checksums, and is seen. All arithmetic wraps modulo 2**32,
    so a clean tile never raises an alarm.

    The check costs no cycle: while the tile drains, every column checksum PE subtracts the
    element leaving its column, and row checksum PE i subtracts the sum of row i as it
    leaves. After the drain each checksum PE holds ``check - sum``: zero when the tile is
    consistent, otherwise the syndrome bit is set and the value is the correction. With
    ``rowcol``, an error confined to one column (any rows) is corrected by adding each wrong
    row's difference, one confined to one row by adding each wrong column's difference; this
    happens on the read path, as the host reads the rows. Errors in several rows and several
    columns are detected, not corrected; a mismatch in one checksum only (one row or one
    column, nothing in the other direction) changes nothing and is reported as an error.

    Operand integrity: a sum can cancel. An upset A operand spoils the rest of
    its row by ``delta * B[k][j]``, and when those B values sum to zero the row's checksum
    agrees although several columns disagree: the error is detected but cannot be located.
    So every row (column) also keeps a small integrity counter that adds each A (B) operand
    as the buffer feeds it and subtracts it as it reaches the row's last PE (the column's
    bottom PE). One upset operand leaves ``delta`` there, with nothing to cancel against.
    Only operands of the tile's K steps count at the edge (a delay line of the feed-valid
    bit follows them across the array): an upset in a register that holds the zero between
    two tiles meets only zeros and spoils nothing.
    With ``rowcol`` the counters only locate: when the checksums flag no row (column) but
    the integrity counters flag exactly one, that row (column) is taken as the error's; they
    raise no alarm themselves (the other direction's checksums always see such an error).
    With ``col`` there is no other direction: an upset B operand (in a skew stage or a PE)
    spoils its column by ``delta * A[i][k]`` over the rows it crosses, which sums to zero
    when those A values do. So ``col`` keeps the column counters only and a nonzero one is
    an error of its column like a checksum mismatch; the price is an alarm for an upset B
    operand that met only zero A values and spoiled nothing.

    Parameters
    ----------
    rows, cols : int
        Tile size.
    mode : str
        ``"col"`` or ``"rowcol"``.

    Members
    -------
    a_lanes : In(ArrayLayout(signed(8), rows))
    b_lanes : In(ArrayLayout(signed(8), cols))
        The operands the array is fed in this cycle (zero outside the feed).
    clear : In(1)
        Start of a tile: zero the checksums and the tile flags.
    drain : In(1)
    drain_row : In(range(rows))
        The array row leaving in this drain cycle.
    drain_last : In(1)
        The last drain cycle: the tile's flags are registered at its edge.
    drain_out : In(ArrayLayout(signed(32), cols))
    feed_valid : In(1)
        The lanes carry one of the tile's K steps.
    a_edge : In(ArrayLayout(signed(8), rows))
    b_edge : In(ArrayLayout(signed(8), cols))
        The operands the array's last column and bottom row consume.
    read_row : In(range(rows))
    read_in : In(ArrayLayout(signed(32), cols))
    read_out : Out(ArrayLayout(signed(32), cols))
        Row ``read_row`` of the result, corrected (``rowcol``) or passed through (``col``).
    tile_error, tile_corrected : Out(1)
    row_syndrome : Out(rows)
    col_syndrome : Out(cols)
    detected_tiles, corrected_tiles : Out(32)

    """

    def __init__(self, *, rows, cols, mode):
        self._rows = check_int("Checksum rows", rows, 1, 256)
        self._cols = check_int("Checksum cols", cols, 1, 256)
        if mode not in CHECKED_MODES:
            raise TypeError(f"Checksum mode must be one of {CHECKED_MODES!r}, not {mode!r}")
        self._mode = mode
        row_layout = data.ArrayLayout(signed(32), cols)
        super().__init__({
            "a_lanes": In(data.ArrayLayout(signed(8), rows)),
            "b_lanes": In(data.ArrayLayout(signed(8), cols)),
            "clear": In(1),
            "drain": In(1),
            "drain_row": In(range(rows)),
            "drain_last": In(1),
            "drain_out": In(row_layout),
            "feed_valid": In(1),
            "a_edge": In(data.ArrayLayout(signed(8), rows)),
            "b_edge": In(data.ArrayLayout(signed(8), cols)),
            "read_row": In(range(rows)),
            "read_in": In(row_layout),
            "read_out": Out(row_layout),
            "tile_error": Out(1),
            "tile_corrected": Out(1),
            "row_syndrome": Out(rows),
            "col_syndrome": Out(cols),
            "detected_tiles": Out(32),
            "corrected_tiles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        checks_rows = self._mode == "rowcol"

        # Operand integrity: what was fed minus what crossed, per column (and per row).
        # Lane j of B reaches the bottom row j + rows - 1 cycles after its feed; lane i of A
        # reaches the last column i + cols - 1 cycles after.
        fed = self._feed_delay_line(m, rows + cols - 2)
        col_integrity_bad = self._integrity_counters(
            m, self.b_lanes, self.b_edge, [fed[j + rows - 1] for j in range(cols)], "col")
        row_integrity_bad = Signal(rows)
        if checks_rows:
            row_integrity_bad = self._integrity_counters(
                m, self.a_lanes, self.a_edge, [fed[i + cols - 1] for i in range(rows)], "row")
        # Columns in error: a checksum mismatch, and in ``col`` mode a spoiled B operand.
        col_alarm = Signal(cols)
        if not checks_rows:
            m.d.comb += col_alarm.eq(col_integrity_bad)
        col_checks, col_bad_next = self._column_checksums(m, col_alarm)
        row_checks, row_bad_next = [], Signal(rows)
        if checks_rows:
            row_checks, row_bad_next = self._row_checksums(m)
        self._tile_flags(m, _located(col_bad_next, col_integrity_bad),
                         _located(row_bad_next, row_integrity_bad),
                         (col_bad_next != 0) | (row_bad_next != 0))
        if checks_rows:
            self._correction(m, col_checks, row_checks, col_integrity_bad, row_integrity_bad)
        else:
            m.d.comb += self.read_out.eq(self.read_in)
        return m

    def _column_checksums(self, m, col_alarm):
        """Column checksum PEs: s[k] against B[k][j], each element subtracted as it drains.

        Returns the PEs and the columns in error after this cycle's subtraction.
        """
        a_sum = Signal(signed(_sum_width(8, self._rows)))
        m.d.comb += a_sum.eq(sum(self.a_lanes[i] for i in range(self._rows)))
        checks = []
        for j in range(self._cols):
            pe = ProcessingElement(a_width=len(a_sum), b_width=8, fault_class="checksum")
            m.submodules[f"col_check_{j}"] = pe
            m.d.comb += [pe.a_in.eq(a_sum), pe.b_in.eq(self.b_lanes[j]), pe.clear.eq(self.clear),
                         pe.shift.eq(self.drain),
                         pe.acc_in.eq(pe.accumulator - self.drain_out[j]),
                         self.col_syndrome[j].eq((pe.accumulator != 0) | col_alarm[j])]
            checks.append(pe)
        bad_next = Signal(self._cols)
        m.d.comb += bad_next.eq(
            sum((pe.acc_in != 0) << j for j, pe in enumerate(checks)) | col_alarm)
        return checks, bad_next

    def _row_checksums(self, m):
        """Row checksum PEs: A[i][k] against r[k]; row i's sum subtracted as it drains.

        Returns the PEs and the rows in error after this cycle's subtraction.
        """
        b_sum = Signal(signed(_sum_width(8, self._cols)))
        m.d.comb += b_sum.eq(sum(self.b_lanes[j] for j in range(self._cols)))
        leaving = Signal(signed(32))
        m.d.comb += leaving.eq(sum(self.drain_out[j] for j in range(self._cols)))
        checks = []
        bad_next = Signal(self._rows)
        for i in range(self._rows):
            pe = ProcessingElement(a_width=8, b_width=len(b_sum), fault_class="checksum")
            m.submodules[f"row_check_{i}"] = pe
            leaves_now = self.drain & (self.drain_row == i)
            m.d.comb += [pe.a_in.eq(self.a_lanes[i]), pe.b_in.eq(b_sum),
                         pe.clear.eq(self.clear), pe.shift.eq(leaves_now),
                         pe.acc_in.eq(pe.accumulator - leaving),
                         self.row_syndrome[i].eq(pe.accumulator != 0),
                         bad_next[i].eq(Mux(leaves_now, pe.acc_in, pe.accumulator) != 0)]
            checks.append(pe)
        return checks, bad_next

    def _tile_flags(self, m, col_at_next, row_at_next, error_next):
        """The tile's flags and the tile counters, registered at the end of the drain."""
        tile_error = Signal(name="tile_error", attrs={"fault_class": "checksum"})
        tile_corrected = Signal(name="tile_corrected", attrs={"fault_class": "checksum"})
        detected = Signal(32, name="detected_tiles", attrs={"fault_class": "checksum"})
        corrected = Signal(32, name="corrected_tiles", attrs={"fault_class": "checksum"})
        col_at, row_at = Signal(self._cols), Signal(self._rows)
        m.d.comb += [col_at.eq(col_at_next), row_at.eq(row_at_next)]
        correctable_next = error_next & ((_one_hot(col_at) & (row_at != 0))
                                         | (_one_hot(row_at) & (col_at != 0)))
        with m.If(self.clear):
            m.d.sync += [tile_error.eq(0), tile_corrected.eq(0)]
        with m.Elif(self.drain_last):
            m.d.sync += [tile_error.eq(error_next), tile_corrected.eq(correctable_next),
                         detected.eq(detected + error_next),
                         corrected.eq(corrected + correctable_next)]
        m.d.comb += [self.tile_error.eq(tile_error), self.tile_corrected.eq(tile_corrected),
                     self.detected_tiles.eq(detected), self.corrected_tiles.eq(corrected)]

    def _correction(self, m, col_checks, row_checks, col_integrity_bad, row_integrity_bad):
        """``rowcol``: add the differences to the row the host reads (single row or column)."""
        col_bad, row_bad = Signal(self._cols), Signal(self._rows)
        m.d.comb += [col_bad.eq(_located(self.col_syndrome, col_integrity_bad)),
                     row_bad.eq(_located(self.row_syndrome, row_integrity_bad))]
        error = (self.col_syndrome != 0) | (self.row_syndrome != 0)
        column_mode = error & _one_hot(col_bad) & (row_bad != 0)
        row_mode = error & _one_hot(row_bad) & (col_bad != 0) & ~column_mode
        row_difference = Signal(signed(32))
        with m.Switch(self.read_row):
            for i, pe in enumerate(row_checks):
                with m.Case(i):
                    m.d.comb += row_difference.eq(pe.accumulator)
        read_row_bad = row_bad.bit_select(self.read_row, 1)
        for j, pe in enumerate(col_checks):
            m.d.comb += self.read_out[j].eq(
                self.read_in[j]
                + Mux(column_mode & col_bad[j], row_difference, 0)
                + Mux(row_mode & read_row_bad, pe.accumulator, 0))

    def _feed_delay_line(self, m, depth):
        """``feed_valid`` delayed by 0 .. ``depth`` cycles (index = delay)."""
        delayed = [self.feed_valid]
        for stage in range(depth):
            register = Signal(name=f"fed_delay_{stage}", attrs={"fault_class": "checksum"})
            m.d.sync += register.eq(delayed[-1])
            delayed.append(register)
        return delayed

    def _integrity_counters(self, m, lanes, edge, edge_valid, kind):
        """Per lane, operands fed minus operands that crossed the array; the nonzero ones."""
        bad = Signal(len(lanes), name=f"{kind}_integrity_bad")
        for index in range(len(bad)):
            counter = Signal(INTEGRITY_WIDTH, name=f"{kind}_integrity_{index}",
                             attrs={"fault_class": "checksum"})
            crossed = Mux(edge_valid[index], edge[index], 0)
            with m.If(self.clear):
                m.d.sync += counter.eq(0)
            with m.Else():
                m.d.sync += counter.eq(counter + lanes[index] - crossed)
            m.d.comb += bad[index].eq(counter != 0)
        return bad
