"""Float ABFT on nn.Linear layers: no alarm on clean data, corruptions above the rounding
bound caught and repaired."""

import pytest
import torch

from sw.analysis.vulnerability import quantized_model
from sw.models.datasets import load_dataset
from sw.protect.float_abft import FloatABFT, LinearOutputFaults, rounding_gamma


@torch.no_grad()
def test_no_alarm_on_the_clean_test_set_and_output_unchanged():
    network = quantized_model("vit", "digits")[0]
    images = load_dataset("digits").test_images
    reference = network(images)
    with FloatABFT(network) as abft:
        assert torch.equal(network(images), reference)
    total = abft.total()
    assert total["blocks"] > 500 and total["detections"] == 0
    assert 0 < total["check_ops"] < 0.1 * total["macs"]


class AddToOutput:
    def __init__(self, layer, element, delta):
        self.layer, self.element, self.delta = layer, element, delta

    def __call__(self, name, output):
        if name != self.layer:
            return output
        output = output.clone()
        output.view(-1)[self.element] += self.delta
        return output


@torch.no_grad()
@pytest.mark.parametrize("delta", [0.05, -3.0, 1e6, float("nan"), float("inf")])
def test_corruption_above_the_bound_is_caught_and_repaired(delta):
    network = quantized_model("vit", "digits")[0]
    images = load_dataset("digits").test_images[:40]
    reference = network(images)
    fault = AddToOutput("blocks.1.mlp.fc1", 17 * 128 * 3 + 5 * 128 + 9, delta)
    with FloatABFT(network, fault=fault, block_rows=17) as abft:
        logits = network(images)
    assert abft.stats["blocks.1.mlp.fc1"]["detections"] == 1
    assert abft.total()["detections"] == 1
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_random_output_flips_leave_only_errors_below_the_bound():
    network = quantized_model("vit", "digits")[0]
    images = load_dataset("digits").test_images[:100]
    reference = network(images)
    faults = LinearOutputFaults(1e-5, seed=3)
    with FloatABFT(network, fault=faults) as abft:
        logits = network(images)
    assert faults.flips > 20 and abft.total()["detections"] > 5
    assert torch.isfinite(logits).all()
    assert (logits.argmax(-1) == reference.argmax(-1)).all()


def test_rounding_gamma_and_bad_options():
    assert rounding_gamma(10) == pytest.approx(10 * 2 ** -24, rel=1e-6)
    network = torch.nn.Linear(3, 2)
    for options, message in (({"block_rows": 0}, "block_rows must be a positive integer, not 0"),
                             ({"safety": 0.5}, "safety must be a number of at least 1, not 0.5"),
                             ({"fault": 3}, "fault must be callable, not 3")):
        with pytest.raises(TypeError) as raised:
            FloatABFT(network, **options)
        assert str(raised.value) == message
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, not 'vit'"):
        FloatABFT("vit")
