"""The token-sparse ViT injector against full faulty forward passes, fault by fault."""

import re

import pytest
import torch
from torch import nn

from sw.inject.neuron import LinearOutputInjector, NeuronFaults
from sw.inject.token_sparse import TokenSparseInjector
from sw.models.training import load_model
from sw.models.vit import VisionTransformer

BITS = (0, 22, 23, 29, 30, 31)      # mantissa, exponent (low, high, top) and sign


def random_vit(**config):
    torch.manual_seed(7)
    return VisionTransformer(**{**dict(img_size=8, patch_size=2, in_chans=1, num_classes=10,
                                       embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
                                **config}).eval()


MODELS = {
    "trained digits ViT": lambda: load_model("vit", "digits"),
    "depth 1": lambda: random_vit(depth=1),
    "depth 3, 3 heads, 5 tokens": lambda: random_vit(depth=3, num_heads=3, embed_dim=48,
                                                     patch_size=4),
}


def images_for(model):
    torch.manual_seed(3)
    return torch.randn(12, 1, 8, 8)


def enumerated_faults(engine):
    """Faults on every path: each layer; the class, second and last tokens; columns in
    the query, key and value parts of ``qkv``; mantissa, exponent and sign bits."""
    tokens = engine.model.num_tokens
    layer, element, bit = [], [], []
    for index, elements in enumerate(engine.output_elements.tolist()):
        width = elements // tokens if index < len(engine.layers) - 1 else elements
        rows = (0, 1, tokens - 1) if index < len(engine.layers) - 1 else (0,)
        columns = sorted({0, width // 3 + 1, 2 * width // 3 + 2, width - 1})
        for row in rows:
            for column in columns:
                for flipped in BITS:
                    layer.append(index)
                    element.append(row * width + column)
                    bit.append(flipped)
    mask = (torch.ones(len(bit), dtype=torch.int64) << torch.tensor(bit)).to(torch.int32)
    return NeuronFaults(torch.tensor(layer), torch.tensor(element), mask)


def full_faulty_logits(model, images, image, faults):
    """The same faults by hooks in a full forward pass of every faulty inference."""
    injector = LinearOutputInjector(model, images)
    with torch.no_grad(), injector:
        injector.arm_faults(faults)
        return model(images[image])


def assert_same_inferences(sparse, full):
    """Equal up to float rounding (MKL rounds a row by the height of its matrix), and the
    same top-1 class wherever the full pass's top two classes are not within rounding."""
    torch.testing.assert_close(sparse, full, rtol=1e-5, atol=1e-5, equal_nan=True)
    finite = torch.isfinite(full).all(1)
    top = full[finite].topk(2).values
    clear = top[:, 0] - top[:, 1] > 1e-4 * top[:, 0].abs().clamp(min=1)
    assert clear.float().mean() > 0.95
    assert torch.equal(sparse[finite][clear].argmax(1), full[finite][clear].argmax(1))


@pytest.mark.parametrize("name", list(MODELS))
def test_the_fault_free_pass_is_the_models_forward_bit_for_bit(name):
    model = MODELS[name]()
    images = images_for(model)
    with torch.no_grad():
        assert torch.equal(TokenSparseInjector(model, images).clean_logits, model(images))


@pytest.mark.parametrize("name", list(MODELS))
def test_every_fault_path_matches_a_full_faulty_forward_pass(name):
    model = MODELS[name]()
    images = images_for(model)
    engine = TokenSparseInjector(model, images)
    faults = enumerated_faults(engine)
    image = torch.arange(len(faults.layer)) % len(images)
    sparse = engine.run(image, faults)
    full = full_faulty_logits(model, images, image, faults)
    assert_same_inferences(sparse, full)
    assert not torch.equal(sparse, engine.clean_logits[image])


@pytest.mark.parametrize("name", list(MODELS))
def test_random_faults_match_a_full_faulty_forward_pass(name):
    model = MODELS[name]()
    images = images_for(model)
    engine = TokenSparseInjector(model, images)
    image = torch.arange(3000) % len(images)
    faults = engine.draw(torch.Generator().manual_seed(5), len(image))
    sparse = engine.run(image, faults)
    assert_same_inferences(sparse, full_faulty_logits(model, images, image, faults))
    changed = (sparse != engine.clean_logits[image]).any(1)
    assert 0.05 < changed.float().mean() < 0.95


def test_flips_in_the_last_block_outside_the_class_token_row_leave_the_output_alone():
    model = MODELS["trained digits ViT"]()
    images = images_for(model)
    engine = TokenSparseInjector(model, images)
    faults = enumerated_faults(engine)
    last = len(engine.layers) - 1 - 4
    dim = model.config["embed_dim"]
    width = torch.tensor([layer.out_features for layer in engine.layers])[faults.layer]
    tokens, column = faults.element // width, faults.element % width
    query = (faults.layer == last) & (column < dim)
    dead = (faults.layer > last) & (faults.layer < len(engine.layers) - 1) | query
    dead &= tokens != 0
    faults = NeuronFaults(*(field[dead] for field in faults))
    image = torch.arange(len(faults.layer)) % len(images)
    sparse = engine.run(image, faults)
    assert len(image) > 100
    assert torch.equal(sparse, engine.clean_logits[image])
    # The full pass runs a batch of another height than the cached one: equal up to rounding.
    assert_same_inferences(sparse, full_faulty_logits(model, images, image, faults))


def test_faults_are_numbered_and_drawn_as_the_hook_injector_does():
    model = random_vit()
    images = images_for(model)
    engine = TokenSparseInjector(model, images)
    hooks = LinearOutputInjector(model, images, seed=9)
    assert engine.layers == hooks.layers
    assert torch.equal(engine.output_elements, hooks.output_elements)
    drawn = engine.draw(torch.Generator().manual_seed(9), 500)
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(drawn, hooks.arm(500)))


def test_faults_beyond_one_chunk_give_the_same_logits_as_one_by_one():
    model = random_vit()
    images = images_for(model)
    engine = TokenSparseInjector(model, images)
    image = torch.arange(5000) % len(images)
    faults = engine.draw(torch.Generator().manual_seed(2), len(image))
    together = engine.run(image, faults)
    assert together.shape == (5000, 10)
    for start in (0, 2047, 2048, 4999):
        alone = engine.run(image[start:start + 1],
                           NeuronFaults(*(field[start:start + 1] for field in faults)))
        torch.testing.assert_close(alone, together[start:start + 1], rtol=1e-5, atol=1e-5,
                                   equal_nan=True)
    assert engine.run(image[:0], NeuronFaults(*(field[:0] for field in faults))).shape \
        == (0, 10)


def test_bad_arguments_are_refused_by_name():
    model = random_vit()
    images = images_for(model)
    with pytest.raises(TypeError, match="^model must be a sw.models.vit.VisionTransformer, not "
                                        "Sequential$"):
        TokenSparseInjector(nn.Sequential(nn.Linear(2, 2)), images)
    with pytest.raises(TypeError, match=re.escape("model must be in eval mode "
                                                   "(call model.eval())")):
        TokenSparseInjector(random_vit().train(), images)
    engine = TokenSparseInjector(model, images)
    faults = engine.draw(torch.Generator().manual_seed(0), 3)
    with pytest.raises(ValueError, match="^image index 12 is out of range for 12 cached "
                                         "images$"):
        engine.run(torch.tensor([0, 12, 1]), faults)
    with pytest.raises(TypeError, match="^image must be a 1-D int64 tensor of image "
                                         "indices, not 1-D torch.float32$"):
        engine.run(torch.zeros(3), faults)
    with pytest.raises(ValueError, match=re.escape("image and faults must have the same "
                                                   "length, not 2 and [3, 3, 3]")):
        engine.run(torch.tensor([0, 1]), faults)
