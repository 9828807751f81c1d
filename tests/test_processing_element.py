# amaranth: UnusedElaboratable=no
"""The PE alone, under Amaranth's simulator."""

import pytest
from amaranth.sim import Simulator

from hw.gemm.processing_element import ProcessingElement


def run(pe, testbench):
    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_accumulates_products_and_passes_operands_one_cycle_later():
    pe = ProcessingElement()
    pairs = [(3, 4), (-128, -128), (127, -128), (-7, 9)]
    seen = []

    async def testbench(ctx):
        for a, b in pairs:
            ctx.set(pe.a_in, a)
            ctx.set(pe.b_in, b)
            await ctx.tick()
            seen.append((ctx.get(pe.a_out), ctx.get(pe.b_out), ctx.get(pe.accumulator)))

    run(pe, testbench)
    total = 0
    for (a, b), (a_out, b_out, acc) in zip(pairs, seen):
        total += a * b
        assert (a_out, b_out, acc) == (a, b, total)


def test_accumulator_wraps_modulo_2_to_the_32():
    pe = ProcessingElement()

    async def testbench(ctx):
        ctx.set(pe.shift, 1)
        ctx.set(pe.acc_in, 2**31 - 1)
        await ctx.tick()
        ctx.set(pe.shift, 0)
        ctx.set(pe.a_in, 1)
        ctx.set(pe.b_in, 2)
        await ctx.tick()
        assert ctx.get(pe.accumulator) == -(2**31) + 1

    run(pe, testbench)


def test_shift_loads_the_pe_above_and_clear_wins_over_shift():
    pe = ProcessingElement()

    async def testbench(ctx):
        ctx.set(pe.a_in, 5)
        ctx.set(pe.b_in, 5)
        ctx.set(pe.shift, 1)
        ctx.set(pe.acc_in, -42)
        await ctx.tick()
        assert ctx.get(pe.accumulator) == -42      # no product added while shifting
        ctx.set(pe.clear, 1)
        await ctx.tick()
        assert ctx.get(pe.accumulator) == 0

    run(pe, testbench)


@pytest.mark.parametrize("argument, value, message", [
    ("a_width", 0, "A operand width must be an integer from 1 to 64, not 0"),
    ("acc_width", 32.0, "Accumulator width must be an integer from 1 to 128, not 32.0"),
])
def test_bad_width_names_the_parameter(argument, value, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        ProcessingElement(**{argument: value})
