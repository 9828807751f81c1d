"""Output registers that hold a drained tile until the host reads it."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["ResultBuffer"]


class ResultBuffer(wiring.Component):
    """``rows`` registers of one result row each, written by the drain, read by the host.

    The registers ``row_{i}`` are flip-flops (fault sites of class ``output``), not a
    memory: a tile stays exposed to upsets here until it is read.

    Parameters
    ----------
    rows, cols : int
        Tile size.

    Members
    -------
    write_en : In(1)
    write_row : In(range(rows))
    write_data : In(ArrayLayout(signed(32), cols))
        Written into ``row_{write_row}`` at the edge when ``write_en`` is high.
    read_row : In(range(rows))
    read_data : Out(ArrayLayout(signed(32), cols))
        ``row_{read_row}``, combinationally.
    """

    def __init__(self, *, rows, cols):
        self._rows = check_int("Result rows", rows, 1, 256)
        self._cols = check_int("Result cols", cols, 1, 256)
        row_layout = data.ArrayLayout(signed(32), cols)
        super().__init__({
            "write_en": In(1),
            "write_row": In(range(rows)),
            "write_data": In(row_layout),
            "read_row": In(range(rows)),
            "read_data": Out(row_layout),
        })

    def elaborate(self, platform):
        m = Module()
        width = 32 * self._cols
        registers = [Signal(width, name=f"row_{i}", attrs={"fault_class": "output"})
                     for i in range(self._rows)]
        with m.If(self.write_en):
            with m.Switch(self.write_row):
                for i, register in enumerate(registers):
                    with m.Case(i):
                        m.d.sync += register.eq(self.write_data.as_value())
        with m.Switch(self.read_row):
            for i, register in enumerate(registers):
                with m.Case(i):
                    m.d.comb += self.read_data.eq(register)
        return m
