"""The integer nonlinear units beside the GEMM array (docs/nonlinear.md) and their shared
arithmetic: the saturating restoring divider, the bit-serial square root, the leading-zero
count."""
