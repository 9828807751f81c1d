"""A small float CNN: the point of comparison for the ViT in the vulnerability analysis.

Its only nonlinear operations are ReLU and 2x2 max pooling, where the ViT has softmax, GELU
and LayerNorm; its GEMMs (3x3 convolutions as im2col GEMMs and one Linear head) run on the
same accelerator model once quantized (:mod:`sw.models.quantization`).

Layout: ``convs.{i}`` (3x3, padding 1) each followed by ReLU and, where ``pools[i]`` is
true, a 2x2 max pool; then ``fc`` over the flattened (channel, row, column) features.
"""

import torch
from torch import nn

from sw.parameter_checks import check_positive_integer

__all__ = ["SmallCNN", "tiny_digits_cnn", "tiny_mnist_cnn"]


class SmallCNN(nn.Module):
    """Convolution stages with ReLU and optional 2x2 max pooling, then a Linear classifier.

    Parameters
    ----------
    img_size, in_chans, num_classes : int
        Square input size, input channels and classes.
    channels : tuple of int
        Output channels of each 3x3 convolution stage.
    pools : tuple of bool
        Whether each stage ends with a 2x2 max pool.
    patch_size : int
        Side of the patch grid that attributes computations to tokens in the fault analysis
        (the ViT's for the same data set, so heat maps compare); it does not change the
        network.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type, or sizes that pooling cannot halve.
    """

    def __init__(self, img_size=8, in_chans=1, num_classes=10, channels=(16, 32),
                 pools=(False, True), patch_size=2):
        super().__init__()
        for name, value in (("img_size", img_size), ("in_chans", in_chans),
                            ("num_classes", num_classes), ("patch_size", patch_size)):
            check_positive_integer(name, value)
        channels, pools = tuple(channels), tuple(bool(p) for p in pools)
        if not channels or len(channels) != len(pools):
            raise ValueError(f"channels {channels!r} and pools {pools!r} must be non-empty "
                             f"and of equal length")
        size = img_size
        for pool in pools:
            if pool and size % 2:
                raise ValueError(f"img_size {img_size} cannot be halved by every pool in "
                                 f"{pools!r}")
            size = size // 2 if pool else size
        self.config = dict(img_size=img_size, in_chans=in_chans, num_classes=num_classes,
                           channels=list(channels), pools=list(pools), patch_size=patch_size)
        inputs = (in_chans,) + channels[:-1]
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, 3, padding=1)
                                   for cin, cout in zip(inputs, channels))
        self.pools = pools
        self.fc = nn.Linear(channels[-1] * size * size, num_classes)

    def forward(self, images):
        x = images
        for conv, pool in zip(self.convs, self.pools):
            x = torch.relu(conv(x))
            if pool:
                x = nn.functional.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


def tiny_digits_cnn(**overrides):
    """The CNN for 8x8 ``digits``: 16 and 32 channels, one pool, a 512 -> 10 head."""
    config = dict(img_size=8, in_chans=1, num_classes=10, channels=(16, 32),
                  pools=(False, True), patch_size=2)
    return SmallCNN(**{**config, **overrides})


def tiny_mnist_cnn(**overrides):
    """The CNN for 28x28 ``mnist5k``: 16 and 32 channels, two pools, a 1568 -> 10 head."""
    config = dict(img_size=28, in_chans=1, num_classes=10, channels=(16, 32),
                  pools=(True, True), patch_size=7)
    return SmallCNN(**{**config, **overrides})
