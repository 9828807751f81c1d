"""Float models, data sets and training: timm layout, shipped checkpoints, determinism."""

import os

import pytest
import torch

from sw.models.cnn import SmallCNN, tiny_digits_cnn
from sw.models.datasets import DATASETS, load_dataset
from sw.models.training import accuracy, checkpoint_path, load_checkpoint, load_model, train
from sw.models.vit import (
    VisionTransformer,
    deit_tiny_patch16_224,
    tiny_digits_vit,
    vit_tiny_patch16_224,
)


def timm_vit_shapes(depth, dim, hidden, tokens, patch, chans, classes):
    """Parameter names and shapes of timm's VisionTransformer (as listed in its source)."""
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, tokens, dim),
              "patch_embed.proj.weight": (dim, chans, patch, patch),
              "patch_embed.proj.bias": (dim,), "norm.weight": (dim,), "norm.bias": (dim,),
              "head.weight": (classes, dim), "head.bias": (classes,)}
    for i in range(depth):
        for name, shape in (("norm1.weight", (dim,)), ("norm1.bias", (dim,)),
                            ("attn.qkv.weight", (3 * dim, dim)), ("attn.qkv.bias", (3 * dim,)),
                            ("attn.proj.weight", (dim, dim)), ("attn.proj.bias", (dim,)),
                            ("norm2.weight", (dim,)), ("norm2.bias", (dim,)),
                            ("mlp.fc1.weight", (hidden, dim)), ("mlp.fc1.bias", (hidden,)),
                            ("mlp.fc2.weight", (dim, hidden)), ("mlp.fc2.bias", (dim,))):
            shapes[f"blocks.{i}.{name}"] = shape
    return shapes


@pytest.mark.parametrize("factory", [vit_tiny_patch16_224, deit_tiny_patch16_224])
def test_vit_tiny_has_timm_parameter_names_and_shapes(factory):
    model = factory()
    found = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    assert found == timm_vit_shapes(12, 192, 768, 197, 16, 3, 1000)


def test_timm_state_dict_round_trips_strictly_through_a_file(tmp_path):
    torch.manual_seed(1)
    source = vit_tiny_patch16_224().eval()
    path = tmp_path / "deit_tiny.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    target = deit_tiny_patch16_224().eval()
    assert not torch.equal(source.head.weight, target.head.weight)
    target.load_state_dict(torch.load(path, weights_only=True), strict=True)
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        logits = target(images)
        assert logits.shape == (1, 1000)
        assert torch.equal(logits, source(images))


def test_float_attention_matches_torch_reference():
    torch.manual_seed(0)
    model = tiny_digits_vit().eval()
    attn = model.blocks[0].attn
    x = torch.randn(3, model.num_tokens, 64)
    q, k, v = attn.qkv(x).reshape(3, model.num_tokens, 3, 4, 16).permute(2, 0, 3, 1, 4)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    expected = attn.proj(expected.transpose(1, 2).reshape(3, model.num_tokens, 64))
    torch.testing.assert_close(attn(x), expected)


@pytest.mark.parametrize("options, error, message", [
    (dict(patch_size=0), TypeError, "patch_size must be a positive integer, not 0"),
    (dict(depth=2.5), TypeError, "depth must be a positive integer, not 2.5"),
    (dict(img_size=30), ValueError, "img_size 30 is not a multiple of patch_size 16"),
    (dict(embed_dim=100, num_heads=3), ValueError,
     "embed_dim 100 is not a multiple of num_heads 3"),
    (dict(mlp_ratio="4"), TypeError, "mlp_ratio must be a positive number, not '4'"),
    (dict(drop_rate=1.5), TypeError, "drop_rate must be a number in [0, 1), not 1.5"),
])
def test_vit_rejects_bad_options(options, error, message):
    with pytest.raises(error, match=f"^{__import__('re').escape(message)}$"):
        VisionTransformer(**options)


def test_cnn_shapes_and_bad_options():
    model = tiny_digits_cnn()
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    with pytest.raises(ValueError, match=r"^img_size 7 cannot be halved by every pool in"):
        SmallCNN(img_size=7, pools=(True, False))
    with pytest.raises(ValueError, match=r"^channels \(16,\) and pools \(False, True\) must"):
        SmallCNN(channels=(16,), pools=(False, True))
    with pytest.raises(TypeError, match=r"^patch_size must be a positive integer, not -2$"):
        SmallCNN(patch_size=-2)


def test_digits_split_is_stratified_80_20_and_scaled():
    split = load_dataset("digits")
    assert split.train_images.shape == (1437, 1, 8, 8)
    assert split.test_images.shape == (360, 1, 8, 8)
    assert split.train_images.dtype == torch.float32 and split.test_labels.dtype == torch.int64
    assert split.train_images.min() >= 0 and split.train_images.max() == 1
    train_counts = torch.bincount(split.train_labels, minlength=10)
    test_counts = torch.bincount(split.test_labels, minlength=10)
    assert ((test_counts.float() - 0.25 * train_counts.float()).abs() <= 1.5).all()
    assert load_dataset("digits") is load_dataset("digits")


def test_mnist5k_reads_the_packaged_file():
    split = load_dataset("mnist5k")
    assert split.train_images.shape == (4000, 1, 28, 28)
    assert split.test_images.shape == (1000, 1, 28, 28)
    assert torch.bincount(split.test_labels).tolist() == [100] * 10
    assert 0 <= split.test_images.min() and split.test_images.max() == 1


@pytest.mark.parametrize("name, error, message", [
    ("cifar", TypeError, "dataset must be one of 'digits', 'mnist5k', not 'cifar'"),
    (3, TypeError, "dataset must be a string, not 3"),
])
def test_load_dataset_rejects_unknown_names(name, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        load_dataset(name)
    assert DATASETS == ("digits", "mnist5k")


@pytest.mark.parametrize("model, minimum", [("vit", 0.97), ("cnn", 0.97)])
def test_shipped_digits_checkpoints_are_small_and_accurate(model, minimum):
    path = checkpoint_path(model, "digits")
    assert os.path.getsize(path) < 512 * 1024
    checkpoint = load_checkpoint(model, "digits")
    network = load_model(model, "digits")
    split = load_dataset("digits")
    measured = accuracy(network, split.test_images, split.test_labels)
    assert measured >= minimum
    # The accuracy recorded when it was trained; another CPU's float kernels may turn the
    # top-1 class of a near tie, so one image either way.
    assert abs(measured - checkpoint["test_accuracy"]) <= 1 / len(split.test_labels) + 1e-9


def test_missing_checkpoint_tells_how_to_train_it(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"run `softerror train --model cnn --dataset digits` to create it"):
        load_model("cnn", "digits", checkpoint_dir=str(tmp_path))


def test_training_is_deterministic_by_seed(tmp_path):
    first = train("cnn", "digits", seed=3, epochs=1, checkpoint_dir=str(tmp_path))
    again = train("cnn", "digits", seed=3, epochs=1, save=False)
    other = train("cnn", "digits", seed=4, epochs=1, save=False)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name])
    assert not torch.equal(first.model.fc.weight, other.model.fc.weight)
    reloaded = load_model("cnn", "digits", checkpoint_dir=str(tmp_path))
    assert torch.equal(reloaded.fc.weight, first.model.fc.weight)


@pytest.mark.parametrize("options, error, message", [
    (dict(model="mlp"), TypeError, "model must be one of 'vit', 'cnn', not 'mlp'"),
    (dict(seed="0"), TypeError, "seed must be an integer, not '0'"),
    (dict(epoch=3), TypeError, "unknown training option 'epoch'; expected one of"),
])
def test_train_rejects_bad_options(options, error, message):
    with pytest.raises(error, match=f"^{__import__('re').escape(message)}"):
        train(**{"model": "cnn", "dataset": "digits", "save": False, **options})
