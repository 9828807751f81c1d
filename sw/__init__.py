"""PyTorch side: the bit-exact accelerator model and, later, the quantized ViT."""
