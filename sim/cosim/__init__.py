"""The model as campaign workload: a real inference's tiles on the RTL or the twin, the splice into
the PyTorch model, and outcomes judged at the model."""
