# amaranth: UnusedElaboratable=no
"""The whole accelerator under Amaranth's simulator: host port, control, timing, results."""

import pytest
import torch
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.accelerator import GemmAccelerator
from hw.config import AcceleratorConfig
from hw.gemm.skew_buffer import SkewBuffer
from hw.register_map import Csr, Region, Status, pack_lanes, unpack_lanes
from sw.twin.gemm import iter_tiles, random_operands, tile_product
from sw.twin.protection import RangeBounds, check_tile, range_check


class PysimHost:
    """Drives the host port and the reset from an Amaranth testbench context."""

    def __init__(self, ctx, dut, domain):
        self.ctx, self.dut, self.regs, self.domain = ctx, dut, dut.register_map, domain

    async def reset(self, cycles=1):
        """Hold ``rst`` high for ``cycles`` rising edges (``tick`` refuses to, by design)."""
        self.ctx.set(self.domain.rst, 1)
        for _ in range(cycles):
            await self.ctx.posedge(self.domain.clk)
        self.ctx.set(self.domain.rst, 0)

    async def write(self, region, index, value):
        self.ctx.set(self.dut.addr, self.regs.address(region, index))
        self.ctx.set(self.dut.wdata, value)
        self.ctx.set(self.dut.we, 1)
        await self.ctx.tick()
        self.ctx.set(self.dut.we, 0)

    async def read(self, region, index, consume=False):
        """The word at ``index`` of ``region``; ``consume`` raises ``re`` (counts ranges)."""
        self.ctx.set(self.dut.addr, self.regs.address(region, index))
        self.ctx.set(self.dut.re, int(consume))
        await self.ctx.tick()
        self.ctx.set(self.dut.re, 0)
        return self.ctx.get(self.dut.rdata)

    async def load(self, a_tile, b_tile):
        """Write the operand buffers and K."""
        k = a_tile.shape[1]
        for step in range(k):
            await self.write(Region.A, step, pack_lanes(a_tile[:, step].tolist(), 8))
            await self.write(Region.B, step, pack_lanes(b_tile[step].tolist(), 8))
        await self.write(Region.CSR, Csr.K, k)

    async def wait_done(self):
        """Cycles until ``irq``."""
        cycles = 0
        while not self.ctx.get(self.dut.irq):
            await self.ctx.tick()
            cycles += 1
        return cycles

    async def read_result(self, consume=False):
        return [unpack_lanes(await self.read(Region.RESULT, i, consume), self.regs.cols, 32)
                for i in range(self.regs.rows)]

    async def run_tile(self, tile):
        """Load, start, count cycles to DONE, read back; returns (rows, cycles)."""
        await self.load(tile.a, tile.b)
        await self.write(Region.CSR, Csr.CTRL, 1)
        cycles = await self.wait_done()
        return await self.read_result(), cycles


def simulate(dut, testbench):
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut

    async def host_testbench(ctx):
        await testbench(PysimHost(ctx, dut, sync))

    sim = Simulator(top)
    sim.add_clock(1e-6, domain="sync")
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


def status_bits(*bits):
    return sum(1 << bit for bit in bits)


def test_k_above_k_max_is_refused_however_wide_the_written_word():
    """Defect 13: the whole bus word is checked, not the K register's bits of it."""
    dut = GemmAccelerator(AcceleratorConfig(rows=8, cols=8, k_max=64))
    words = [0x81, 0x10007, 65, 1 << 255 | 7, (1 << 256) - 1]

    async def testbench(host):
        for word in words:
            await host.write(Region.CSR, Csr.K, word)
            assert await host.read(Region.CSR, Csr.K) == 65     # k_max + 1: illegal
            await host.write(Region.CSR, Csr.CTRL, 1)
            assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.ERROR)
        await host.write(Region.CSR, Csr.K, 64)
        await host.write(Region.CSR, Csr.CTRL, 1)
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.BUSY)

    simulate(dut, testbench)


def two_tiles(rows, cols, k, seed=0):
    a, b = random_operands(2 * rows, k, cols, seed=seed)
    return list(iter_tiles(a, b, rows, cols))


def test_a_refused_start_clears_done_and_keeps_the_last_tile():
    dut = GemmAccelerator(AcceleratorConfig(rows=2, cols=3, k_max=4))
    tile = two_tiles(2, 3, 4)[0]

    async def testbench(host):
        result, _ = await host.run_tile(tile)
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.DONE)
        await host.write(Region.CSR, Csr.K, 0)
        await host.write(Region.CSR, Csr.CTRL, 1)
        assert not host.ctx.get(dut.irq)
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.ERROR)
        # The results, CYCLES and TILES still describe the last tile that ran.
        assert await host.read_result() == result == tile_product(tile.a, tile.b).tolist()
        assert await host.read(Region.CSR, Csr.CYCLES) == dut.tile_cycles(4)
        assert await host.read(Region.CSR, Csr.TILES) == 1
        # An accepted START clears ERROR.
        await host.write(Region.CSR, Csr.K, 4)
        await host.write(Region.CSR, Csr.CTRL, 1)
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.BUSY)

    simulate(dut, testbench)


def test_a_start_while_busy_sets_error_and_the_running_tile_finishes():
    dut = GemmAccelerator(AcceleratorConfig(rows=2, cols=3, k_max=4))
    first, second = two_tiles(2, 3, 4)

    async def testbench(host):
        await host.load(first.a, first.b)
        await host.write(Region.CSR, Csr.CTRL, 1)
        await host.write(Region.CSR, Csr.CTRL, 1)
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.BUSY,
                                                                      Status.ERROR)
        await host.wait_done()
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.DONE,
                                                                      Status.ERROR)
        assert await host.read(Region.CSR, Csr.CYCLES) == dut.tile_cycles(4)
        assert await host.read_result() == tile_product(first.a, first.b).tolist()
        await host.load(second.a, second.b)
        await host.write(Region.CSR, Csr.CTRL, 1)
        assert await host.read(Region.CSR, Csr.STATUS) == status_bits(Status.BUSY)
        await host.wait_done()
        assert await host.read_result() == tile_product(second.a, second.b).tolist()

    simulate(dut, testbench)


@pytest.mark.parametrize("idle_cycles, used", [(1, True), (2, False)])
def test_an_operand_entry_written_while_busy_counts_until_the_tile_reads_it(idle_cycles,
                                                                            used):
    """Entry k is read at the (k + 1)-th edge after START: a write sampled at that edge or
    later is for the next tile, one sampled before it changes the running tile."""
    dut = GemmAccelerator(AcceleratorConfig(rows=2, cols=2, k_max=4))
    tile = two_tiles(2, 2, 3)[0]
    new_column = [5, -7]
    changed = tile.a.clone()
    changed[:, 2] = torch.tensor(new_column, dtype=torch.int8)

    async def testbench(host):
        await host.load(tile.a, tile.b)
        await host.write(Region.CSR, Csr.CTRL, 1)       # sampled at edge 0
        await host.ctx.tick().repeat(idle_cycles)
        await host.write(Region.A, 2, pack_lanes(new_column, 8))   # edge 1 + idle_cycles
        await host.wait_done()
        expected = tile_product(changed if used else tile.a, tile.b)
        assert await host.read_result() == expected.tolist()
        await host.write(Region.CSR, Csr.CTRL, 1)       # the next tile uses the new entry
        await host.wait_done()
        assert await host.read_result() == tile_product(changed, tile.b).tolist()

    simulate(dut, testbench)


def test_csrs_read_zero_extended_and_bounds_take_the_low_32_bits():
    dut = GemmAccelerator(AcceleratorConfig(rows=2, cols=2, k_max=4, range_check=True))
    width = dut.register_map.data_width
    assert width == 64

    async def testbench(host):
        assert await host.read(Region.CSR, Csr.RANGE_LOWER) == 0x8000_0000
        assert await host.read(Region.CSR, Csr.RANGE_UPPER) == 0x7FFF_FFFF
        await host.write(Region.CSR, Csr.RANGE_LOWER, -5 & ((1 << width) - 1))
        await host.write(Region.CSR, Csr.RANGE_UPPER, 0xABCD_0000_0000_0009)
        assert await host.read(Region.CSR, Csr.RANGE_LOWER) == 0xFFFF_FFFB
        assert await host.read(Region.CSR, Csr.RANGE_UPPER) == 9
        assert await host.read(Region.CSR, Csr.K) == 4

    simulate(dut, testbench)


def range_tile(values):
    """A 1 x len(values) tile whose product is ``values`` (A = [[1]], K = 1)."""
    return (torch.ones((1, 1), dtype=torch.int8),
            torch.tensor([values], dtype=torch.int8))


async def range_checked_read(host, a, b, lower, upper, control):
    """Program the bounds, run the tile, read it with ``re``; returns (rows, count, flag)."""
    for csr, value in ((Csr.RANGE_LOWER, lower), (Csr.RANGE_UPPER, upper),
                       (Csr.RANGE_CONTROL, control | 2)):
        await host.write(Region.CSR, csr, value & 0xFFFF_FFFF)
    await host.load(a, b)
    await host.write(Region.CSR, Csr.CTRL, 1)
    await host.wait_done()
    rows = await host.read_result(consume=True)
    status = await host.read(Region.CSR, Csr.STATUS)
    return rows, await host.read(Region.CSR, Csr.RANGE_COUNT), bool(status >> Status.RANGE_FLAG & 1)


# (values, lower, upper, zero mode) -> what the host reads, the count and the flag.
RANGE_CASES = [
    ([-7, 9, 0, 3], -7, 9, False, [-7, 9, 0, 3], 0, False),        # exactly at each bound
    ([-8, -7, 9, 10], -7, 9, False, [-7, -7, 9, 9], 2, True),       # one past each bound
    ([-8, -7, 9, 10], -7, 9, True, [0, -7, 9, 0], 2, True),
    ([4, 4, 4, 4], 4, 4, False, [4, 4, 4, 4], 0, False),             # a one-value range
    ([3, 7, 12, -20], 10, 5, False, [10, 10, 5, 10], 4, True),      # lower above upper
    ([3, 7, 12, -20], 10, 5, True, [0, 0, 0, 0], 4, True),
]


@pytest.mark.parametrize("values, lower, upper, zero, expected, count, flag", RANGE_CASES)
def test_range_checker_at_and_past_its_bounds(values, lower, upper, zero, expected, count,
                                              flag):
    """The RTL and the twin, each against the table."""
    dut = GemmAccelerator(AcceleratorConfig(rows=1, cols=4, k_max=1, range_check=True))
    a, b = range_tile(values)

    async def testbench(host):
        assert await range_checked_read(host, a, b, lower, upper, int(zero)) == (
            [expected], count, flag)

    simulate(dut, testbench)
    twin, twin_count = range_check(tile_product(a, b), lower, upper, zero)
    assert (twin.tolist(), twin_count) == ([expected], count)
    if lower <= upper:
        check = check_tile(a, b, tile_product(a, b), bounds=RangeBounds(lower, upper, zero))
        assert (check.output.tolist(), check.out_of_range) == ([expected], count)


def test_one_reset_edge_restores_every_register_and_keeps_the_buffers():
    config = AcceleratorConfig(rows=2, cols=3, k_max=4, abft="rowcol", range_check=True)
    dut = GemmAccelerator(config)
    tile = two_tiles(2, 3, 3)[0]
    reset_values = {Csr.STATUS: 0, Csr.K: 4, Csr.CYCLES: 0, Csr.TILES: 0,
                    Csr.CONFIG: config.register_map.config_word, Csr.ROW_SYNDROME: 0,
                    Csr.COL_SYNDROME: 0, Csr.DETECTED: 0, Csr.CORRECTED: 0,
                    Csr.RANGE_LOWER: 0x8000_0000, Csr.RANGE_UPPER: 0x7FFF_FFFF,
                    Csr.RANGE_CONTROL: 0, Csr.RANGE_COUNT: 0}

    async def testbench(host):
        await range_checked_read(host, tile.a, tile.b, -5, 5, 1)
        await host.write(Region.CSR, Csr.K, 0)
        await host.write(Region.CSR, Csr.CTRL, 1)
        await host.reset(cycles=1)
        assert {csr: await host.read(Region.CSR, csr) for csr in reset_values} == reset_values
        assert await host.read_result() == [[0] * 3] * 2
        await host.write(Region.CSR, Csr.K, 3)          # the operands are still there
        await host.write(Region.CSR, Csr.CTRL, 1)
        await host.wait_done()
        assert await host.read_result() == tile_product(tile.a, tile.b).tolist()

    simulate(dut, testbench)


def test_operand_writes_past_k_max_are_ignored():
    """An index past the buffers' depth writes nothing (it used to alias entry index mod 4)."""
    dut = GemmAccelerator(AcceleratorConfig(rows=2, cols=2, k_max=4))
    tile = two_tiles(2, 2, 4)[0]
    assert dut.register_map.index_width == 4

    async def testbench(host):
        await host.load(tile.a, tile.b)
        for region in (Region.A, Region.B):
            for index in (4, 8, 15):
                await host.write(region, index, pack_lanes([99, -99], 8))
        await host.write(Region.CSR, Csr.CTRL, 1)
        await host.wait_done()
        assert await host.read_result() == tile_product(tile.a, tile.b).tolist()

    simulate(dut, testbench)
