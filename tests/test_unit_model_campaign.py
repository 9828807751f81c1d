"""Model campaigns on the nonlinear units: the ViT's own rows on the RTL units, spliced
back into the integer ViT."""

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest
import torch

from hw.config import AcceleratorConfig
from sim.campaign.worker import close_sessions
from sim.cosim.campaign import run_model_campaign
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions
from sim.cosim.splice import CleanPrefix, RowSplice, SpliceDatapath
from sim.cosim.unit_engine import UnitModelCampaign, record_unit_calls, row_slots
from sim.nonlinear_campaign import GoldenMismatch
from sw.datapath import Recorder

UNITS = ("softmax", "gelu", "layernorm")
# The ViT's longest rows are its GELU rows (128): the units must be at least that long.
DESIGN = AcceleratorConfig(rows=2, cols=2, k_max=8, nonlinear=UNITS, nonlinear_length=128)


@pytest.fixture(scope="module")
def campaign():
    return UnitModelCampaign.prepare(ModelCampaignOptions(DESIGN, images=3, seed=5,
                                                          classes=UNITS))


def test_the_workload_is_every_row_the_vit_feeds_its_units(campaign):
    calls = campaign.calls(int(campaign.chosen[0]))
    # digits ViT: 2 blocks of 4 heads over 17 tokens, 64 channels, 128 hidden.
    kinds = Counter(slot.unit for slot in campaign.passes)
    assert kinds == {"softmax": 2 * 4 * 17, "gelu": 2 * 17, "layernorm": 5 * 17}
    assert {(slot.unit, slot.n) for slot in campaign.passes} == {
        ("softmax", 17), ("gelu", 128), ("layernorm", 64)}
    assert row_slots(calls, 128, ("gelu",)) == [s for s in campaign.passes if s.unit == "gelu"]
    # Each unit's draw weight is its rows' cycles times its bits.
    assert campaign.bit_cycles == sum(slot.cycles * campaign.unit_bits[slot.unit]
                                      for slot in campaign.passes)


def test_a_row_splice_replaces_that_row_of_that_element_only(campaign):
    image = campaign.images[int(campaign.chosen[0])]
    # Head 2's attention of the class token in the last block: the head reads that token.
    site = "blocks.1.attn.softmax"
    clean = record_unit_calls(campaign.quantized, image)[site]["output"]
    codes = clean[2, 0].clone()
    codes[5] += 30
    recorder = Recorder(SpliceDatapath([None, RowSplice(site, (2, 0), codes)]))
    logits = campaign.quantized(torch.stack([image, image]), recorder)
    output = recorder.values[(site, "output")]
    assert torch.equal(output[0], clean)
    changed = (output[1] != clean).nonzero().tolist()
    assert changed == [[2, 0, 5]] and int(output[1, 2, 0, 5]) == int(clean[2, 0, 5]) + 30
    assert not torch.equal(logits[0], logits[1])
    # From the clean pass (no multiply before the splice): the same logits.
    gemms = Recorder()
    campaign.quantized(image[None], gemms)
    outputs = {site.name: gemms.values[(site.name, "output")][0]
               for site in campaign.quantized.sites if site.operation == "gemm"}
    order = {site.name: place for place, site in enumerate(campaign.quantized.sites)}
    resumed = campaign.quantized(torch.stack([image, image]), SpliceDatapath(
        [None, RowSplice(site, (2, 0), codes)], CleanPrefix(order, [outputs, outputs])))
    assert torch.equal(resumed, logits)
    # Splicing the clean row back changes nothing, bit for bit.
    same = campaign.quantized(image[None], SpliceDatapath([RowSplice(site, (2, 0),
                                                                      clean[2, 0])]))
    assert torch.equal(same[0], logits[0])


def test_the_operation_level_model_flips_one_bit_of_one_code(campaign):
    for experiment in range(20):
        upset = campaign.draw(experiment)
        splice = campaign.operation_level_splice(upset)
        slot = campaign.passes[upset.pass_index]
        clean = campaign.calls(upset.image)[slot.site]["output"][splice.index][splice.element]
        assert splice.site == slot.site
        assert bin((int(splice.codes) ^ int(clean)) & 0xFF).count("1") == 1


def test_draws_are_pure_and_stay_in_each_rows_window(campaign):
    again = UnitModelCampaign.prepare(campaign.options)
    upsets = [campaign.draw(number) for number in range(300)]
    assert upsets == [again.draw(number) for number in range(300)]
    for upset in upsets:
        slot = campaign.passes[upset.pass_index]
        assert upset.fault_class == slot.unit and upset.site.startswith(slot.unit + ".")
        assert 1 <= upset.cycle <= slot.cycles
    assert {upset.fault_class for upset in upsets} == set(UNITS)


def test_upsets_in_the_units_reach_the_vit_and_the_twin_agrees_where_it_models(campaign):
    """Every struck row's golden run equals the ViT's codes (else GoldenMismatch); the
    softmax stage registers the twin models agree with the RTL upset by upset."""
    softmax = UnitModelCampaign.prepare(replace(campaign.options, classes=("softmax",)))
    try:
        records = campaign.run(range(120))
        softmax_records = softmax.run(range(80))
    finally:
        close_sessions()
    assert [r.experiment for r in records] == list(range(120))
    outcomes = Counter(r.outcome for r in records)
    assert outcomes["masked"] > 0 and outcomes["recomputed"] + outcomes["tolerated"] > 0
    assert {r.module for r in records} == set(UNITS)
    predicted = Counter(r.predicted for r in records + softmax_records)
    assert predicted["mismatch"] == 0 and predicted["equal"] > 0
    for record in records:
        assert record.module == record.fault_class
        assert record.tile_equal == (record.outcome in ("masked", "false_alarm"))
        if record.action == "recompute" or record.tile_equal:
            assert record.top1 == record.clean_top1 and record.margin_change == 0.0


def test_a_row_the_vit_gets_wrong_stops_the_campaign(campaign, monkeypatch):
    """A struck row's clean run comes only when no upset run already shows the ViT's codes
    at the latency; an off-by-one code still stops the campaign."""
    right = campaign.row

    def off_by_one(upset):
        slot, params, values, clean = right(upset)
        wrong = clean.clone()
        wrong[0] += 1 if wrong[0] < 127 else -1
        return slot, params, values, wrong

    monkeypatch.setattr(campaign, "row", off_by_one)
    try:
        with pytest.raises(GoldenMismatch, match="the unit without an upset gave"):
            campaign.run(range(3))
    finally:
        close_sessions()


def test_a_campaign_on_the_units_resumes_to_the_uninterrupted_result(tmp_path):
    options = ModelCampaignOptions(replace(DESIGN, nonlinear_checkers=True), images=3,
                                   seed=8, classes=("gelu", "layernorm"))
    try:
        run_model_campaign(options, 25, tmp_path / "a.db")
        resumed = run_model_campaign(options, 50, tmp_path / "a.db")
        straight = run_model_campaign(options, 50, tmp_path / "b.db")
    finally:
        close_sessions()
    for key in ("outcomes", "per_module", "per_class", "prediction"):
        assert resumed[key] == straight[key]
    assert resumed["injections"] == 50
    assert set(resumed["per_module"]) == {"gelu", "layernorm"}
    units = resumed["description"]["units"]
    assert units["gelu"]["rows"] == 2 * 17
    for unit in ("gelu", "layernorm"):
        assert resumed["exposure"][unit]["bit_cycles"] == (units[unit]["bits"]
                                                           * units[unit]["cycles"])
        loss = resumed["margin_loss"][unit]
        assert 0.0 <= loss["mean"] and loss["low"] <= loss["mean"] <= loss["high"]


def test_a_gemm_campaign_on_a_design_with_units_runs_the_integer_vit():
    options = ModelCampaignOptions(DESIGN, images=2, seed=3)
    campaign = ModelCampaign.prepare(options)
    assert campaign.quantized.nonlinear == "int"
    assert {site.fault_class for site in campaign.sites}.isdisjoint(UNITS)
    description = campaign.description()
    assert sum(description["module_cycles"].values()) == description["inference_cycles"]
    assert set(description["module_cycles"]) == {gemm.module for gemm in
                                                 campaign.gemms(int(campaign.chosen[0]))}
    plain = ModelCampaign.prepare(replace(options, config=AcceleratorConfig(2, 2, 8)))
    assert plain.quantized.nonlinear == "float"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", "vit", "campaign", *args],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("args, message", [
    (["--nonlinear", "softmax", "--sites", "softmax,operand"],
     "--sites: the units' classes (softmax, gelu, layernorm) are struck by "
     "themselves, not with 'operand'"),
    (["--nonlinear", "softmax", "--sites", "gelu"],
     "--sites: the design has no gelu unit (add it with --nonlinear)"),
    (["--nonlinear", "softmax", "--nonlinear-length", "64", "--sites", "softmax"],
     "--nonlinear-length: unit_length 64 is shorter than the gelu rows "
     "of this ViT (128 elements)"),
    (["--nonlinear", "softmax", "--sites", "softmax", "--engine", "twin"],
     "--sites: the twin engine models GEMM upsets only: use --engine rtl for the units"),
    (["--nonlinear", "softmax", "--sites", "softmax", "--modules", "qkv"],
     "--modules: the units' rows are chosen with --sites"),
])
def test_bad_unit_campaign_options_are_named_before_any_work(tmp_path, args, message):
    result = run_cli("--model", "vit", "--rows", "2", "--cols", "2", "--k-max", "8",
                     "--nonlinear-length", "128", "--injections", "5", "--db",
                     str(tmp_path / "c.db"), *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"softerror: error: {message}"
    assert not (tmp_path / "c.db").exists()


def test_the_cnn_has_no_units_to_strike(tmp_path):
    result = run_cli("--model", "cnn", "--rows", "2", "--cols", "2", "--k-max", "8",
                     "--nonlinear", "gelu", "--nonlinear-length", "128", "--sites", "gelu",
                     "--db", str(tmp_path / "c.db"), "--json")
    assert result.returncode == 2
    assert "the cnn runs no softmax, GELU or LayerNorm" in result.stderr
    assert json.loads(result.stdout or "null") is None
