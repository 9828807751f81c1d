"""Range checker on the accelerator's output path."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.config import INT32_MAX, INT32_MIN
from hw.validation import check_int

__all__ = ["RangeChecker"]


class RangeChecker(wiring.Component):
    """Range checker on the output path: values outside programmable bounds are clamped.

    A value outside ``[lower, upper]`` (signed int32) is replaced by the bound it crossed
    (``zero_mode`` off, Ranger's policy) or by zero (``zero_mode`` on). Every such value read
    by the host increments ``count`` and sets the sticky ``flag``; writing the control register
    with bit 1 set clears both. The bounds come from profiling clean runs; reset leaves them
    at the int32 limits, where nothing is clamped. All its registers are fault sites of class
    ``range``.

    Parameters
    ----------
    lanes : int
        Values checked per cycle (the width of a result row).

    Members
    -------
    lanes_in : In(ArrayLayout(signed(32), lanes))
    lanes_out : Out(ArrayLayout(signed(32), lanes))
        Combinational.
    count_enable : In(1)
        The host is reading ``lanes_in``: count what is out of range.
    wdata : In(32)
    lower_we, upper_we, control_we : In(1)
        Host writes: the bounds, and the control word (bit 0: zero mode; bit 1: clear count
        and flag).
    lower, upper : Out(signed(32))
    zero_mode, flag : Out(1)
    count : Out(32)

    """

    def __init__(self, *, lanes):
        self._lanes = check_int("Range checker lanes", lanes, 1, 256)
        layout = data.ArrayLayout(signed(32), lanes)
        super().__init__({
            "lanes_in": In(layout),
            "lanes_out": Out(layout),
            "count_enable": In(1),
            "wdata": In(32),
            "lower_we": In(1),
            "upper_we": In(1),
            "control_we": In(1),
            "lower": Out(signed(32)),
            "upper": Out(signed(32)),
            "zero_mode": Out(1),
            "flag": Out(1),
            "count": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        attrs = {"fault_class": "range"}
        lower = Signal(signed(32), name="lower_bound", init=INT32_MIN, attrs=attrs)
        upper = Signal(signed(32), name="upper_bound", init=INT32_MAX, attrs=attrs)
        zero_mode = Signal(name="zero_mode_reg", attrs=attrs)
        count = Signal(32, name="out_of_range_count", attrs=attrs)
        flag = Signal(name="out_of_range_flag", attrs=attrs)

        with m.If(self.lower_we):
            m.d.sync += lower.eq(self.wdata)
        with m.If(self.upper_we):
            m.d.sync += upper.eq(self.wdata)

        outside = []
        for lane in range(self._lanes):
            value = self.lanes_in[lane]
            below, above = value < lower, value > upper
            outside.append(below | above)
            clamped = Mux(below, lower, upper)
            m.d.comb += self.lanes_out[lane].eq(
                Mux(below | above, Mux(zero_mode, 0, clamped), value))
        seen = sum(outside)

        with m.If(self.control_we):
            m.d.sync += zero_mode.eq(self.wdata[0])
            with m.If(self.wdata[1]):
                m.d.sync += [count.eq(0), flag.eq(0)]
        with m.Elif(self.count_enable):
            m.d.sync += [count.eq(count + seen), flag.eq(flag | (seen != 0))]

        m.d.comb += [self.lower.eq(lower), self.upper.eq(upper), self.zero_mode.eq(zero_mode),
                     self.flag.eq(flag), self.count.eq(count)]
        return m
