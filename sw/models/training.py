"""Deterministic training of the float ViT and CNN, and their shipped checkpoints.

``train("vit", "digits")`` trains ``sw/models/checkpoints/vit_digits.pt`` again: the same seed,
the recipe in :data:`RECIPES`, one CPU thread (so that floating-point reductions happen in the
same order) and a seeded shuffle give the same weights on one machine. Another CPU's float
kernels (AVX2, AVX-512, ...) round differently, and its weights differ slightly, with the
same accuracy (``docs/vit-analysis.md``, "What reproduces where"). A
checkpoint holds the architecture config, the float32 state_dict, the recipe and the test
accuracy measured at the end of training.
"""

import contextlib
import os
import pickle
import time
from typing import NamedTuple

import torch
from torch.nn import functional

from sw.models.cnn import SmallCNN, tiny_digits_cnn, tiny_mnist_cnn
from sw.models.datasets import check_dataset_name, load_dataset
from sw.models.vit import VisionTransformer, tiny_digits_vit, tiny_mnist_vit
from sw.parameter_checks import check_integer

__all__ = ["MODELS", "RECIPES", "CHECKPOINT_DIR", "TrainingResult", "CheckpointError", "train",
           "build_model", "checkpoint_path", "load_checkpoint", "load_model", "accuracy",
           "check_model_name", "torch_threads"]

#: Names accepted for ``model``.
MODELS = ("vit", "cnn")
#: Where the shipped checkpoints live.
CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
#: Architecture of each (model, data set).
FACTORIES = {
    ("vit", "digits"): tiny_digits_vit, ("vit", "mnist5k"): tiny_mnist_vit,
    ("cnn", "digits"): tiny_digits_cnn, ("cnn", "mnist5k"): tiny_mnist_cnn,
}
#: Training recipe of each (model, data set): AdamW with a one-cycle schedule, label smoothing.
RECIPES = {
    ("vit", "digits"): dict(epochs=40, batch_size=64, learning_rate=3e-3, weight_decay=0.05,
                            label_smoothing=0.1, drop_rate=0.1, drop_path_rate=0.1),
    ("vit", "mnist5k"): dict(epochs=30, batch_size=64, learning_rate=3e-3, weight_decay=0.05,
                             label_smoothing=0.1, drop_rate=0.1, drop_path_rate=0.1),
    ("cnn", "digits"): dict(epochs=30, batch_size=64, learning_rate=3e-3, weight_decay=0.05,
                            label_smoothing=0.1),
    ("cnn", "mnist5k"): dict(epochs=15, batch_size=64, learning_rate=3e-3, weight_decay=0.05,
                             label_smoothing=0.1),
}
_REGULARISERS = ("drop_rate", "drop_path_rate")
#: What :func:`train` writes into a checkpoint and loading needs.
_CHECKPOINT_KEYS = {"model", "dataset", "config", "state_dict"}
#: What ``torch.load`` raises for a file that is not a checkpoint (garbage, truncated, a
#: folder, a pickle of other objects).
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError)


class CheckpointError(ValueError):
    """A checkpoint file that is not one :func:`train` wrote for the model and data set
    asked for (corrupt, another program's, or another model's)."""


class TrainingResult(NamedTuple):
    """A trained float model (in eval mode), its test accuracy, the time and the file."""
    model: torch.nn.Module
    test_accuracy: float
    seconds: float
    checkpoint: str | None


def check_model_name(model):
    """Raise ``TypeError`` naming the parameter unless ``model`` is known."""
    if not isinstance(model, str):
        raise TypeError(f"model must be a string, not {model!r}")
    if model not in MODELS:
        raise TypeError(f"model must be one of {', '.join(map(repr, MODELS))}, not {model!r}")


def build_model(model, dataset, **overrides):
    """A freshly initialised float network ``model`` sized for ``dataset``."""
    check_model_name(model)
    check_dataset_name(dataset)
    return FACTORIES[(model, dataset)](**overrides)


def checkpoint_path(model, dataset, checkpoint_dir=None):
    """``<checkpoint_dir>/<model>_<dataset>.pt`` (the shipped directory by default)."""
    check_model_name(model)
    check_dataset_name(dataset)
    return os.path.join(checkpoint_dir or CHECKPOINT_DIR, f"{model}_{dataset}.pt")


@torch.no_grad()
def accuracy(model, images, labels, batch_size=512):
    """Top-1 accuracy of a float model or of a quantized one (anything callable on images)."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size])
        correct += int((logits.argmax(-1) == labels[start:start + batch_size]).sum())
    return correct / len(images)


def _fit(network, split, recipe, seed):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(network.parameters(), lr=recipe["learning_rate"],
                                  weight_decay=recipe["weight_decay"])
    count, batch_size = len(split.train_labels), recipe["batch_size"]
    steps = recipe["epochs"] * -(-count // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["learning_rate"],
                                                   total_steps=steps, pct_start=0.1)
    network.train()
    for _ in range(recipe["epochs"]):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, batch_size):
            batch = order[start:start + batch_size]
            loss = functional.cross_entropy(network(split.train_images[batch]),
                                            split.train_labels[batch],
                                            label_smoothing=recipe["label_smoothing"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    network.eval()


@contextlib.contextmanager
def torch_threads(count):
    """Run the body with ``count`` torch threads (one is fastest for these small tensors)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(model="vit", dataset="digits", seed=0, *, save=True, checkpoint_dir=None,
          **recipe_overrides):
    """Train ``model`` ("vit" or "cnn") on ``dataset`` from ``seed``, deterministically.

    Keyword arguments override the recipe in :data:`RECIPES` (``epochs``, ``batch_size``,
    ``learning_rate``, ...). When ``save`` is true the checkpoint is written to
    :func:`checkpoint_path`. Returns a :class:`TrainingResult`.

    Raises
    ------
    TypeError
        For an unknown model, data set or recipe key, or a seed that is not an integer.
    """
    check_model_name(model)
    check_dataset_name(dataset)
    check_integer("seed", seed)
    recipe = dict(RECIPES[(model, dataset)])
    unknown = sorted(set(recipe_overrides) - set(recipe) - set(_REGULARISERS))
    if unknown:
        raise TypeError(f"unknown training option {unknown[0]!r}; expected one of "
                         f"{', '.join(sorted(set(recipe) | set(_REGULARISERS)))}")
    recipe.update(recipe_overrides)
    split = load_dataset(dataset)
    with torch_threads(1):
        started = time.perf_counter()
        torch.manual_seed(seed)
        network = build_model(model, dataset, **{key: recipe[key] for key in _REGULARISERS
                                                 if key in recipe})
        _fit(network, split, recipe, seed)
        seconds = time.perf_counter() - started
    test_accuracy = accuracy(network, split.test_images, split.test_labels)
    path = None
    if save:
        path = checkpoint_path(model, dataset, checkpoint_dir)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save({"model": model, "dataset": dataset, "seed": seed, "recipe": recipe,
                    "config": network.config, "test_accuracy": test_accuracy,
                    "state_dict": network.state_dict()}, path)
    return TrainingResult(network, test_accuracy, seconds, path)


def load_checkpoint(model, dataset, checkpoint_dir=None):
    """The checkpoint dict of ``model`` on ``dataset``.

    Raises
    ------
    FileNotFoundError
        If it has not been trained, with the command that trains it.
    CheckpointError
        If the file is not a checkpoint of ``model`` on ``dataset``.
    """
    path = checkpoint_path(model, dataset, checkpoint_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint for model {model!r} on dataset {dataset!r} at "
                                f"{path}; run `softerror train --model {model} --dataset "
                                f"{dataset}` to create it")
    not_ours = CheckpointError(f"checkpoint {path} is not one `softerror train` wrote")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as error:
        raise not_ours from error
    if not isinstance(checkpoint, dict) or not _CHECKPOINT_KEYS <= checkpoint.keys():
        raise not_ours
    if (checkpoint["model"], checkpoint["dataset"]) != (model, dataset):
        raise CheckpointError(f"checkpoint {path} holds model {checkpoint['model']!r} on dataset "
                              f"{checkpoint['dataset']!r}, not {model!r} on {dataset!r}")
    return checkpoint


def load_model(model, dataset, checkpoint_dir=None):
    """The trained float ``model`` for ``dataset``, in eval mode, from its checkpoint.

    Raises
    ------
    FileNotFoundError, CheckpointError
        As :func:`load_checkpoint`, and ``CheckpointError`` if the checkpoint's weights do
        not fit its architecture.
    """
    checkpoint = load_checkpoint(model, dataset, checkpoint_dir)
    cls = VisionTransformer if model == "vit" else SmallCNN
    try:
        network = cls(**checkpoint["config"])
        network.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {checkpoint_path(model, dataset, checkpoint_dir)}: "
                              f"its weights do not fit its {model} architecture") from error
    return network.eval()
