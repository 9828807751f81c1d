"""Vulnerability analysis: units per granularity, SDC statistics, seeding, plots and report."""

import re

import pytest

from sw.analysis.vulnerability import (
    analysis_units,
    analyze,
    quantized_model,
    wilson_interval,
    write_plots,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cnn_results():
    return [analyze("cnn", "digits", granularity, bers=[1e-6, 1e-5], trials=1, seed=0)
            for granularity in ("model", "layer", "module", "patch")]


@pytest.fixture(scope="module")
def vit_results():
    return [analyze("vit", "digits", granularity, bers=[1e-5], trials=1, seed=0)
            for granularity in ("layer", "module")]


def test_wilson_interval_matches_its_definition():
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(30, 100)
    mirrored = wilson_interval(70, 100)
    assert (low, high) == pytest.approx((1 - mirrored[1], 1 - mirrored[0]))
    assert low < 0.3 < high and wilson_interval(0, 0) == (0.0, 1.0)


def test_units_of_each_granularity():
    _, vit = quantized_model("vit", "digits")
    _, cnn = quantized_model("cnn", "digits")
    assert analysis_units(vit, "model") == [("model", {})]
    assert [unit for unit, _ in analysis_units(vit, "layer")] == [0, 1]
    assert [unit for unit, _ in analysis_units(vit, "module")] == [
        "patch_embed", "layernorm", "qkv", "attn_scores", "softmax", "attn_context", "proj",
        "fc1", "gelu", "fc2", "head"]
    assert [unit for unit, _ in analysis_units(vit, "patch")] == list(range(17))
    assert [unit for unit, _ in analysis_units(cnn, "module")] == [
        "conv1", "relu", "conv2", "pool", "fc"]
    assert [unit for unit, _ in analysis_units(cnn, "patch")] == list(range(1, 17))


def test_results_are_consistent_statistics(cnn_results):
    for result in cnn_results:
        assert result["clean_accuracy"] >= 0.97
        units = [unit for unit, _ in analysis_units(quantized_model("cnn", "digits")[1],
                                                    result["granularity"])]
        assert [entry["unit"] for entry in result["results"]] == \
            [unit for unit in units for _ in result["bers"]]
        for entry in result["results"]:
            assert entry["inferences"] == 360 and entry["trials"] == 1
            assert entry["sdc_rate"] == entry["sdc_count"] / 360
            assert entry["sdc_ci"][0] <= entry["sdc_rate"] <= entry["sdc_ci"][1]
            # Every SDC changes a prediction, so accuracy moves by at most the SDC rate.
            assert abs(entry["accuracy"] - result["clean_accuracy"]) <= entry["sdc_rate"] + 1e-12


def test_more_flips_more_corruption(cnn_results):
    [low, high] = cnn_results[0]["results"]
    assert high["flips_per_inference"] == pytest.approx(10 * low["flips_per_inference"],
                                                        rel=0.15)
    assert high["sdc_count"] > low["sdc_count"]


def test_no_flips_no_sdc():
    result = analyze("cnn", "digits", "layer", bers=[0.0], trials=1)
    assert all(entry["sdc_count"] == 0 and entry["flips_per_inference"] == 0
               for entry in result["results"])


def test_same_seed_same_result_other_seed_other_result(vit_results):
    again = analyze("vit", "digits", "layer", bers=[1e-5], trials=1, seed=0)
    other = analyze("vit", "digits", "layer", bers=[1e-5], trials=1, seed=1)
    assert again["results"] == vit_results[0]["results"]
    assert [e["sdc_count"] for e in other["results"]] != \
        [e["sdc_count"] for e in again["results"]]


def test_vit_module_results_cover_every_kind(vit_results):
    module = vit_results[1]
    assert module["granularity"] == "module" and module["inferences_per_second"] > 0
    assert {entry["unit"] for entry in module["results"]} >= {
        "qkv", "attn_scores", "attn_context", "proj", "fc1", "fc2", "softmax", "gelu",
        "layernorm"}


@pytest.mark.parametrize("options, error, message", [
    (dict(granularity="block"), TypeError,
     "granularity must be one of 'model', 'layer', 'module', 'patch', not 'block'"),
    (dict(bers=1e-6), TypeError,
     "bers must be a non-empty sequence of bit error rates, not 1e-06"),
    (dict(bers=[1e-6, 3]), TypeError, "each of bers must be a number between 0 and 1, not 3"),
    (dict(trials=0), TypeError, "trials must be a positive integer, not 0"),
    (dict(model="rnn"), TypeError, "model must be one of 'vit', 'cnn', not 'rnn'"),
    (dict(dataset="imagenet"), TypeError,
     "dataset must be one of 'digits', 'mnist5k', not 'imagenet'"),
])
def test_analyze_rejects_bad_options(options, error, message):
    options = {"model": "cnn", "dataset": "digits", "granularity": "model", **options}
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        analyze(**options)


def test_plots_and_report_are_written(tmp_path, vit_results, cnn_results):
    paths = write_plots(vit_results, cnn_results, str(tmp_path))
    assert sorted(p.split("/")[-1] for p in paths) == [
        "accuracy_vs_ber.png", "layer_vulnerability.png", "patch_heatmap.png"]
    for path in paths:
        with open(path, "rb") as stream:
            assert stream.read(8) == PNG_SIGNATURE
    report = write_report(str(tmp_path / "report"), vit_results, cnn_results,
                          [{"model": "vit", "dataset": "digits", "float_accuracy": 0.986,
                            "int8_accuracy": 0.986}])
    text = open(report).read()
    for name in ("accuracy_vs_ber.png", "layer_vulnerability.png", "patch_heatmap.png"):
        assert f"]({name})" in text and (tmp_path / "report" / name).exists()
    assert "| vit | digits | 98.6% | 98.6% |" in text
    assert "**CNN, module**" in text and "| conv2 |" in text
