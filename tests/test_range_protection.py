"""Range protection: silent on clean data, clamps and counts out-of-range values (NaN and Inf
included), recomputes broken softmax rows, and counts its comparisons."""

import math

import pytest
import torch

from sw.analysis.vulnerability import quantized_model
from sw.datapath import Datapath, Recorder, Site
from sw.models.datasets import load_dataset
from sw.protect.range_protection import RangeProtection, profile_bounds

GELU = Site("g", "gelu", 0, "nonlinear", None)


@pytest.fixture(scope="module")
def split():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def vit_bounds(split):
    return profile_bounds(quantized_model("vit", "digits")[1], split.train_images)


@pytest.mark.parametrize("model", ["vit", "cnn"])
def test_clean_test_set_is_never_clamped(model, split):
    quantized = quantized_model(model, "digits")[1]
    bounds = profile_bounds(quantized, split.train_images)
    protection = RangeProtection(bounds, gemm_outputs=True)
    assert torch.equal(quantized(split.test_images, protection), quantized(split.test_images))
    total = protection.total()
    assert total.values_checked > 10 ** 6
    assert (total.clamped, total.nonfinite, total.recomputed_rows) == (0, 0, 0)


@pytest.mark.parametrize("policy, expected", [
    ("clamp", [-1.0, 0.5, 2.0, 0.0, 2.0, -1.0, 2.0]),
    ("zero", [0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 2.0]),
])
def test_out_of_range_values_are_replaced_and_counted(policy, expected):
    protection = RangeProtection({("g", "input"): (-1.0, 2.0)}, margin=0.0, policy=policy)
    values = torch.tensor([-5.0, 0.5, 3.0, math.nan, math.inf, -math.inf, 2.0])
    assert protection.nonlinear(GELU, "input", values).tolist() == expected
    stats = protection.stats["gelu"]
    assert (stats.values_checked, stats.clamped, stats.nonfinite) == (7, 5, 3)
    assert stats.check_ops == 14
    # Unprofiled stages pass untouched and uncounted.
    assert protection.nonlinear(GELU, "output", values[:2]).tolist() == [-5.0, 0.5]
    assert stats.values_checked == 7


def test_margin_widens_and_natural_limits_cap_the_bounds():
    site = Site("s", "softmax", 0, "nonlinear", None)
    protection = RangeProtection({("s", "exp"): (0.0, 1.0), ("s", "input"): (-4.0, 6.0),
                                  ("s", "sum"): (1.0, 9.0)}, margin=0.1)
    assert protection.limits(site, "input") == (-5.0, 7.0)
    assert protection.limits(site, "exp") == (0.0, 1.0)
    assert protection.limits(site, "sum") == pytest.approx((1.0, 9.8))
    lean = RangeProtection({("s", "exp"): (0.0, 1.0)}, stages="lean")
    assert lean.limits(site, "exp") is None


class SoftmaxFault(Datapath):
    """Multiplies one value of one stage of one softmax site by ``factor``."""

    def __init__(self, site, stage, index, factor):
        self.site, self.stage, self.index, self.factor = site, stage, index, factor

    def nonlinear(self, site, stage, values):
        if site.name == self.site and stage == self.stage:
            values = values.clone()
            values[self.index] *= self.factor
        return values


@pytest.mark.parametrize("stage, index, factor", [
    ("sum", (3, 1, 5, 0), 0.5),            # the row's sum halved: quotients sum to 2
    ("exp", (3, 1, 5, 0), 1.5),            # an exponential made 1.5: out of range
    ("quotient", (0, 2, 16, 7), 40.0),     # a probability far above its row's share
])
def test_softmax_rows_are_recomputed_to_the_clean_row(split, vit_bounds, stage, index, factor):
    quantized = quantized_model("vit", "digits")[1]
    images = split.test_images[:8]
    key = ("blocks.1.attn.softmax", "quotient")
    clean = Recorder()
    quantized(images, clean)
    if stage == "exp":   # lift the row's smallest exponential above 1 (out of range)
        index = index[:3] + (int(clean.values[key][index[:3]].argmin()),)
        factor = factor / float(clean.values[("blocks.1.attn.softmax", "exp")][index])
    fault = SoftmaxFault("blocks.1.attn.softmax", stage, index, factor)
    unprotected = Recorder(fault)
    quantized(images, unprotected)
    assert not torch.equal(unprotected.values[key][index[:3]], clean.values[key][index[:3]])
    protected = Recorder(RangeProtection(vit_bounds, fault))
    logits = quantized(images, protected)
    assert torch.equal(protected.values[key], clean.values[key])
    assert torch.equal(logits, quantized(images))
    assert protected.inner.total().recomputed_rows == 1


def test_softmax_clamp_mode_leaves_an_inconsistent_row(split, vit_bounds):
    quantized = quantized_model("vit", "digits")[1]
    fault = SoftmaxFault("blocks.1.attn.softmax", "sum", (3, 1, 5, 0), 0.5)
    protected = Recorder(RangeProtection(vit_bounds, fault, softmax="clamp"))
    quantized(split.test_images[:8], protected)
    row = protected.values[("blocks.1.attn.softmax", "quotient")][3, 1, 5]
    # Quotients doubled, the largest clamped to the profiled bound: the row sums above 1.
    assert row.sum().item() > 1.0 + 1e-3
    assert protected.inner.total().clamped > 0
    assert protected.inner.total().recomputed_rows == 0


def test_softmax_invariant_cost_is_counted_per_row():
    site = Site("s", "softmax", 0, "nonlinear", None)
    protection = RangeProtection({("s", "input"): (-9.0, 9.0)}, margin=0.0)
    scores = torch.randn(2, 3, 5, 5)
    exp = torch.exp(scores - scores.amax(-1, keepdim=True))
    total = exp.sum(-1, keepdim=True)
    for stage, values in (("input", scores), ("exp", exp), ("sum", total),
                          ("quotient", exp / total)):
        protection.nonlinear(site, stage, values)
    # 150 inputs x 2 comparisons; 30 rows x 5 for the maximum of the exponentials; 30 rows x
    # (5 + 2) for the row sums of the quotients; the unprofiled stages are not range-checked.
    assert protection.stats["softmax"].check_ops == 300 + 150 + 210
    assert protection.stats["softmax"].rows_checked == 30


@pytest.mark.parametrize("options, error, message", [
    ({"policy": "wrap"}, TypeError, "policy must be one of 'clamp', 'zero', not 'wrap'"),
    ({"softmax": "drop"}, TypeError,
     "softmax must be one of 'recompute', 'clamp', not 'drop'"),
    ({"margin": -0.5}, TypeError, "margin must be a non-negative number, not -0.5"),
    ({"tolerance": "1e-3"}, TypeError, "tolerance must be a non-negative number, not '1e-3'"),
    ({"stages": "most"}, TypeError,
     "stages must be one of 'full', 'lean' or (kind, stage) pairs, not 'most'"),
    ({"stages": [("gelu", "exp")]}, TypeError,
     "stages must hold (kind, stage) pairs of NONLINEAR_STAGES or INTEGER_NONLINEAR_STAGES, "
     "not ('gelu', 'exp')"),
    ({"bounds": [(0, 1)]}, TypeError, "bounds must be a dict from profile_bounds, not [(0, 1)]"),
])
def test_bad_options_are_named(options, error, message):
    options = {"bounds": {}, **options}
    with pytest.raises(error) as raised:
        RangeProtection(**options)
    assert str(raised.value) == message
