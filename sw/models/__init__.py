"""The ViT and CNN, their data sets and training, int8 quantization and the quantized models."""
