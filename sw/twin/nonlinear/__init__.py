"""Bit-exact twin of the integer softmax, GELU and LayerNorm units and their checkers.

The specification is docs/nonlinear.md; one module per unit, the shared integer pieces in
:mod:`sw.twin.nonlinear.arithmetic`.
"""

from sw.twin.nonlinear.gelu import GeluFlags, GeluParams, GeluTrace, check_gelu, gelu
from sw.twin.nonlinear.layernorm import (LayerNormFlags, LayerNormParams, LayerNormTrace,
                                         check_layernorm, layernorm)
from sw.twin.nonlinear.softmax import (SoftmaxFlags, SoftmaxParams, SoftmaxTrace,
                                       check_softmax, softmax)

__all__ = ["SoftmaxParams", "SoftmaxTrace", "SoftmaxFlags", "softmax", "check_softmax",
           "GeluParams", "GeluTrace", "GeluFlags", "gelu", "check_gelu",
           "LayerNormParams", "LayerNormTrace", "LayerNormFlags", "layernorm",
           "check_layernorm"]
