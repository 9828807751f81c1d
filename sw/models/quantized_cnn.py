"""The int8 CNN: convolutions as im2col GEMMs on the accelerator model, ReLU and pooling in float.

Built from a trained :class:`sw.models.cnn.SmallCNN` and its calibration (:mod:`sw.models.quantization`).
Activations are kept as rows of spatial positions (B, H * W, C), the im2col layout, so that
every site has its positions on axis -2 like the ViT has its tokens.

Sites and kinds: ``convs.{i}`` (kind ``conv{i+1}``, layer ``i``), ``convs.{i}.relu``
(``relu``, stages input/output), ``convs.{i}.pool`` (``pool``, stage output), ``fc``
(``fc``, layer = number of convolutions). For the patch granularity a position belongs to
the patch of the ViT grid (``patch_size``) that contains its centre; ``fc`` mixes all
positions and belongs to no token.
"""

import torch
from torch.nn import functional

from sw.datapath import Datapath, Site
from sw.models.quantization import QuantizedLinear, quantize_activation

__all__ = ["QuantizedCNN"]


class QuantizedCNN:
    """int8 twin of a :class:`sw.models.cnn.SmallCNN`; call it on images to get logits.

    Parameters
    ----------
    model : sw.models.cnn.SmallCNN
        The trained float model (its weights are copied and quantized).
    max_abs : dict
        Calibration from :func:`sw.models.quantization.calibrate`.

    Members
    -------
    sites : tuple of Site
        Every operation in execution order; tokens are the patches 1 .. grid**2.
    """

    def __init__(self, model, max_abs):
        self.config = dict(model.config)
        self.img_size = model.config["img_size"]
        self.patch_size = model.config["patch_size"]
        self.grid_size = -(-self.img_size // self.patch_size)
        self.pools = tuple(model.pools)
        self.convs = [QuantizedLinear.from_float(conv.weight, conv.bias, max_abs[f"convs.{i}"])
                      for i, conv in enumerate(model.convs)]
        self.fc = QuantizedLinear.from_float(model.fc.weight, model.fc.bias, max_abs["fc"])
        self._sites = self._make_sites()
        self.sites = tuple(self._sites.values())

    @property
    def num_tokens(self):
        """Token indices run 0 .. grid**2; index 0 (the ViT's class token) has no positions."""
        return self.grid_size ** 2 + 1

    def _row_tokens(self, size):
        factor = self.img_size // size
        centre = [(position * factor + factor // 2) // self.patch_size for position in range(size)]
        return tuple(1 + row * self.grid_size + column for row in centre for column in centre)

    def _make_sites(self):
        sites, size = [], self.img_size
        for index, pool in enumerate(self.pools):
            tokens = self._row_tokens(size)
            sites.append(Site(f"convs.{index}", f"conv{index + 1}", index, "gemm", tokens))
            sites.append(Site(f"convs.{index}.relu", "relu", index, "nonlinear", tokens))
            if pool:
                size //= 2
                sites.append(Site(f"convs.{index}.pool", "pool", index, "nonlinear",
                                  self._row_tokens(size)))
        sites.append(Site("fc", "fc", len(self.pools), "gemm", None))
        return {site.name: site for site in sites}

    def site(self, name):
        """The :class:`Site` called ``name``."""
        return self._sites[name]

    @torch.no_grad()
    def __call__(self, images, datapath=None):
        """Logits (B, classes) for images (B, C, H, W), every operation run by ``datapath``."""
        datapath = Datapath() if datapath is None else datapath
        x = images.float()
        batch, size = x.shape[0], x.shape[-1]
        for index, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            codes = quantize_activation(x, conv.input_scale).float()
            columns = functional.unfold(codes, 3, padding=1).transpose(1, 2).to(torch.int8)
            rows = conv(self._sites[f"convs.{index}"], columns, datapath)
            site = self._sites[f"convs.{index}.relu"]
            rows = datapath.nonlinear(site, "input", rows)
            rows = datapath.nonlinear(site, "output", torch.relu(rows))
            x = rows.transpose(1, 2).reshape(batch, -1, size, size)
            if pool:
                x = functional.max_pool2d(x, 2)
                size //= 2
                rows = x.flatten(2).transpose(1, 2)
                rows = datapath.nonlinear(self._sites[f"convs.{index}.pool"], "output", rows)
                x = rows.transpose(1, 2).reshape(batch, -1, size, size)
        features = x.reshape(batch, 1, -1)
        return self.fc.forward(self._sites["fc"], features, datapath)[:, 0]
