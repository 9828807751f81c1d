"""The hook point of the quantized networks: every operation runs through a :class:`Datapath`.

A quantized model (:mod:`sw.models.quantized_vit`, :mod:`sw.models.quantized_cnn`) never multiplies or
applies a nonlinearity on its own. Each int8 GEMM calls ``datapath.gemm(site, a, b)`` with
the int8 operands and gets the int32 accumulators back; each float nonlinear operation
passes every intermediate value through ``datapath.nonlinear(site, stage, values)``. The
default :class:`Datapath` is the fault-free accelerator; a fault injector corrupts
operands, accumulators and intermediates at these calls, and a protection (ABFT checksums
on the GEMM operands and result, range checks on the nonlinear values) sits at the very
same calls.

Every tensor handed to a hook has the tokens (or, in the CNN, spatial positions) on its
second-to-last axis, the "rows"; ``Site.row_tokens`` says which token each row belongs to.
"""

from dataclasses import dataclass

from sw.twin.gemm import gemm_int8

__all__ = ["Site", "Datapath", "Recorder", "NONLINEAR_STAGES"]

#: The intermediate values each nonlinear operation exposes, in the order it computes them.
NONLINEAR_STAGES = {
    "softmax": ("input", "exp", "sum", "quotient"),
    "gelu": ("input", "output"),
    "layernorm": ("input", "mean", "var", "output"),
    "relu": ("input", "output"),
    "pool": ("output",),
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
    """
    name: str
    kind: str
    layer: int | None
    operation: str
    row_tokens: tuple | None

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
        """The float32 intermediate ``values`` of ``stage`` of a nonlinear operation."""
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
