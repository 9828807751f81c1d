"""The RTL-derived fault model (sw/twin/upset.py) against the RTL, experiment by experiment."""

import numpy as np
import pytest
import torch

from hw.config import AcceleratorConfig
from sim.build import build_design
from sim.campaign.engine import CampaignOptions, replay
from sim.campaign.outcomes import classify
from sim.campaign.workload import Workload
from sim.harness import window_cycles
from sw.twin.gemm import iter_tiles, random_operands
from sw.twin.protection import RangeBounds
from sw.twin.upset import MODELED_CLASSES, predict_upset

DESIGNS = [
    # Non-square arrays catch a row swapped for a column; partial tiles (6 x 5 on 3 x 5,
    # 5 x 2) catch padding; tight bounds make the range checker clamp faulty values.
    (AcceleratorConfig(rows=3, cols=5, k_max=16, abft="rowcol", range_check=True),
     RangeBounds(-60000, 60000)),
    (AcceleratorConfig(rows=5, cols=2, k_max=16, abft="col"), None),
    (AcceleratorConfig(rows=4, cols=4, k_max=16, range_check=True), RangeBounds(-60000, 60000)),
]
WORKLOAD = Workload(m=6, k=9, n=5, seed=3)


def sampled_upsets(config, count, seed):
    """Uniform over the modeled sites' bits, the tiles and the injection window."""
    sites = [site for site in build_design(config).fault_sites()
             if site.fault_class in MODELED_CLASSES]
    tiles = WORKLOAD.tile_count(config.rows, config.cols)
    window = window_cycles(config, WORKLOAD.k)
    rng = np.random.default_rng(seed)
    upsets = []
    for _ in range(count):
        site = sites[rng.integers(len(sites))]
        upsets.append((site.path, int(rng.integers(site.width)), int(rng.integers(tiles)),
                       int(rng.integers(window))))
    return sites, upsets


@pytest.mark.parametrize("config,bounds", DESIGNS, ids=lambda value: getattr(value, "label", ""))
def test_the_model_predicts_every_sampled_upset_of_the_rtl(config, bounds):
    sites, upsets = sampled_upsets(config, 400, seed=1)
    options = CampaignOptions(config, WORKLOAD, range_bounds=bounds)
    records = replay(options, upsets)
    a, b = WORKLOAD.operands()
    tiles = list(iter_tiles(a, b, config.rows, config.cols))
    clean = WORKLOAD.tiles(config.rows, config.cols, options.bounds)
    mismatches, outcomes = [], set()
    for number, ((path, bit, tile_index, cycle), record) in enumerate(zip(upsets, records)):
        tile = tiles[tile_index]
        rows, cols = tile.valid_rows, tile.valid_cols
        view = predict_upset(config, tile.a, tile.b, path, bit, cycle, options.bounds)
        output = view.output[:rows, :cols]
        expected = torch.tensor(clean[tile_index].expected)[:rows, :cols]
        outcome = classify(hang=False, output_wrong=not torch.equal(output, expected),
                           alarm=view.alarm, corrected=view.abft_corrected)
        outcomes.add(record.outcome)
        tile_agrees = (record.faulty_tile is None
                       or np.array_equal(record.faulty_tile, output.numpy()))
        if outcome != record.outcome or not tile_agrees:
            mismatches.append((number, path, bit, tile_index, cycle, record.outcome, outcome))
    assert mismatches == []
    # The sample exercised more than the trivial outcome, and every modeled class.
    assert len(outcomes) >= 3
    assert {site.fault_class for site in sites} == set(MODELED_CLASSES)


def test_sites_outside_the_datapath_are_not_modeled():
    config = AcceleratorConfig(rows=2, cols=2, k_max=4, abft="rowcol")
    a, b = random_operands(2, 4, 2, seed=0)
    for site in ("controller.step", "checksums.col_check_0.accumulator", "k"):
        assert predict_upset(config, a, b, site, 0, 3) is None


def test_an_operand_upset_reaches_the_rest_of_its_row_only():
    """A[1][s] flipped in PE(1, 0)'s a_reg changes C[1][1:] by delta * B[s][1:], nothing else,
    and raises the row's integrity flag, which lets rowcol correct even a cancelling row."""
    config = AcceleratorConfig(rows=2, cols=3, k_max=4)
    a, b = random_operands(2, 4, 3, seed=5, extreme_fraction=0)
    step, bit = 2, 6
    cycle = step + 1 + 0 + 3          # A[1][step] sits in PE(1, 0).a_reg during this cycle
    view = predict_upset(config, a, b, "array.pe_1_0.a_reg", bit, cycle)
    old = int(a[1, step])
    new = ((old & 0xFF) ^ (1 << bit)) - (((old & 0xFF) ^ (1 << bit)) >> 7 << 8)
    expected = (a.long() @ b.long())
    expected[1, 1:] += (new - old) * b[step, 1:].long()
    assert torch.equal(view.output.long(), expected)
    assert not view.alarm
