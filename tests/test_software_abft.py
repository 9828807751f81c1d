"""Block-wise ABFT in software: exact on clean data, catches and repairs corruptions, agrees
with the hardware twin tile by tile, and counts its cost by the documented formula."""

import pytest
import torch

from sw.analysis.vulnerability import quantized_model
from sw.datapath import Datapath, Site
from sw.inject.operation import FaultInjector
from sw.models.datasets import load_dataset
from sw.protect.block_abft import BlockABFT, check_ops, choose_block
from sw.twin.gemm import gemm_int8, iter_tiles, random_operands
from sw.twin.protection import check_tile

SITE = Site("test.gemm", "fc1", 0, "gemm", None)


@pytest.fixture(scope="module")
def test_images():
    return load_dataset("digits").test_images


class Corrupt(Datapath):
    """Adds ``delta`` to the given flat elements of the next GEMM's result."""

    def __init__(self, elements, delta):
        self.elements, self.delta = elements, delta

    def gemm(self, site, a, b):
        result = gemm_int8(a, b).reshape(-1).clone()
        value = result[self.elements].to(torch.int64) + self.delta
        result[self.elements] = ((value + 2 ** 31) % 2 ** 32 - 2 ** 31).to(torch.int32)
        return result.reshape(*a.shape[:-1], b.shape[-1])


@pytest.mark.parametrize("model", ["vit", "cnn"])
@pytest.mark.parametrize("block", ["auto", "tile"])
def test_no_false_alarm_on_the_clean_test_set(model, block, test_images):
    quantized = quantized_model(model, "digits")[1]
    abft = BlockABFT(block=block, checks="rowcol" if block == "tile" else "auto")
    assert torch.equal(quantized(test_images, abft), quantized(test_images))
    total = abft.total()
    assert total.blocks > 1000 and total.detections == 0 and total.recompute_macs == 0


@pytest.mark.parametrize("checks", ["col", "row", "rowcol", "auto"])
@pytest.mark.parametrize("block", [(4, 5), (8, 8), (16, 16)])
def test_every_corrupted_element_is_caught_and_repaired(checks, block):
    a, b = random_operands(19, 23, 13, seed=3)
    a = a.reshape(1, 19, 23)
    clean = gemm_int8(a, b)
    for element in (0, 12, 7 * 13 + 5, 19 * 13 - 1, 18 * 13):        # corners, edge blocks
        for delta in (1, -1, 2 ** 31, 12345):
            abft = BlockABFT(Corrupt(torch.tensor([element]), delta), block=block,
                             checks=checks)
            assert torch.equal(abft.gemm(SITE, a, b), clean)
            assert abft.stats["fc1"].detections == 1


def test_injected_faults_are_all_repaired_per_image_and_head():
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(-128, 128, (6, 3, 17, 16), dtype=torch.int8, generator=generator)
    b = torch.randint(-128, 128, (6, 3, 16, 17), dtype=torch.int8, generator=generator)
    abft = BlockABFT(FaultInjector(2e-4, seed=4), checks="rowcol", audit=True)
    result = abft.gemm(Site("s", "attn_scores", 0, "gemm", None), a, b)
    stats = abft.stats["attn_scores"]
    assert stats.wrong_blocks > 10
    assert stats.detections == stats.wrong_blocks and stats.missed == stats.false_alarms == 0
    assert torch.equal(result, gemm_int8(a, b))


@pytest.mark.parametrize("checks", ["col", "rowcol"])
@pytest.mark.parametrize("seed", range(4))
def test_tile_blocks_agree_with_the_hardware_twin(checks, seed):
    a, b = random_operands(21, 30, 19, seed=seed)
    faulty = FaultInjector(1e-5, seed=seed, targets=["a", "b", "product", "output"])
    raw = faulty.gemm(SITE, a[None], b)[0]
    abft = BlockABFT(block="tile", checks=checks)
    flags = abft.flags(a, b, raw)[0]
    hardware = []
    for tile in iter_tiles(a, b, 8, 8):
        drained = torch.zeros(8, 8, dtype=torch.int32)
        drained[:tile.valid_rows, :tile.valid_cols] = raw[
            tile.row0:tile.row0 + tile.valid_rows, tile.col0:tile.col0 + tile.valid_cols]
        hardware.append(check_tile(tile.a, tile.b, drained, checks).error)
    assert flags.reshape(-1).tolist() == hardware
    assert 0 < sum(hardware) < len(hardware)


def test_check_cost_follows_the_formula():
    a, b = random_operands(10, 6, 12, seed=0)
    # Column checks, 4 x 5 blocks: 3 block rows. A column sums 10*6, checksum rows 3*6*12,
    # C column sums 10*12, comparisons 3*12.
    assert check_ops(10, 6, 12, 4, 5, "col")["total"] == 60 + 216 + 120 + 36
    # Row checks, 3 block columns: B row sums 6*12 (none for a weight), checksum columns
    # 3*10*6, C row sums 10*12, comparisons 3*10.
    assert check_ops(10, 6, 12, 4, 5, "row", weight_b=True)["total"] == 180 + 120 + 30
    assert check_ops(10, 6, 12, 4, 5, "row")["total"] == 72 + 180 + 120 + 30
    for checks, weight, expected in (("col", True, 432), ("row", True, 330),
                                     ("rowcol", True, 762)):
        abft = BlockABFT(block=(4, 5), checks=checks)
        abft.gemm(SITE, a.expand(7, 10, 6), b)
        stats = abft.stats["fc1"]
        assert (stats.check_ops, stats.macs, stats.gemms) == (7 * expected, 7 * 720, 7)
        assert stats.blocks == 7 * 9
    per_image_b = BlockABFT(block=(4, 5), checks="row")
    per_image_b.gemm(SITE, a[None], b[None])
    assert per_image_b.stats["fc1"].check_ops == 402


def test_auto_blocks_meet_the_target_where_they_can():
    # qkv of the digits ViT: 17 x 64 x 192, weight B: row checks, 8 x 96 blocks, 2.62%.
    assert choose_block(17, 64, 192, "row", weight_b=True) == (8, 96)
    plan = BlockABFT().plan(17, 64, 192, True)
    assert (plan.rows, plan.cols, plan.checks) == (8, 96, "row")
    assert plan.overhead <= 0.03
    # The attention scores (17 x 16 x 17): no block reaches 3%; the cheapest is whole columns.
    plan = BlockABFT().plan(17, 16, 17, False)
    assert (plan.rows, plan.checks) == (17, "col")
    assert plan.overhead == pytest.approx((17 * 16 + 16 * 17 + 17 * 17 + 17) / (17 * 16 * 17))


@pytest.mark.parametrize("options, error, message", [
    ({"block": "big"}, TypeError, "block must be 'auto', 'tile' or (rows, cols), not 'big'"),
    ({"block": (0, 8)}, TypeError,
     "block must be a pair of positive integers (rows, cols), not (0, 8)"),
    ({"block": 8}, TypeError, "block must be a pair of positive integers (rows, cols), not 8"),
    ({"tile": (8,)}, TypeError, "tile must be a pair of positive integers (rows, cols), not (8,)"),
    ({"checks": "diag"}, TypeError,
     "checks must be one of 'auto', 'col', 'row', 'rowcol', not 'diag'"),
    ({"overhead_target": 1.5}, TypeError,
     "overhead_target must be a number in (0, 1), not 1.5"),
    ({"inner": "injector"}, TypeError, "inner must be a Datapath, not 'injector'"),
])
def test_bad_options_are_named(options, error, message):
    with pytest.raises(error) as raised:
        BlockABFT(**options)
    assert str(raised.value) == message
