# amaranth: UnusedElaboratable=no
"""The whole accelerator under Amaranth's simulator: host port, control, timing, results."""

import pytest
from amaranth.sim import Simulator

from hw.accelerator import GemmAccelerator
from hw.config import AcceleratorConfig
from hw.gemm.skew_buffer import SkewBuffer
from hw.register_map import Csr, Region, Status, pack_lanes, unpack_lanes
from sw.twin.gemm import iter_tiles, random_operands, tile_product


class PysimHost:
    """Drives the host port from an Amaranth testbench context."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut, self.regs = ctx, dut, dut.register_map

    async def write(self, region, index, value):
        self.ctx.set(self.dut.addr, self.regs.address(region, index))
        self.ctx.set(self.dut.wdata, value)
        self.ctx.set(self.dut.we, 1)
        await self.ctx.tick()
        self.ctx.set(self.dut.we, 0)

    async def read(self, region, index):
        self.ctx.set(self.dut.addr, self.regs.address(region, index))
        await self.ctx.tick()
        return self.ctx.get(self.dut.rdata)

    async def run_tile(self, tile):
        """Load, start, count cycles to DONE, read back; returns (rows, cycles)."""
        k = tile.a.shape[1]
        for step in range(k):
            await self.write(Region.A, step, pack_lanes(tile.a[:, step].tolist(), 8))
            await self.write(Region.B, step, pack_lanes(tile.b[step].tolist(), 8))
        await self.write(Region.CSR, Csr.K, k)
        await self.write(Region.CSR, Csr.CTRL, 1)
        cycles = 0
        while not self.ctx.get(self.dut.irq):
            await self.ctx.tick()
            cycles += 1
        rows = [unpack_lanes(await self.read(Region.RESULT, i), self.regs.cols, 32)
                for i in range(self.regs.rows)]
        return rows, cycles


def simulate(dut, testbench):
    async def host_testbench(ctx):
        await testbench(PysimHost(ctx, dut))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host_testbench)
    sim.run()


@pytest.mark.parametrize("rows, cols, k", [(3, 2, 5), (1, 1, 1), (2, 4, 7)])
def test_tiles_match_the_twin_and_take_tile_cycles(rows, cols, k):
    dut = GemmAccelerator(AcceleratorConfig(rows=rows, cols=cols, k_max=8))
    a, b = random_operands(2 * rows - 1, k, cols + 1, seed=rows * 10 + cols)
    tiles = list(iter_tiles(a, b, rows, cols))

    async def testbench(host):
        for tile in tiles:
            result, cycles = await host.run_tile(tile)
            assert result == tile_product(tile.a, tile.b).tolist()
            assert cycles == dut.tile_cycles(k)
            assert await host.read(Region.CSR, Csr.CYCLES) == dut.tile_cycles(k)
        assert await host.read(Region.CSR, Csr.TILES) == len(tiles)

    simulate(dut, testbench)


def test_tile_cycles_is_k_plus_fill_plus_drain():
    dut = GemmAccelerator(AcceleratorConfig(rows=8, cols=4, k_max=64))
    # read latency 1, K steps, wavefront rows + cols - 2, drain rows
    assert dut.tile_cycles(64) == 1 + 64 + 8 + 4 - 2 + 8
    with pytest.raises(TypeError, match=r"^K must be an integer from 1 to 64, not 65$"):
        dut.tile_cycles(65)


def test_start_with_illegal_k_sets_error_and_stays_idle():
    dut = GemmAccelerator(AcceleratorConfig(rows=2, cols=2, k_max=4))

    async def testbench(host):
        for bad_k in (0, 5):
            await host.write(Region.CSR, Csr.K, bad_k)
            await host.write(Region.CSR, Csr.CTRL, 1)
            status = await host.read(Region.CSR, Csr.STATUS)
            assert status == 1 << Status.ERROR
        await host.write(Region.CSR, Csr.K, 4)
        await host.write(Region.CSR, Csr.CTRL, 1)
        assert await host.read(Region.CSR, Csr.STATUS) == 1 << Status.BUSY

    simulate(dut, testbench)


def test_config_register_and_unmapped_result_rows():
    dut = GemmAccelerator(AcceleratorConfig(rows=3, cols=5, k_max=100))

    async def testbench(host):
        assert await host.read(Region.CSR, Csr.CONFIG) == 3 | 5 << 8 | 100 << 16
        assert await host.read(Region.CSR, Csr.K) == 100        # reset value: k_max
        assert await host.read(Region.RESULT, 3) == 0           # past the last row

    simulate(dut, testbench)


def test_skew_buffer_delays_lane_i_by_i_cycles():
    skew = SkewBuffer(lanes=4)
    outputs = []

    async def testbench(ctx):
        for step in range(8):
            for lane in range(4):
                ctx.set(skew.i_lanes[lane], 10 * lane + step if step < 3 else 0)
            outputs.append([ctx.get(skew.o_lanes[lane]) for lane in range(4)])
            await ctx.tick()

    sim = Simulator(skew)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    for lane in range(4):
        column = [row[lane] for row in outputs]
        assert column[lane:lane + 3] == [10 * lane, 10 * lane + 1, 10 * lane + 2]
        assert column[:lane] == [0] * lane


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": 0}, "Array rows must be an integer from 1 to 64, not 0"),
    ({"rows": 65}, "Array rows must be an integer from 1 to 64, not 65"),
    ({"cols": 2.0}, "Array cols must be an integer from 1 to 64, not 2.0"),
    ({"cols": True}, "Array cols must be an integer from 1 to 64, not True"),
    ({"k_max": 0}, "k_max must be an integer from 1 to 4096, not 0"),
    ({"k_max": "64"}, "k_max must be an integer from 1 to 4096, not '64'"),
    ({"abft": "row"}, "abft must be one of 'none', 'col', 'rowcol', not 'row'"),
    ({"range_check": 1}, "range_check must be True or False, not 1"),
])
def test_bad_parameters_name_the_parameter_and_value(kwargs, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        AcceleratorConfig(**kwargs)


def test_non_square_and_non_power_of_two_arrays_are_legal():
    dut = GemmAccelerator(AcceleratorConfig(rows=5, cols=3, k_max=7))
    assert (dut.config.rows, dut.config.cols, dut.config.k_max) == (5, 3, 7)
    assert dut.register_map.data_width == max(5 * 8, 3 * 32)
