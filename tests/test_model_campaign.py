"""The model as campaign workload: recorded GEMMs, K passes, the splice, sampling, resume."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from hw.config import AcceleratorConfig
from sim.cosim.campaign import identity_of, run_model_campaign
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions, classify_model
from sim.cosim.record import StruckTile
from sim.cosim.splice import CleanPrefix, SpliceDatapath, TileSplice
from sim.cosim.workload import record_gemms, tile_passes
from sw.analysis.vulnerability import quantized_model
from sw.datapath import Datapath, Recorder
from sw.models.datasets import load_dataset
from sw.twin.gemm import gemm_int8, tile_product, wrap_int32

CONFIG = AcceleratorConfig(rows=8, cols=8, k_max=32)   # K of 64 and 128 take several passes


@pytest.fixture(scope="module", params=["vit", "cnn"])
def model(request):
    _, quantized = quantized_model(request.param, "digits")
    return request.param, quantized, load_dataset("digits").test_images[:2]


def test_the_passes_of_every_gemm_add_up_to_the_gemm(model):
    """Tiles over (M, N), passes over K: the host's int32 sum of the passes is the GEMM."""
    _, quantized, images = model
    gemms = record_gemms(quantized, images[0])
    passes = tile_passes(gemms, CONFIG)
    assert any(p.k < gemm.a.shape[1] for p in passes for gemm in [gemms[p.gemm]])
    totals = [torch.zeros(gemm.a.shape[0], gemm.b.shape[1], dtype=torch.int64)
              for gemm in gemms]
    for tile_pass in passes:
        a, b = tile_pass.operands(gemms[tile_pass.gemm], CONFIG.rows, CONFIG.cols)
        rows, cols = tile_pass.valid_rows, tile_pass.valid_cols
        totals[tile_pass.gemm][tile_pass.row0:tile_pass.row0 + rows,
                               tile_pass.col0:tile_pass.col0 + cols] += \
            tile_product(torch.from_numpy(a), torch.from_numpy(b))[:rows, :cols].long()
    for gemm, total in zip(gemms, totals):
        assert torch.equal(wrap_int32(total), gemm_int8(gemm.a, gemm.b))


class ReplaceTile(Datapath):
    """The reference: one full inference with one tile of one GEMM replaced."""

    def __init__(self, gemm, row0, col0, tile):
        self.target, self.row0, self.col0, self.tile = gemm, row0, col0, tile
        self.output = None

    def gemm(self, site, a, b):
        result = super().gemm(site, a, b)
        if site.name == self.target.site:
            rows, cols = self.tile.shape
            result[(0, *self.target.index)][self.row0:self.row0 + rows,
                                            self.col0:self.col0 + cols] = self.tile
            self.output = result.clone()
        return result


def test_the_splice_equals_an_inference_with_the_tile_replaced(model):
    """For one tile of every GEMM kind: the batched splice gives the GEMM output (exactly)
    and the logits (to float rounding) of a whole inference with that tile replaced."""
    _, quantized, images = model
    gemms = record_gemms(quantized, images[0])
    passes = tile_passes(gemms, CONFIG)
    generator = torch.Generator().manual_seed(0)
    chosen = {}
    for tile_pass in passes:     # the last pass of each kind: away from the origin
        chosen[gemms[tile_pass.gemm].module] = tile_pass
    assert any(p.row0 > 0 for p in chosen.values()) and any(p.col0 > 0 for p in chosen.values())
    splices, references = [], []
    for tile_pass in chosen.values():
        gemm = gemms[tile_pass.gemm]
        clean = gemm_int8(gemm.a, gemm.b)[tile_pass.row0:tile_pass.row0 + tile_pass.valid_rows,
                                          tile_pass.col0:tile_pass.col0 + tile_pass.valid_cols]
        faulty = clean + torch.randint(-5000, 5000, clean.shape, generator=generator,
                                       dtype=torch.int32)
        splices.append(TileSplice(gemm.site, gemm.index, tile_pass.row0, tile_pass.col0,
                                  faulty.long() - clean.long()))
        reference = ReplaceTile(gemm, tile_pass.row0, tile_pass.col0, faulty)
        references.append((quantized(images[:1], reference)[0], reference.output))
    recorded = {}

    class Keep(SpliceDatapath):
        def gemm(self, site, a, b):
            recorded[site.name] = result = super().gemm(site, a, b)
            return result

    batch = images[:1].expand(len(splices), *images.shape[1:])
    logits = quantized(batch, Keep(splices))
    for number, (splice, (reference_logits, reference_output)) in enumerate(
            zip(splices, references)):
        assert torch.equal(recorded[splice.site][number], reference_output[0])
        assert torch.allclose(logits[number], reference_logits, rtol=1e-4, atol=1e-4)
    # Starting each element from the clean pass (no multiply before its splice) changes
    # nothing: every GEMM output is the same integer, the logits the same floats.
    full = dict(recorded)
    clean = Recorder()
    quantized(images[:1], clean)
    outputs = {site.name: clean.values[(site.name, "output")][0]
               for site in quantized.sites if site.operation == "gemm"}
    order = {site.name: place for place, site in enumerate(quantized.sites)}
    resumed = quantized(batch, Keep(splices, CleanPrefix(order, [outputs] * len(splices))))
    assert all(torch.equal(recorded[name], full[name]) for name in full)
    assert torch.equal(resumed, logits)


def test_experiments_are_pure_functions_of_seed_and_index():
    options = ModelCampaignOptions(CONFIG, model="vit", images=4, seed=3, engine="twin")
    first, second = ModelCampaign.prepare(options), ModelCampaign.prepare(options)
    assert [first.draw(n) for n in (0, 7, 99)] == [second.draw(n) for n in (99, 7, 0)][::-1]
    assert first.draw(5) != first.draw(6)
    assert first.run_twin([0, 1, 2]) == second.run_twin([2, 1, 0])


def test_modules_and_classes_restrict_the_draws():
    options = ModelCampaignOptions(CONFIG, model="vit", images=2, engine="twin",
                                   modules=("fc2",), classes=("accumulator",))
    campaign = ModelCampaign.prepare(options)
    upsets = [campaign.draw(n) for n in range(50)]
    assert {campaign.gemms(u.image)[campaign.passes[u.pass_index].gemm].module
            for u in upsets} == {"fc2"}
    assert {u.fault_class for u in upsets} == {"accumulator"}


def test_the_operation_level_model_runs_by_default_on_the_rtl_engine_only():
    options = ModelCampaignOptions(CONFIG, model="vit", images=4, seed=5, engine="twin")
    assert options.operation_level is False
    assert ModelCampaignOptions(CONFIG, engine="rtl").operation_level is True
    without = ModelCampaign.prepare(options).run(range(60))
    with_model = ModelCampaign.prepare(replace(options, operation_level=True)).run(range(60))
    assert {r.operation_level_sdc for r in without} == {None}
    assert {type(r.operation_level_sdc) for r in with_model} == {bool}
    # Running it adds its verdict and changes nothing else.
    assert [replace(r, operation_level_sdc=None) for r in with_model] == without
    # Campaigns from before the option ran it: their identity stays what it was.
    assert "operation_level" not in identity_of(replace(options, operation_level=True))
    assert identity_of(options)["operation_level"] is False
    with pytest.raises(TypeError, match="operation_level must be True or False, not 1"):
        replace(options, operation_level=1)


@pytest.mark.parametrize("struck,top1_changed,expected", [
    (StruckTile(None, hang=True), False, ("recompute", "hang")),
    (StruckTile(torch.tensor([[1]]), abft_error=True), False, ("recompute", "false_alarm")),
    (StruckTile(torch.tensor([[2]]), abft_error=True), False, ("recompute", "recomputed")),
    (StruckTile(torch.tensor([[2]]), range_flag=True, abft_error=True, abft_corrected=True),
     False, ("recompute", "recomputed")),
    (StruckTile(torch.tensor([[1]]), abft_error=True, abft_corrected=True), False,
     ("keep", "corrected")),
    (StruckTile(torch.tensor([[2]]), abft_error=True, abft_corrected=True), True,
     ("keep", "sdc")),
    (StruckTile(torch.tensor([[1]])), True, ("keep", "masked")),
    (StruckTile(torch.tensor([[2]])), False, ("keep", "tolerated")),
    (StruckTile(torch.tensor([[2]])), True, ("keep", "sdc")),
])
def test_the_host_policy(struck, top1_changed, expected):
    assert classify_model(struck, torch.tensor([[1]]), top1_changed) == expected


def test_a_campaign_resumes_and_extends_to_the_uninterrupted_result(tmp_path):
    options = ModelCampaignOptions(replace(CONFIG, abft="rowcol"), model="vit", images=6,
                                   seed=2, engine="twin")
    reference = run_model_campaign(options, 300, tmp_path / "reference.db")
    run_model_campaign(options, 120, tmp_path / "resumed.db")
    resumed = run_model_campaign(options, 300, tmp_path / "resumed.db")
    for key in ("outcomes", "per_module", "per_class", "per_pe", "operation_level_cross_check",
                "model_sdc_rate", "prediction"):
        assert resumed[key] == reference[key]
    assert reference["injections"] == 300
    assert reference["outcomes"]["corrected"] > 0


def test_a_vit_ti_shaped_model_is_runnable():
    """K = 192 and 768 (DeiT-Ti's qkv and fc2) run as passes of k_max."""
    from sw.models.quantize import quantize
    from sw.models.vit import deit_tiny_patch16_224
    torch.manual_seed(0)
    model = deit_tiny_patch16_224(num_classes=10, depth=1).eval()
    quantized = quantize(model, torch.rand(2, 3, 224, 224))
    gemms = record_gemms(quantized, torch.rand(3, 224, 224))
    depths = {gemm.module: gemm.a.shape[1] for gemm in gemms}
    assert depths["qkv"] == 192 and depths["fc2"] == 768
    passes = tile_passes(gemms, AcceleratorConfig(k_max=256))
    fc2 = [p for p in passes if gemms[p.gemm].module == "fc2"]
    assert {p.k for p in fc2} == {256} and len({p.k0 for p in fc2}) == 3


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True,
                          text=True)


def test_the_command_prints_json_and_refuses_bad_options(tmp_path):
    db = tmp_path / "m.db"
    result = run_cli("vit", "campaign", "--model", "cnn", "--engine", "twin", "--injections",
                     "40", "--images", "3", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["injections"] == 40 and sum(summary["outcomes"].values()) == 40
    assert set(summary["per_module"]) <= {"conv1", "conv2", "fc"}
    for key in ("per_class", "clean_accuracy", "model_sdc_rate", "prediction_mismatches",
                "injections_per_second"):
        assert key in summary
    assert {check["operation_level_sdc"] for check in
            summary["operation_level_cross_check"].values()} == {None}
    table = run_cli("vit", "campaign", "--model", "cnn", "--engine", "twin", "--injections",
                    "40", "--images", "3", "--db", str(db), "--operation-level")
    assert table.returncode == 0, table.stderr
    assert "operation-level SDC [95%]" in table.stdout
    assert "operation-level model: not run" in run_cli(
        "vit", "campaign", "--model", "cnn", "--engine", "twin", "--injections", "40",
        "--images", "3", "--db", str(db)).stdout
    bad = run_cli("vit", "campaign", "--model", "cnn", "--engine", "twin", "--modules", "qkv",
                  "--db", str(tmp_path / "bad.db"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "softerror: error: --modules: modules must be among conv1, conv2, fc, not 'qkv'")
    assert not (tmp_path / "bad.db").exists()


def test_report_puts_model_campaigns_side_by_side(tmp_path):
    db = tmp_path / "both.db"
    for model in ("vit", "cnn"):
        options = ModelCampaignOptions(replace(CONFIG, abft="col"), model=model, images=3,
                                       seed=1, engine="twin")
        summary = run_model_campaign(options, 60, db)
        assert summary["injections"] == 60
    result = run_cli("report", "--db", str(db))
    assert result.returncode == 0, result.stderr
    comparison = result.stdout.split("model SDC rate per module [95%]")[1]
    header = comparison.strip().splitlines()[0]
    assert "vit col (twin)" in header and "cnn col (twin)" in header
    upsets = [line for line in comparison.splitlines() if line.startswith("upsets")]
    assert len(upsets) == 1 and upsets[0].split()[1:] == ["60", "60"]
