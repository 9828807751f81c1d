"""Input skew registers: the diagonal wavefront in front of a systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["SkewBuffer"]


class SkewBuffer(wiring.Component):
    """Delays lane ``i`` of a vector by ``i`` cycles.

    Feeding row ``i`` of A (or column ``j`` of B) ``i`` (``j``) cycles late makes
    ``A[i][k]`` and ``B[k][j]`` meet in PE(i, j). Lane 0 passes through combinationally;
    lane ``i`` is a chain of ``i`` registers named ``lane{i}_stage{s}``, which are fault
    sites of class ``operand``.

    Parameters
    ----------
    lanes : int
        Number of lanes (array rows for A, array columns for B).
    width : int
        Width of each signed lane.

    Members
    -------
    i_lanes : In(ArrayLayout(signed(width), lanes))
    o_lanes : Out(ArrayLayout(signed(width), lanes))
    """

    def __init__(self, *, lanes, width=8):
        self._lanes = check_int("Lane count", lanes, 1, 256)
        self._width = check_int("Lane width", width, 1, 64)
        layout = data.ArrayLayout(signed(width), lanes)
        super().__init__({"i_lanes": In(layout), "o_lanes": Out(layout)})

    @property
    def lanes(self):
        return self._lanes

    @property
    def depth(self):
        """Cycles of delay of the last lane."""
        return self._lanes - 1

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            value = self.i_lanes[lane]
            for stage in range(lane):
                register = Signal(signed(self._width), name=f"lane{lane}_stage{stage}",
                                  attrs={"fault_class": "operand"})
                m.d.sync += register.eq(value)
                value = register
            m.d.comb += self.o_lanes[lane].eq(value)
        return m
