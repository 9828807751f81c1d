"""Software fault injectors: operation-level bit flips on the twin, single-neuron on the float ViT."""
