"""The bit-exact PyTorch model of the accelerator: tiling, GEMM and the protection units."""
