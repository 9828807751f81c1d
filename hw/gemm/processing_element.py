"""The processing element (PE) of an output-stationary systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell; it holds one element of the output tile.

    Every cycle the PE adds ``a_in * b_in`` to its accumulator (wrapping modulo
    ``2**acc_width``) and registers its operands, passing A to the right (``a_out``) and
    B downwards (``b_out``). With ``shift`` the accumulator instead loads ``acc_in``, the
    accumulator of the PE above, so that an array drains its results through its bottom
    row. ``clear`` zeroes the accumulator and takes precedence over ``shift``.

    Latency: ``a_out`` and ``b_out`` are ``a_in`` and ``b_in`` one cycle later; the
    product of the inputs present in a cycle is in the accumulator after that cycle's edge.

    Parameters
    ----------
    a_width, b_width : int
        Widths of the signed A and B operands (8 for the data array; checksum PEs use wider
        operands).
    acc_width : int
        Width of the signed accumulator.
    fault_class : str or None
        Fault-site class of all the PE's registers; ``None`` (the data array): ``operand``
        for the operand registers and ``accumulator`` for the accumulator.

    Members
    -------
    a_in : In(signed(a_width))
    b_in : In(signed(b_width))
    a_out : Out(signed(a_width))
    b_out : Out(signed(b_width))
    acc_in : In(signed(acc_width))
        Accumulator of the PE above (zero for the top row).
    accumulator : Out(signed(acc_width))
    clear, shift : In(1)

    Raises
    ------
    TypeError
        If a width is not a positive integer.
    """

    def __init__(self, *, a_width=8, b_width=8, acc_width=32, fault_class=None):
        self._a_width = check_int("A operand width", a_width, 1, 64)
        self._b_width = check_int("B operand width", b_width, 1, 64)
        self._acc_width = check_int("Accumulator width", acc_width, 1, 128)
        self._fault_class = fault_class
        super().__init__({
            "a_in": In(signed(a_width)),
            "b_in": In(signed(b_width)),
            "a_out": Out(signed(a_width)),
            "b_out": Out(signed(b_width)),
            "acc_in": In(signed(acc_width)),
            "accumulator": Out(signed(acc_width)),
            "clear": In(1),
            "shift": In(1),
        })

    @property
    def a_width(self):
        return self._a_width

    @property
    def b_width(self):
        return self._b_width

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        operand = {"fault_class": self._fault_class or "operand"}
        a_reg = Signal(signed(self._a_width), name="a_reg", attrs=operand)
        b_reg = Signal(signed(self._b_width), name="b_reg", attrs=operand)
        accumulator = Signal(signed(self._acc_width), name="accumulator",
                             attrs={"fault_class": self._fault_class or "accumulator"})

        m.d.sync += [a_reg.eq(self.a_in), b_reg.eq(self.b_in)]
        with m.If(self.clear):
            m.d.sync += accumulator.eq(0)
        with m.Elif(self.shift):
            m.d.sync += accumulator.eq(self.acc_in)
        with m.Else():
            # Assigning the wider sum truncates it: arithmetic modulo 2**acc_width.
            m.d.sync += accumulator.eq(accumulator + self.a_in * self.b_in)

        m.d.comb += [
            self.a_out.eq(a_reg),
            self.b_out.eq(b_reg),
            self.accumulator.eq(accumulator),
        ]
        return m
