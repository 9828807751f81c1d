"""Leading-zero count: the normalization of the LayerNorm root and reciprocal."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["LeadingZeroCount"]


class LeadingZeroCount(wiring.Component):
    """The number of zeros above the highest set bit of ``value``: ``width - bitlen(value)``.

    Combinational (a priority encoder); ``count`` is ``width`` for ``value == 0``.

    Parameters
    ----------
    width : int
        Width of ``value``, 1 .. 128.

    Members
    -------
    value : In(width)
    count : Out(range(width + 1))

    Raises
    ------
    TypeError
        If ``width`` is not an integer from 1 to 128.
    """

    def __init__(self, *, width):
        self._width = check_int("Leading-zero count width", width, 1, 128)
        super().__init__({
            "value": In(width),
            "count": Out(range(width + 1)),
        })

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.count.eq(self._width)
        # Later assignments win: the highest set bit decides.
        for bit in range(self._width):
            with m.If(self.value[bit]):
                m.d.comb += self.count.eq(self._width - 1 - bit)
        return m
