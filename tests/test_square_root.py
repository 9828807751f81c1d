# amaranth: UnusedElaboratable=no
"""The bit-serial square root (hw/nonlinear/square_root.py) against ``math.isqrt``."""

import math
import random

import pytest
from amaranth.sim import Simulator

from hw.nonlinear.square_root import SquareRoot


def run_roots(root, radicands):
    """(root, busy cycles) of each radicand; the radicand is held while ``busy``."""
    results = []

    async def bench(ctx):
        for value in radicands:
            ctx.set(root.radicand, value)
            ctx.set(root.start, 1)
            await ctx.tick()
            ctx.set(root.start, 0)
            cycles = 0
            while ctx.get(root.busy):
                await ctx.tick()
                cycles += 1
            results.append((ctx.get(root.root), cycles))

    simulator = Simulator(root)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    return results


@pytest.mark.parametrize("bits", [1, 2, 5, 8, 41])
def test_the_root_is_the_exact_floor_in_ceil_half_bits_cycles(bits):
    root = SquareRoot(radicand_bits=bits)
    rng = random.Random(bits)
    values = (list(range(1 << bits)) if bits <= 8
              else [rng.randrange(1 << bits) for _ in range(100)] + [(1 << bits) - 1, 1 << 40])
    results = run_roots(root, values)
    assert root.cycles == root.root_bits == (bits + 1) // 2
    assert results == [(math.isqrt(value), root.cycles) for value in values]


def test_a_start_while_busy_restarts():
    root = SquareRoot(radicand_bits=12)
    seen = []

    async def bench(ctx):
        ctx.set(root.radicand, 4000)
        ctx.set(root.start, 1)
        await ctx.tick()
        ctx.set(root.start, 0)
        await ctx.tick().repeat(2)
        ctx.set(root.radicand, 99)
        ctx.set(root.start, 1)
        await ctx.tick()
        ctx.set(root.start, 0)
        await ctx.tick().repeat(root.cycles)
        seen.append((ctx.get(root.busy), ctx.get(root.root)))

    simulator = Simulator(root)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert seen == [(0, 9)]


def test_the_width_is_checked():
    with pytest.raises(TypeError, match="^Square root radicand_bits must be an integer from "
                                        "1 to 128, not 129$"):
        SquareRoot(radicand_bits=129)
