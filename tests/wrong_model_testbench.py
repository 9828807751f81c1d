"""The GEMM testbench with a model that is off by one: its checker must complain."""

import sim.testbenches.gemm as testbench
from sw.twin.gemm import tile_product


def _off_by_one(a_tile, b_tile):
    return tile_product(a_tile, b_tile) + 1


testbench.tile_product = _off_by_one
gemm_requests = testbench.gemm_requests
