"""Single-neuron flips in a float model's Linear outputs: one bit of one element per image."""

import pytest
import torch
from torch import nn

from sw.inject.neuron import LinearOutputInjector


def linear_outputs(model, images, injector):
    """Every Linear layer's output, as the next layer sees it (after the flips)."""
    outputs = {}
    with injector:
        injector.arm(len(images))
        handles = [layer.register_forward_hook(
            lambda module, inputs, output, index=index: outputs.__setitem__(index,
                                                                              output.clone()))
            for index, layer in enumerate(injector.layers)]
        with torch.no_grad():
            model(images)
        for handle in handles:
            handle.remove()
    return outputs


def test_each_image_gets_exactly_one_flipped_bit_in_one_linear_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    images = torch.randn(300, 6)
    injector = LinearOutputInjector(model, images, seed=3)
    assert injector.layers == [model[0], model[2]]
    faulty = linear_outputs(model, images, injector)
    with torch.no_grad():
        first_clean = model[0](images)
        second_clean = model[2](model[1](faulty[0]))     # from the faulty first layer
    changed = []
    for clean, flipped in ((first_clean, faulty[0]), (second_clean, faulty[1])):
        xor = clean.view(torch.int32) ^ flipped.view(torch.int32)
        bits = xor[xor != 0].to(torch.int64) & 0xFFFFFFFF
        assert ((bits & (bits - 1)) == 0).all()                 # one bit per element
        changed.append(xor.ne(0).sum(1))
    assert torch.equal(changed[0] + changed[1], torch.ones(300, dtype=torch.int64))
    assert 100 < int(changed[0].sum()) < 200          # the layer is chosen uniformly


def test_the_seed_fixes_the_faults():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    images = torch.randn(50, 4)

    def run(seed):
        with torch.no_grad(), LinearOutputInjector(model, images, seed=seed) as injector:
            injector.arm(len(images))
            return model(images)
    assert torch.equal(run(5), run(5)) and not torch.equal(run(5), run(6))


def test_a_model_without_linear_layers_is_refused():
    with pytest.raises(TypeError, match="^model has no nn.Linear layer to inject into$"):
        LinearOutputInjector(nn.Sequential(nn.ReLU()), torch.zeros(1, 3))
