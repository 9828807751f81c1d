"""The splice: a ``Datapath`` that replaces tiles of chosen GEMMs, or rows of chosen
nonlinear units, one choice per batch element.

The twin carries a faulty tile through the rest of the inference: every batch element is
an image under one experiment, and the element's GEMM output gets the difference between
the tile the host read and the clean tile added where that tile sits. A faulty row of an
integer nonlinear unit (the ViT with ``nonlinear="int"``) replaces the row's codes in the
unit's ``output`` register.
"""

from dataclasses import dataclass

import numpy as np
import torch

from sw.datapath import Datapath
from sw.twin.gemm import gemm_int8, wrap_int32

__all__ = ["TileSplice", "RowSplice", "CleanPrefix", "SpliceDatapath"]


@dataclass(frozen=True)
class TileSplice:
    """Add ``delta`` (int64, valid rows x valid cols) to GEMM ``site``/``index`` at (row0, col0)."""
    site: str
    index: tuple
    row0: int
    col0: int
    delta: torch.Tensor


@dataclass(frozen=True)
class RowSplice:
    """Replace the output codes of row ``index`` (the call's leading indices after the
    batch) of nonlinear unit ``site`` by ``codes`` (int64, or one ``element``'s code)."""
    site: str
    index: tuple
    codes: torch.Tensor
    element: int | None = None
    """``None``: ``codes`` is the whole row; else the one element ``codes`` replaces."""


@dataclass(frozen=True)
class CleanPrefix:
    """The clean pass an inference under splices can start from: ``order`` maps each site
    name to its place in the inference, ``outputs[e]`` holds batch element ``e``'s image's
    clean GEMM outputs by site (without the batch axis)."""
    order: dict
    outputs: list


class SpliceDatapath(Datapath):
    """Exact GEMMs, with ``splices[e]`` (a :class:`TileSplice`, a :class:`RowSplice` or
    ``None``) applied to batch element ``e``.

    With a :class:`CleanPrefix`, a GEMM that runs before element ``e``'s splice takes its
    clean output instead of being computed: everything before the splice is the clean
    pass, bit for bit, so only the rest of the inference costs multiplies (an element
    without a splice computes none).
    """

    def __init__(self, splices, prefix=None):
        self.size = len(splices)
        self.by_site = {}
        self.rows_by_site = {}
        self.prefix = prefix
        for element, splice in enumerate(splices):
            if isinstance(splice, RowSplice):
                self.rows_by_site.setdefault(splice.site, []).append((element, splice))
            elif splice is not None:
                self.by_site.setdefault(splice.site, []).append((element, splice))
        if prefix is not None:
            if len(prefix.outputs) != self.size:
                raise ValueError(f"{len(prefix.outputs)} clean passes for {self.size} splices")
            self.starts = [float("inf") if splice is None else prefix.order[splice.site]
                           for splice in splices]

    def nonlinear(self, site, stage, values):
        splices = self.rows_by_site.get(site.name) if stage == "output" else None
        if not splices:
            return values
        values = values.clone()
        for element, splice in splices:
            row = values[(element, *splice.index)]
            if splice.element is None:
                row.copy_(splice.codes)
            else:
                row[splice.element] = splice.codes
        return values

    def gemm(self, site, a, b):
        if a.shape[0] != self.size:
            raise ValueError(f"batch of {a.shape[0]} for {self.size} splices")
        result = self._product(site, a, b)
        splices = self.by_site.get(site.name)
        if splices:
            places, deltas = _tile_places(splices)
            result[places] = wrap_int32(result[places].to(torch.int64) + deltas)
        return result

    def _product(self, site, a, b):
        """``a @ b`` for the elements at or past their splice, the clean output for the
        others."""
        if self.prefix is None:
            return gemm_int8(a, b)
        place = self.prefix.order[site.name]
        live = [element for element, start in enumerate(self.starts) if start <= place]
        if len(live) == self.size:
            return gemm_int8(a, b)
        result = torch.stack([outputs[site.name] for outputs in self.prefix.outputs])
        if live:
            index = torch.tensor(live)
            result[index] = gemm_int8(a[index], b[index] if b.dim() == a.dim() else b)
        return result


def _tile_places(splices):
    """(index tensors, deltas) of every output element that ``splices`` ((batch element,
    :class:`TileSplice`) pairs of one GEMM) change: one indexed add for all of them."""
    shapes = [splice.delta.shape for _, splice in splices]
    counts = np.array([rows * cols for rows, cols in shapes])
    corners = np.array([(element, *splice.index, splice.row0, splice.col0)
                        for element, splice in splices], dtype=np.int64)
    places = np.repeat(corners, counts, axis=0)
    # Each splice's elements row by row, as its delta is laid out.
    within = np.arange(len(places)) - np.repeat(np.cumsum(counts) - counts, counts)
    widths = np.repeat([cols for _, cols in shapes], counts)
    places[:, -2] += within // widths
    places[:, -1] += within % widths
    return (tuple(torch.from_numpy(np.ascontiguousarray(axis)) for axis in places.T),
            torch.cat([splice.delta.reshape(-1) for _, splice in splices]))
