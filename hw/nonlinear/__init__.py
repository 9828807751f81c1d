"""The integer nonlinear units beside the GEMM array (softmax, GELU, LayerNorm) and the
arithmetic blocks they share; docs/nonlinear.md is their exact specification."""
