"""The integer-only ViT (``QuantizedViT(..., nonlinear="int")``): the float path unchanged,
the nonlinear sites bit-exact with the integer units' twin, the accuracy kept, faults and
range protection on the units' registers."""

import pytest
import torch
from torch.nn import functional

from sw.analysis.vulnerability import evaluate, quantized_model
from sw.datapath import INTEGER_NONLINEAR_STAGES, NONLINEAR_STAGES, Datapath, Recorder, Site
from sw.inject.operation import FaultInjector
from sw.models.datasets import load_dataset
from sw.models.quantization import quantize_activation
from sw.models.quantize import calibrate, quantize
from sw.models.quantized_vit import QuantizedViT
from sw.models.vit import vit_tiny_patch16_224
from sw.protect.range_protection import RangeProtection, profile_bounds
from sw.twin.nonlinear import (check_gelu, check_layernorm, check_softmax, gelu, layernorm,
                               softmax)
from sw.twin.nonlinear.arithmetic import fit

UNITS = {"softmax": (softmax, check_softmax), "gelu": (gelu, check_gelu),
         "layernorm": (layernorm, check_layernorm)}

#: Logits of the first three digits test images before the integer path existed (float
#: nonlinear, the default), printed to 4 decimals. The GEMMs are exact integers, but the
#: float stages may round differently on another CPU, hence the tolerance.
DEFAULT_LOGITS = [
    [-0.3214, -1.0272, -0.3685, -0.6135, -0.4976, -0.7651, -0.6505, 4.2801, -0.8056, 0.6843],
    [-0.8589, -0.4090, -0.5046, -0.4626, -0.8444, -0.5929, 4.3812, -0.0626, 0.3433, -0.3986],
    [-0.5279, -0.5886, -0.1542, 4.4748, -0.0583, -0.4333, -0.2404, -0.0759, -1.2047, -0.7633],
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def integer_vit():
    return quantized_model("vit", "digits", None, "int")[1]


class OperandLog(Recorder):
    """A :class:`Recorder` that also keeps every GEMM's A operand, under ``"a"``."""

    def gemm(self, site, a, b):
        self.values[(site.name, "a")] = a
        return super().gemm(site, a, b)


class BitFlip(Datapath):
    """Flips one bit of one value of one stage of one site."""

    def __init__(self, name, stage, index, bit):
        self.name, self.stage, self.index, self.bit = name, stage, index, bit

    def nonlinear(self, site, stage, values):
        if (site.name, stage) != (self.name, self.stage):
            return values
        values = values.clone()
        values[self.index] ^= 1 << self.bit
        return values


def test_the_default_path_is_the_float_one_and_unchanged():
    network, quantized = quantized_model("vit", "digits")
    images = load_dataset("digits").test_images[:3]
    explicit = QuantizedViT(network, calibrate(network, load_dataset("digits")
                                               .train_images[:512]), nonlinear="float")
    logits = quantized(images)
    assert quantized.nonlinear == "float" and quantized.units == {}
    assert torch.equal(logits, explicit(images))
    assert torch.allclose(logits, torch.tensor(DEFAULT_LOGITS), atol=2e-3)
    recorder = Recorder()
    quantized(images, recorder)
    for site in quantized.sites:
        if site.operation == "nonlinear":
            assert not site.integer
            assert all((site.name, stage) in recorder.values
                       for stage in NONLINEAR_STAGES[site.kind])


def test_nonlinear_sites_are_exactly_the_integer_units(integer_vit):
    images = load_dataset("digits").test_images[:16]
    log = OperandLog()
    integer_vit(images, log)
    values = log.values
    nonlinear = [site for site in integer_vit.sites if site.operation == "nonlinear"]
    assert len(nonlinear) == 9 and all(site.integer for site in nonlinear)
    for site in nonlinear:
        unit, check = UNITS[site.kind]
        params = integer_vit.units[site.name]
        stages = INTEGER_NONLINEAR_STAGES[site.kind]
        assert [stage for stage, _, _ in site.registers] == list(stages)
        trace = unit(values[(site.name, "input")], params)
        for stage in stages:
            assert torch.equal(values[(site.name, stage)], getattr(trace, stage)
                               .to(torch.int64)), (site.name, stage)
        assert not check(trace, params).alarm.any(), site.name
    for index in range(2):
        prefix = f"blocks.{index}"
        # Softmax: the int32 scores in, probabilities of scale 1/127 straight to the context.
        assert torch.equal(values[(f"{prefix}.attn.softmax", "input")],
                           values[(f"{prefix}.attn.scores", "output")].to(torch.int64))
        for unit, gemm in (("norm1", "attn.qkv"), ("attn.softmax", "attn.context"),
                           ("norm2", "mlp.fc1"), ("mlp.act", "mlp.fc2")):
            assert torch.equal(values[(f"{prefix}.{gemm}", "a")],
                               values[(f"{prefix}.{unit}", "output")].to(torch.int8))
        # GELU: the fc1 output requantized per tensor with its calibrated scale.
        block, units = integer_vit.blocks[index], integer_vit.integer_blocks[index]
        fc1 = values[(f"{prefix}.mlp.fc1", "output")].float() \
            * (block.fc1.input_scale * block.fc1.weight_scale) + block.fc1.bias
        assert torch.equal(values[(f"{prefix}.mlp.act", "input")],
                           quantize_activation(fc1, units.gelu_scale).to(torch.int64))
        assert units.fc2.input_scale == units.gelu_scale
    assert torch.equal(values[("head", "a")], values[("norm", "output")][:, :1].to(torch.int8))


@pytest.mark.parametrize("dataset", ["digits", "mnist5k"])
def test_integer_only_accuracy_is_within_one_point_of_int8(dataset):
    report = evaluate("vit", dataset, nonlinear="int")
    assert report["nonlinear"] == "int"
    assert abs(report["int_nonlinear_accuracy"] - report["int8_accuracy"]) <= 0.01
    assert report["int_nonlinear_accuracy"] >= {"digits": 0.97, "mnist5k": 0.91}[dataset]


def test_bit_flips_in_the_registers_change_the_output_at_the_register_widths(integer_vit):
    images = load_dataset("digits").test_images[:32]
    clean = integer_vit(images)
    injector = FaultInjector(1e-3, seed=3, kind="layernorm", targets=["nonlinear"])
    recorder = Recorder(injector)
    faulty = integer_vit(images, recorder)
    assert not torch.equal(faulty, clean)
    assert injector.total_flips() > 0
    assert {stage for _, stage, _ in injector.flips} == set(INTEGER_NONLINEAR_STAGES["layernorm"])
    # The largest region is the widest register: the affine result, 33 bits of each of the
    # 17 x 64 values per image.
    site = integer_vit.site("norm")
    assert site.register("affine") == (33, True)
    assert injector.largest_region == 17 * 64 * 33
    for (name, stage), values in recorder.values.items():
        site = integer_vit.site(name)
        if site.integer:
            assert torch.equal(fit(values, *site.register(stage)), values), (name, stage)


def test_range_protection_catches_a_high_bit_flip_of_a_register(integer_vit):
    split = load_dataset("digits")
    images = split.test_images[:8]
    bounds = profile_bounds(integer_vit, split.train_images[:512])
    low, high = bounds[("norm", "mean")]
    assert isinstance(low, int) and isinstance(high, int)
    clean = integer_vit(images)
    flip = BitFlip("norm", "mean", (0, 0, 0), 14)
    unprotected = (integer_vit(images, flip) - clean).abs().max()
    protection = RangeProtection(bounds, flip)
    protected = (integer_vit(images, protection) - clean).abs().max()
    assert protection.stats["layernorm"].clamped == 1
    assert protected < unprotected / 10
    limits = protection.limits(integer_vit.site("norm"), "mean")
    assert all(isinstance(limit, int) for limit in limits)
    assert limits[0] <= low <= high <= limits[1]
    clean_protection = RangeProtection(bounds)
    assert torch.equal(integer_vit(images, clean_protection), clean)
    assert clean_protection.total().clamped == 0


def test_options_and_calibration_are_checked():
    network, _ = quantized_model("vit", "digits")
    max_abs = calibrate(network, load_dataset("digits").train_images[:64])
    with pytest.raises(TypeError) as raised:
        QuantizedViT(network, max_abs, nonlinear="fixed")
    assert str(raised.value) == "nonlinear must be one of 'float', 'int', not 'fixed'"
    del max_abs["blocks.1.mlp.act"]
    QuantizedViT(network, max_abs)                 # the float ViT does not need it
    with pytest.raises(ValueError) as raised:
        QuantizedViT(network, max_abs, nonlinear="int")
    assert str(raised.value) == (
        "max_abs has no 'blocks.1.mlp.act': the integer nonlinear units need the LayerNorm "
        "and GELU inputs that sw.models.quantize.calibrate records")
    cnn, _ = quantized_model("cnn", "digits")
    with pytest.raises(ValueError) as raised:
        quantize(cnn, load_dataset("digits").train_images[:8], nonlinear="int")
    assert str(raised.value) == ("nonlinear 'int' needs a VisionTransformer: a SmallCNN has "
                                 "no softmax, GELU or LayerNorm")
    site = Site("s", "gelu", 0, "nonlinear", None)
    with pytest.raises(ValueError) as raised:
        site.register("output")
    assert str(raised.value) == "site 's' has no integer register 'output'"


def test_vit_tiny_patch16_224_runs_on_the_integer_units_with_random_weights():
    # 197-token softmax rows, 192-wide LayerNorms, 768-wide GELU rows. With random weights
    # the attention is nearly uniform (probabilities near 1/197, a code or less of 1/127),
    # so the integer-only logits follow float less closely than the int8 ones (0.96 here).
    torch.manual_seed(0)
    model = vit_tiny_patch16_224().eval()
    images = torch.rand(2, 3, 224, 224)
    quantized = quantize(model, images, nonlinear="int")
    assert quantized.units["blocks.11.attn.softmax"].length == 197
    with torch.no_grad():
        expected = model(images)
    logits = quantized(images)
    assert logits.shape == (2, 1000)
    assert functional.cosine_similarity(logits, expected, dim=1).min() > 0.9
