"""The model as a campaign workload: a real inference's int8 GEMMs, tiled as the hardware runs them.

A clean pass of the quantized ViT or CNN on one image is recorded at the ``Datapath`` hook:
every ``datapath.gemm`` call becomes one or more :class:`ModelGemm` (one per attention head
for the batched attention matmuls). Each GEMM is cut into the accelerator's output tiles
(row-major, zero-padded, as :func:`sw.twin.gemm.iter_tiles`), and each tile into K passes:
a K longer than ``k_max`` is split into passes of ``k_max`` (the last one shorter), which the
host runs one after the other and adds as int32 partial tiles, as a driver would. An upset
strikes one pass of one tile.

Every image of a model has the same GEMM shapes, so the passes and their cycles are the same
for each image; only the operands differ.
"""

from dataclasses import dataclass
from itertools import product

import numpy as np
import torch

from sim.harness import window_cycles
from sw.datapath import Datapath
from sw.twin.gemm import gemm_int8, tile_origins

__all__ = ["ModelGemm", "TilePass", "record_gemms", "tile_passes", "pass_extremes",
           "RANGE_MARGIN", "CALIBRATION_IMAGES"]

#: The range checker's bound of a GEMM is this many times the largest |partial tile value|
#: the calibration images produce there.
RANGE_MARGIN = 2
#: Training images whose inferences calibrate the range checker's bounds.
CALIBRATION_IMAGES = 64


@dataclass(frozen=True)
class ModelGemm:
    """One int8 GEMM of an inference: ``a`` (M x K) times ``b`` (K x N)."""
    site: str
    """The ``Site`` name of the call (``"blocks.0.attn.qkv"``)."""
    module: str
    """The site's kind: ``patch_embed``, ``qkv``, ``attn_scores``, ... or the CNN's ``conv1``."""
    index: tuple
    """Position among the call's leading dimensions after the batch (the head), or ``()``."""
    a: torch.Tensor
    b: torch.Tensor


@dataclass(frozen=True)
class TilePass:
    """One pass of one output tile of one GEMM: what the accelerator runs between two STARTs."""
    gemm: int
    """Index into the image's list of :class:`ModelGemm`."""
    row0: int
    col0: int
    k0: int
    k: int
    valid_rows: int
    valid_cols: int
    cycles: int
    """The pass's injection window (START to the last result read), its weight in sampling."""

    def operands(self, gemm, rows, cols):
        """The pass's zero-padded (rows x k, k x cols) int8 operands (NumPy arrays)."""
        a = np.zeros((rows, self.k), dtype=np.int8)
        b = np.zeros((self.k, cols), dtype=np.int8)
        a[:self.valid_rows] = gemm.a.numpy()[self.row0:self.row0 + self.valid_rows,
                                             self.k0:self.k0 + self.k]
        b[:, :self.valid_cols] = gemm.b.numpy()[self.k0:self.k0 + self.k,
                                                self.col0:self.col0 + self.valid_cols]
        return a, b


class _GemmRecorder(Datapath):
    def __init__(self):
        self.gemms = []

    def gemm(self, site, a, b):
        if a.shape[0] != 1:
            raise ValueError(f"record one image at a time, not a batch of {a.shape[0]}")
        lead = a.shape[1:-2]
        b_batched = b.dim() == a.dim()
        for index in product(*map(range, lead)):
            a_2d = a[(0, *index)]
            b_2d = b[(0, *index)] if b_batched else b
            self.gemms.append(ModelGemm(site.name, site.kind, index, a_2d.clone(),
                                        b_2d.clone()))
        return super().gemm(site, a, b)


def record_gemms(quantized, image):
    """The :class:`ModelGemm` s of ``quantized`` (a ``QuantizedViT``/``QuantizedCNN``) on
    one image (C, H, W), in the order the inference runs them."""
    recorder = _GemmRecorder()
    quantized(image[None], recorder)
    return recorder.gemms


def tile_passes(gemms, config):
    """Every :class:`TilePass` of ``gemms`` on the accelerator ``config``, in run order."""
    passes = []
    for number, gemm in enumerate(gemms):
        m, k = gemm.a.shape
        n = gemm.b.shape[1]
        for row0, col0 in tile_origins(m, n, config.rows, config.cols):
            for k0 in range(0, k, config.k_max):
                depth = min(config.k_max, k - k0)
                passes.append(TilePass(number, row0, col0, k0, depth,
                                       min(config.rows, m - row0), min(config.cols, n - col0),
                                       window_cycles(config, depth)))
    return passes



def pass_extremes(quantized, images, k_max):
    """Per GEMM site (``"blocks.0.attn.qkv"``), the largest |value| of any K pass's partial
    tile over the inferences of ``images`` (N, C, H, W): what a range checker on the
    accelerator's output sees, pass by pass."""
    extremes = {}
    for image in images:
        for gemm in record_gemms(quantized, image):
            k = gemm.a.shape[1]
            for k0 in range(0, k, k_max):
                partial = gemm_int8(gemm.a[:, k0:k0 + k_max], gemm.b[k0:k0 + k_max])
                extremes[gemm.site] = max(extremes.get(gemm.site, 0),
                                          int(partial.abs().max()))
    return extremes
