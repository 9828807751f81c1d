import pytest

from hw.config import AcceleratorConfig
from hw.register_map import Csr, Region, pack_lanes, unpack_lanes


def test_geometry_follows_the_largest_index_and_row():
    regs = AcceleratorConfig(rows=8, cols=8, k_max=256).register_map
    assert regs.index_width == 8
    assert regs.addr_width == 10
    assert regs.data_width == 256            # a whole row of 8 int32 results
    assert AcceleratorConfig(rows=64, cols=1, k_max=4).register_map.data_width == 512   # 64 int8 A lanes
    assert AcceleratorConfig(rows=1, cols=1, k_max=1).register_map.index_width == 4     # room for 14 CSRs
    assert len(Csr) == 14


def test_address_puts_the_region_above_the_index():
    regs = AcceleratorConfig(rows=3, cols=5, k_max=100).register_map
    assert regs.index_width == 7
    assert regs.address(Region.CSR, Csr.K) == 2
    assert regs.address(Region.A, 99) == (1 << 7) | 99
    assert regs.address(Region.RESULT, 2) == (3 << 7) | 2


def test_config_word_packs_the_parameters():
    assert AcceleratorConfig(rows=3, cols=5, k_max=100).register_map.config_word == 3 | 5 << 8 | 100 << 16
    protected = AcceleratorConfig(rows=3, cols=5, k_max=100, abft="rowcol", range_check=True).register_map
    assert protected.config_word == 3 | 5 << 8 | 100 << 16 | 2 << 29 | 1 << 31
    assert AcceleratorConfig(rows=3, cols=5, k_max=100, abft="col").register_map.config_word >> 29 == 1


@pytest.mark.parametrize("width", [8, 32])
def test_lanes_round_trip_with_extremes(width):
    low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
    values = [low, high, -1, 0, 1, low + 1]
    word = pack_lanes(values, width)
    assert 0 <= word < 1 << (width * len(values))
    assert unpack_lanes(word, len(values), width) == values


def test_lane_zero_is_least_significant():
    assert pack_lanes([1, -1], 8) == 0xFF01
