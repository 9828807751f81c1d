"""The grid of processing elements."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.config import MAX_DIMENSION
from hw.gemm.processing_element import ProcessingElement
from hw.validation import check_int

__all__ = ["SystolicArray"]



class SystolicArray(wiring.Component):
    """An output-stationary ``rows x cols`` grid of PEs: PE(i, j) accumulates C[i][j].

    A enters on the left (lane ``i`` feeds row ``i``) and moves right; B enters at the top
    (lane ``j`` feeds column ``j``) and moves down. The inputs must already be skewed (see
    :class:`hw.gemm.skew_buffer.SkewBuffer`): a value entering row ``i`` reaches PE(i, j) ``j``
    cycles later, so the last product of a tile lands ``rows + cols - 2`` cycles after the
    first one reaches PE(0, 0) (:attr:`wavefront_cycles`).

    With ``shift`` the accumulators move one row down per cycle; ``drain_out`` shows the
    bottom row, so ``rows`` shift cycles drain the tile, bottom row first, and leave zeros.

    PEs are submodules ``pe_{i}_{j}``.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each.

    Members
    -------
    a_in : In(ArrayLayout(signed(8), rows))
    b_in : In(ArrayLayout(signed(8), cols))
    clear, shift : In(1)
        Broadcast to every PE.
    drain_out : Out(ArrayLayout(signed(32), cols))
        Accumulators of the bottom row.
    a_edge : Out(ArrayLayout(signed(8), rows))
        The A operands the right-most column consumes (what crossed each row).
    b_edge : Out(ArrayLayout(signed(8), cols))
        The B operands the bottom row consumes (what crossed each column).
    """

    def __init__(self, *, rows, cols):
        self._rows = check_int("Array rows", rows, 1, MAX_DIMENSION)
        self._cols = check_int("Array cols", cols, 1, MAX_DIMENSION)
        super().__init__({
            "a_in": In(data.ArrayLayout(signed(8), rows)),
            "b_in": In(data.ArrayLayout(signed(8), cols)),
            "clear": In(1),
            "shift": In(1),
            "drain_out": Out(data.ArrayLayout(signed(32), cols)),
            "a_edge": Out(data.ArrayLayout(signed(8), rows)),
            "b_edge": Out(data.ArrayLayout(signed(8), cols)),
        })

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    @property
    def wavefront_cycles(self):
        """Cycles from PE(0, 0) seeing an operand pair to PE(rows-1, cols-1) seeing its own."""
        return self._rows + self._cols - 2

    def elaborate(self, platform):
        m = Module()
        grid = [[ProcessingElement() for _ in range(self._cols)] for _ in range(self._rows)]
        for i, row in enumerate(grid):
            for j, pe in enumerate(row):
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.a_in.eq(self.a_in[i] if j == 0 else grid[i][j - 1].a_out),
                    pe.b_in.eq(self.b_in[j] if i == 0 else grid[i - 1][j].b_out),
                    pe.acc_in.eq(0 if i == 0 else grid[i - 1][j].accumulator),
                    pe.clear.eq(self.clear),
                    pe.shift.eq(self.shift),
                ]
        for j in range(self._cols):
            m.d.comb += [self.drain_out[j].eq(grid[-1][j].accumulator),
                         self.b_edge[j].eq(grid[-1][j].b_in)]
        for i in range(self._rows):
            m.d.comb += self.a_edge[i].eq(grid[i][-1].a_in)
        return m
