"""The hook point of the quantized networks: every operation runs through a :class:`Datapath`.

A quantized model (:mod:`sw.models.quantized_vit`, :mod:`sw.models.quantized_cnn`) never multiplies or
applies a nonlinearity on its own. Each int8 GEMM calls ``datapath.gemm(site, a, b)`` with
the int8 operands and gets the int32 accumulators back; each nonlinear operation passes
every intermediate value through ``datapath.nonlinear(site, stage, values)``: float32
values at the stages of :data:`NONLINEAR_STAGES` for a float operation, int64 register
values at the stages of :data:`INTEGER_NONLINEAR_STAGES` for an integer unit (the ViT with
``nonlinear="int"``, whose sites carry the units' register widths, :attr:`Site.registers`).
The default :class:`Datapath` is the fault-free accelerator; a fault injector corrupts
operands, accumulators and intermediates at these calls, and a protection (ABFT checksums
on the GEMM operands and result, range checks on the nonlinear values) sits at the very
same calls.

Every tensor handed to a hook has the tokens (or, in the CNN, spatial positions) on its
second-to-last axis, the "rows"; ``Site.row_tokens`` says which token each row belongs to.
"""

from dataclasses import dataclass

from sw.twin.gemm import gemm_int8
from sw.twin.nonlinear.gelu import GELU_STAGES
from sw.twin.nonlinear.layernorm import LAYERNORM_STAGES
from sw.twin.nonlinear.softmax import SOFTMAX_STAGES

__all__ = ["Site", "Datapath", "Recorder", "NONLINEAR_STAGES", "INTEGER_NONLINEAR_STAGES"]

#: The intermediate values each float nonlinear operation exposes, in the order it
#: computes them.
NONLINEAR_STAGES = {
    "softmax": ("input", "exp", "sum", "quotient"),
    "gelu": ("input", "output"),
    "layernorm": ("input", "mean", "var", "output"),
    "relu": ("input", "output"),
    "pool": ("output",),
}
#: The registers each integer nonlinear unit exposes (docs/nonlinear.md), in the order it
#: computes them: the stage names of the twin, :mod:`sw.twin.nonlinear`.
INTEGER_NONLINEAR_STAGES = {
    "softmax": SOFTMAX_STAGES,
    "gelu": GELU_STAGES,
    "layernorm": LAYERNORM_STAGES,
}


@dataclass(frozen=True)
class Site:
    """One operation of a quantized network, where a fault can strike or a check can sit.

    Members
    -------
    name : str
        Dotted path after the float model's modules, e.g. ``"blocks.0.attn.qkv"``.
    kind : str
        Module kind, e.g. ``"qkv"``, ``"attn_scores"``, ``"softmax"``, ``"conv1"``.
    layer : int or None
        Encoder block (ViT) or convolution stage (CNN); ``None`` outside them.
    operation : str
        ``"gemm"`` or ``"nonlinear"``.
    row_tokens : tuple of int, or None
        Token of each row (axis -2) of the tensors at this site; ``None`` when the rows
        belong to no token (the CNN's flattened classifier input).
    registers : tuple of (str, int, bool), or None
        For an integer nonlinear unit: ``(stage, bits, signed)`` of each register it
        exposes, in the order of :data:`INTEGER_NONLINEAR_STAGES`; its values at
        ``datapath.nonlinear`` are int64 and fit these widths. ``None`` for a GEMM or a
        float nonlinear operation.
    """
    name: str
    kind: str
    layer: int | None
    operation: str
    row_tokens: tuple | None
    registers: tuple | None = None

    @property
    def integer(self):
        """Whether the site is an integer nonlinear unit (its stages are registers)."""
        return self.registers is not None

    def register(self, stage):
        """``(bits, signed)`` of the register of ``stage`` at an integer unit's site.

        Raises
        ------
        ValueError
            If the site is not an integer unit or has no such stage.
        """
        for name, bits, signed in self.registers or ():
            if name == stage:
                return bits, signed
        raise ValueError(f"site {self.name!r} has no integer register {stage!r}")

    def rows_of(self, token):
        """Rows of this site that compute for ``token`` (an empty tuple if none)."""
        if self.row_tokens is None:
            return ()
        return tuple(row for row, owner in enumerate(self.row_tokens) if owner == token)


class Datapath:
    """The fault-free accelerator: exact int8 GEMMs, nonlinear values passed through."""

    def gemm(self, site, a, b):
        """int32 ``a @ b`` for int8 ``a`` (B, ..., M, K) and ``b`` (K, N) or (B, ..., K, N)."""
        return gemm_int8(a, b)

    def nonlinear(self, site, stage, values):
        """The intermediate ``values`` of ``stage`` of a nonlinear operation: float32 for a
        float operation, int64 register values for an integer unit (``site.integer``),
        which fits what is returned to the register's width again."""
        return values


class Recorder(Datapath):
    """Runs ``inner`` and keeps what each hook returned, keyed by (site name, stage).

    GEMM results are kept under the stage ``"output"``. Meant for tests and for profiling
    value ranges on clean data.
    """

    def __init__(self, inner=None):
        self.inner = Datapath() if inner is None else inner
        self.values = {}

    def gemm(self, site, a, b):
        result = self.inner.gemm(site, a, b)
        self.values[(site.name, "output")] = result
        return result

    def nonlinear(self, site, stage, values):
        result = self.inner.nonlinear(site, stage, values)
        self.values[(site.name, stage)] = result
        return result
