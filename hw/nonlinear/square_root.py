"""The bit-serial square root of the LayerNorm unit (docs/nonlinear.md, "Notation")."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.validation import check_int

__all__ = ["SquareRoot"]


class SquareRoot(wiring.Component):
    """``isqrt(v) = floor(sqrt(v))`` by the restoring digit-by-digit method, no division.

    The radicand is taken two bits at a time from the top: each cycle appends the next bit
    pair to the partial remainder, compares it with the trial value ``4 root + 1`` and, if it
    is not smaller, subtracts it and appends a 1 to the root (else a 0). After
    ``root_bits = ceil(radicand_bits / 2)`` cycles ``root`` is the floor square root and the
    remainder ``v - root**2``.

    Latency: ``busy`` is high for the ``root_bits`` cycles after the edge that samples
    ``start``; in the cycle it falls ``root`` holds the result, until the next start. The
    radicand is read again in every cycle (it is not copied): it must stay unchanged until
    ``busy`` falls. A ``start`` while busy restarts.

    Parameters
    ----------
    radicand_bits : int
        Width of the unsigned radicand, 1 .. 128.

    Members
    -------
    start : In(1)
    radicand : In(radicand_bits)
    busy : Out(1)
    root : Out(root_bits)

    Raises
    ------
    TypeError
        If ``radicand_bits`` is not an integer from 1 to 128.
    """

    def __init__(self, *, radicand_bits):
        self._radicand_bits = check_int("Square root radicand_bits", radicand_bits, 1, 128)
        super().__init__({
            "start": In(1),
            "radicand": In(radicand_bits),
            "busy": Out(1),
            "root": Out(self.root_bits),
        })

    @property
    def radicand_bits(self):
        return self._radicand_bits

    @property
    def root_bits(self):
        """``ceil(radicand_bits / 2)``, the width of the root and the cycle count."""
        return (self._radicand_bits + 1) // 2

    @property
    def cycles(self):
        """Cycles ``busy`` stays high after the start edge."""
        return self.root_bits

    def elaborate(self, platform):
        m = Module()
        width = self.root_bits
        root = Signal(width, name="root")
        remainder = Signal(width + 2, name="remainder")
        count = Signal(range(width + 1), name="count")

        # Bit pair count - 1 of the radicand (padded to 2 * width bits) joins the remainder.
        padded = Cat(Const(0, 2), self.radicand, Const(0, 2 * width - self._radicand_bits))
        widened = Cat(padded.bit_select(count << 1, 2), remainder)
        trial = Cat(Const(1, 2), root)
        fits = widened >= trial

        with m.If(self.start):
            m.d.sync += [root.eq(0), remainder.eq(0), count.eq(width)]
        with m.Elif(count != 0):
            m.d.sync += [
                remainder.eq(Mux(fits, widened - trial, widened)),
                root.eq(Cat(fits, root)),
                count.eq(count - 1),
            ]

        m.d.comb += [self.busy.eq(count != 0), self.root.eq(root)]
        return m
