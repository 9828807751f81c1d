"""Protections composed around the fault injector, evaluated on the shipped models, and run
on a ViT-Tiny-shaped network."""

import pytest
import torch

from sw.analysis.protection import evaluate_protection, protection_goal, write_protection_plot
from sw.datapath import Datapath
from sw.inject.operation import FaultInjector
from sw.models.quantize import quantize
from sw.models.vit import vit_tiny_patch16_224
from sw.protect.block_abft import BlockABFT
from sw.protect.policy import PROTECTIONS, protect, protection_summary
from sw.protect.range_protection import RangeProtection, profile_bounds


def test_protect_builds_the_chain_around_the_injector():
    injector = FaultInjector(1e-6)
    assert protect("none", injector) is injector
    abft = protect("abft", injector)
    assert isinstance(abft, BlockABFT) and abft.inner is injector
    both = protect("abft+range", injector, bounds={})
    assert isinstance(both, RangeProtection) and isinstance(both.inner, BlockABFT)
    assert both.inner.inner is injector
    assert isinstance(protect("range", bounds={}).inner, Datapath)


@pytest.mark.parametrize("call, error, message", [
    (lambda: protect("ecc"), TypeError,
     "protection must be one of 'none', 'abft', 'range', 'abft+range', not 'ecc'"),
    (lambda: protect(3), TypeError, "protection must be a string, not 3"),
    (lambda: protect("range"), ValueError, "protection 'range' needs bounds from profile_bounds"),
    (lambda: protect("abft", abft_options=[1]), TypeError,
     "abft_options must be a dict of keyword options, not [1]"),
    (lambda: evaluate_protection("vit", protections=["abft", "tmr"]), TypeError,
     "protection must be one of 'none', 'abft', 'range', 'abft+range', not 'tmr'"),
    (lambda: evaluate_protection("vit", protections="abft"), TypeError,
     "protections must be a non-empty sequence of protection names, not 'abft'"),
    (lambda: evaluate_protection("vit", trials=0), TypeError,
     "trials must be a positive integer, not 0"),
])
def test_bad_options_are_named(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) == message


@pytest.fixture(scope="module")
def vit_result():
    return evaluate_protection("vit", bers=[1e-6], trials=1, seed=0)


def test_protections_hold_the_vit_at_a_ruinous_rate(vit_result, tmp_path):
    assert set(vit_result["fault_free"]) == set(PROTECTIONS)
    for protection, fault_free in vit_result["fault_free"].items():
        assert fault_free["agrees"] and fault_free["false_alarms"] == 0
        assert fault_free["clamped"] == 0
    results = {entry["protection"]: entry for entry in vit_result["results"]}
    clean = vit_result["clean_accuracy"]
    assert clean - results["none"]["accuracy"] > 0.1
    assert results["abft"]["accuracy"] >= clean - 0.01
    assert results["abft+range"]["accuracy"] >= clean - 0.01
    assert results["range"]["clamped"] > 0
    assert results["abft"]["detections"] > 1000 and results["abft"]["false_alarms"] == 0
    # Same seed for every protection: the same faults.
    assert len({entry["flips_per_inference"] for entry in results.values()}) == 1
    overhead = vit_result["overhead"]
    assert overhead["none"] == 0 and 0 < overhead["range"] < overhead["abft+range"] < 5.0
    assert overhead["abft+range"] == pytest.approx(overhead["abft"] + overhead["range"])
    assert vit_result["block_sizes"]["qkv"]["cols"] == 96
    goal = protection_goal(vit_result, drop=0.1)
    assert goal["ber"] == 1e-6 and goal["reached"]
    path = write_protection_plot([vit_result, vit_result], tmp_path / "protection.png")
    assert path.stat().st_size > 10_000


def test_protection_goal_reports_no_rate_when_none_is_ruinous(vit_result):
    goal = protection_goal(vit_result, drop=0.9)
    assert goal["ber"] is None and goal["reached"] is None
    with pytest.raises(ValueError, match="protection_goal needs the 'none' runs"):
        protection_goal({**vit_result, "protections": ["abft"]})


@torch.no_grad()
def test_vit_tiny_runs_under_every_protection():
    torch.manual_seed(0)
    images = torch.rand(1, 3, 224, 224)
    quantized = quantize(vit_tiny_patch16_224().eval(), images)
    bounds = profile_bounds(quantized, images)
    clean = quantized(images)
    for protection in PROTECTIONS:
        datapath = protect(protection, bounds=bounds)
        assert torch.equal(quantized(images, datapath), clean)
        if protection == "none":
            continue
        summary = protection_summary(datapath)
        assert summary["macs"] > 10 ** 9 and 0 < summary["overhead_percent"] < 10
        assert summary["detections"] == 0 and summary["clamped"] == 0
    datapath = protect("abft+range", FaultInjector(1e-9, seed=0), bounds=bounds)
    assert torch.isfinite(quantized(images, datapath)).all()
    assert protection_summary(datapath)["detections"] > 0
