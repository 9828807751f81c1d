"""int8 quantization: scales, exact im2col GEMMs on the accelerator model, accuracy kept."""

import pytest
import torch
from torch.nn import functional

from sw.analysis.vulnerability import evaluate, quantized_model
from sw.datapath import Datapath, Recorder
from sw.models.datasets import load_dataset
from sw.models.quantization import QMAX, quantize_activation, quantize_weight
from sw.models.quantize import calibrate, quantize
from sw.models.vit import vit_tiny_patch16_224
from sw.twin.gemm import gemm_int8


class GemmLog(Datapath):
    """Checks every GEMM it runs and remembers (site, operand shapes)."""

    def __init__(self):
        self.calls = []

    def gemm(self, site, a, b):
        assert a.dtype == torch.int8 and b.dtype == torch.int8
        result = super().gemm(site, a, b)
        assert result.dtype == torch.int32
        self.calls.append((site, tuple(a.shape), tuple(b.shape)))
        return result


def test_weights_get_one_symmetric_scale_per_output_channel():
    weight = torch.randn(6, 5) * torch.arange(1, 7)[:, None]
    codes, scale = quantize_weight(weight)
    assert codes.shape == (5, 6) and codes.dtype == torch.int8 and scale.shape == (6,)
    assert codes.abs().amax(dim=0).tolist() == [QMAX] * 6
    assert ((codes.t().float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-6).all()


def test_activation_quantizer_rounds_saturates_and_zeroes_nan():
    values = torch.tensor([0.26, -0.74, 1e9, -float("inf"), float("nan"), 0.5])
    assert quantize_activation(values, 0.5).tolist() == [1, -1, 127, -127, 0, 1]


@pytest.mark.parametrize("model", ["vit", "cnn"])
def test_int8_accuracy_is_within_one_point_of_float(model):
    result = evaluate(model, "digits")
    assert result["float_accuracy"] >= 0.97
    assert abs(result["int8_accuracy"] - result["float_accuracy"]) <= 0.01


def test_every_vit_gemm_runs_int8_on_the_accelerator_including_both_attention_matmuls():
    _, quantized = quantized_model("vit", "digits")
    log = GemmLog()
    quantized(load_dataset("digits").test_images[:3], log)
    kinds = [site.kind for site, _, _ in log.calls]
    assert kinds == ["patch_embed"] + ["qkv", "attn_scores", "attn_context", "proj", "fc1",
                                       "fc2"] * 2 + ["head"]
    shapes = {site.name: (a, b) for site, a, b in log.calls}
    assert shapes["blocks.0.attn.scores"] == ((3, 4, 17, 16), (3, 4, 16, 17))
    assert shapes["blocks.0.attn.context"] == ((3, 4, 17, 17), (3, 4, 17, 16))
    assert shapes["blocks.1.mlp.fc1"] == ((3, 17, 64), (64, 128))
    assert shapes["head"] == ((3, 1, 64), (64, 10))


@pytest.mark.parametrize("model, site, conv", [
    ("vit", "patch_embed.proj", lambda net: net.patch_embed.proj),
    ("cnn", "convs.0", lambda net: net.convs[0]),
])
def test_im2col_gemm_equals_the_integer_convolution(model, site, conv):
    network, quantized = quantized_model(model, "digits")
    images = load_dataset("digits").test_images[:4]
    recorder = Recorder()
    quantized(images, recorder)
    layer = quantized.patch_embed if model == "vit" else quantized.convs[0]
    module = conv(network)
    codes = quantize_activation(images, layer.input_scale).double()
    weight_codes = layer.weight.t().reshape(module.weight.shape).double()
    expected = functional.conv2d(codes, weight_codes, stride=module.stride,
                                 padding=module.padding)
    expected = expected.flatten(2).transpose(1, 2).to(torch.int32)
    assert torch.equal(recorder.values[(site, "output")], expected)


def test_calibration_covers_every_quantized_tensor():
    network, _ = quantized_model("vit", "digits")
    max_abs = calibrate(network, load_dataset("digits").train_images[:64])
    names = {"patch_embed.proj", "head", "norm"} | {
        f"blocks.{i}.{part}" for i in range(2)
        for part in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "attn.q", "attn.k",
                     "attn.v", "attn.probs", "norm1", "norm2", "mlp.act")}
    assert set(max_abs) == names
    assert all(value > 0 for value in max_abs.values())


def test_vit_tiny_patch16_224_quantizes_with_random_weights():
    torch.manual_seed(0)
    model = vit_tiny_patch16_224().eval()
    images = torch.rand(2, 3, 224, 224)
    quantized = quantize(model, images)
    log = GemmLog()
    with torch.no_grad():
        expected = model(images)
    logits = quantized(images, log)
    assert logits.shape == (2, 1000) and len(log.calls) == 1 + 6 * 12 + 1
    assert {site.name: a for site, a, _ in log.calls}["blocks.11.attn.scores"] == \
        (2, 3, 197, 64)
    assert functional.cosine_similarity(logits, expected, dim=1).min() > 0.98


def test_quantize_rejects_other_models():
    with pytest.raises(TypeError, match=r"^model must be a VisionTransformer or a SmallCNN, "
                                        r"not Linear$"):
        quantize(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_gemm_hook_result_is_the_accelerator_models():
    _, quantized = quantized_model("cnn", "digits")
    a = torch.randint(-127, 128, (2, 64, 9), dtype=torch.int8)
    b = torch.randint(-127, 128, (9, 16), dtype=torch.int8)
    assert torch.equal(Datapath().gemm(quantized.site("convs.0"), a, b), gemm_int8(a, b))
