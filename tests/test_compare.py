"""The checkers' multiplexer-chain comparators (hw/nonlinear/compare.py) against Python's
integer comparison, every pair of values for mixed widths and signedness."""

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from hw.nonlinear.compare import at_most, less_than


def _values(shape):
    if shape.signed:
        return range(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
    return range(1 << shape.width)


@pytest.mark.parametrize("shape_a, shape_b", [
    (signed(4), signed(4)), (4, 3), (3, signed(4)), (signed(3), 4), (signed(1), 2), (1, 1)])
def test_every_pair_compares_as_integers(shape_a, shape_b):
    m = Module()
    a, b = Signal(shape_a), Signal(shape_b)
    below, not_above = Signal(), Signal()
    m.d.comb += [below.eq(less_than(a, b)), not_above.eq(at_most(a, b))]
    wrong = []

    async def bench(ctx):
        for x in _values(a.shape()):
            for y in _values(b.shape()):
                ctx.set(a, x)
                ctx.set(b, y)
                if (ctx.get(below), ctx.get(not_above)) != (x < y, x <= y):
                    wrong.append((x, y))

    simulator = Simulator(m)
    simulator.add_testbench(bench)
    simulator.run()
    assert wrong == []
