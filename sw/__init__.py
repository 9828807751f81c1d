"""PyTorch side: the bit-exact accelerator twin, the quantized ViT and CNN that run on it,
software fault injection and the vulnerability analysis."""
