"""The typed records of model-level campaigns: an upset, the tile the host read, the verdict."""

from dataclasses import dataclass

import torch

__all__ = ["MODEL_OUTCOMES", "Upset", "StruckTile", "ModelRecord"]

#: Outcomes at the model level, in reporting order.
MODEL_OUTCOMES = ("masked", "tolerated", "sdc", "corrected", "recomputed", "false_alarm",
                  "hang")


@dataclass(frozen=True)
class Upset:
    """One drawn experiment."""
    experiment: int
    image: int
    """Index into the data set's test images."""
    pass_index: int
    site: str
    fault_class: str
    bit: int
    cycle: int


@dataclass(frozen=True)
class StruckTile:
    """What the host read from the struck pass (valid rows x cols) and the STATUS it saw."""
    output: torch.Tensor | None
    """``None`` after a hang."""
    abft_error: bool = False
    abft_corrected: bool = False
    range_flag: bool = False
    hang: bool = False


@dataclass(frozen=True)
class ModelRecord:
    """One experiment, judged at the model."""
    experiment: int
    image: int
    module: str
    gemm_site: str
    pass_index: int
    site: str
    fault_class: str
    bit: int
    cycle: int
    tile_equal: bool
    action: str
    """What the host did: ``keep``, ``recompute``."""
    outcome: str
    label: int
    clean_top1: int
    top1: int
    margin_change: float
    """Change of the correct class's logit margin (its logit minus the best other one)."""
    predicted: str
    """The RTL-derived model against the struck tile: ``equal``, ``mismatch`` or
    ``not_modeled`` (the twin engine records ``equal``: it is its own prediction)."""
    operation_level_sdc: bool | None
    """Whether the paper's operation-level model (one bit of one int32 output element of
    the same GEMM, unprotected) changed the top-1 class; ``None``: the campaign does not
    run that model."""
