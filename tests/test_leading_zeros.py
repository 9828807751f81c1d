# amaranth: UnusedElaboratable=no
"""The leading-zero count (hw/nonlinear/leading_zeros.py): ``width - bitlen(value)``."""

import pytest
from amaranth.sim import Simulator

from hw.nonlinear.leading_zeros import LeadingZeroCount


@pytest.mark.parametrize("width", [1, 9])
def test_every_value_gives_width_minus_its_bit_length(width):
    count = LeadingZeroCount(width=width)
    seen = []

    async def bench(ctx):
        for value in range(1 << width):
            ctx.set(count.value, value)
            seen.append(ctx.get(count.count))

    simulator = Simulator(count)
    simulator.add_testbench(bench)
    simulator.run()
    assert seen == [width - value.bit_length() for value in range(1 << width)]


def test_the_width_is_checked():
    with pytest.raises(TypeError, match="^Leading-zero count width must be an integer from 1 "
                                        "to 128, not True$"):
        LeadingZeroCount(width=True)
