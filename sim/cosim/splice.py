"""The splice: a ``Datapath`` that replaces tiles of chosen GEMMs, or rows of chosen
nonlinear units, one choice per batch element.

The twin carries a faulty tile through the rest of the inference: every batch element is
an image under one experiment, and the element's GEMM output gets the difference between
the tile the host read and the clean tile added where that tile sits. A faulty row of an
integer nonlinear unit (the ViT with ``nonlinear="int"``) replaces the row's codes in the
unit's ``output`` register.
"""

from dataclasses import dataclass

import torch

from sw.datapath import Datapath
from sw.twin.gemm import gemm_int8, wrap_int32

__all__ = ["TileSplice", "RowSplice", "SpliceDatapath"]


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


class SpliceDatapath(Datapath):
    """Exact GEMMs, with ``splices[e]`` (a :class:`TileSplice`, a :class:`RowSplice` or
    ``None``) applied to batch element ``e``."""

    def __init__(self, splices):
        self.size = len(splices)
        self.by_site = {}
        self.rows_by_site = {}
        for element, splice in enumerate(splices):
            if isinstance(splice, RowSplice):
                self.rows_by_site.setdefault(splice.site, []).append((element, splice))
            elif splice is not None:
                self.by_site.setdefault(splice.site, []).append((element, splice))

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
        result = gemm_int8(a, b)
        if a.shape[0] != self.size:
            raise ValueError(f"batch of {a.shape[0]} for {self.size} splices")
        for element, splice in self.by_site.get(site.name, ()):
            rows, cols = splice.delta.shape
            region = result[(element, *splice.index)][splice.row0:splice.row0 + rows,
                                                       splice.col0:splice.col0 + cols]
            region.copy_(wrap_int32(region.to(torch.int64) + splice.delta))
        return result
