"""Single-neuron bit flips in the outputs of a float model's Linear layers, one per image.

The fault model of PyTorchFI's ``random_neuron_single_bit_inj_batched`` (a uniformly chosen
layer, a uniformly chosen output element of it, one flipped bit, per image of the batch),
applied to the float32 bit pattern and vectorised: the faults of a batch are drawn and
grouped by layer at once, each Linear layer's forward hook flips its group with one
in-place XOR, and the model is never copied. It lets the float models take the same faults as a PyTorchFI run, for comparison
(``make bench``) and for float-model studies.
"""

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["NeuronFaults", "draw_neuron_faults", "flip_bits", "LinearOutputInjector"]


class NeuronFaults(NamedTuple):
    """One single-bit flip per image: Linear layer index, output element, int32 XOR mask."""
    layer: torch.Tensor
    element: torch.Tensor
    mask: torch.Tensor


def draw_neuron_faults(generator, output_elements, count):
    """``count`` faults: a uniform layer, a uniform element of its output, a uniform bit.

    ``output_elements`` holds each layer's output elements per image.
    """
    layer = torch.randint(0, len(output_elements), (count,), generator=generator)
    element = (torch.rand(count, generator=generator, dtype=torch.float64)
               * output_elements[layer]).to(torch.int64)
    bit = torch.randint(0, 32, (count,), generator=generator)
    mask = (torch.ones(count, dtype=torch.int64) << bit).to(torch.int32)  # bit 31 wraps
    return NeuronFaults(layer, element, mask)


def flip_bits(values, mask):
    """``values`` (float32) with the bits of ``mask`` (int32, same shape) flipped."""
    return (values.contiguous().view(torch.int32) ^ mask).view(torch.float32)


class LinearOutputInjector:
    """Arm ``model`` so that each image of the next forward pass gets one bit flip.

    Use as a context manager (hooks are removed on exit); call :meth:`arm` before each
    batch. ``layers`` lists the Linear modules in the order they were found.
    """

    def __init__(self, model, example_input, *, seed=0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.layers = [module for module in model.modules() if isinstance(module, nn.Linear)]
        if not self.layers:
            raise TypeError("model has no nn.Linear layer to inject into")
        self.generator = torch.Generator().manual_seed(seed)
        self.output_elements = self._output_elements(example_input)
        self._by_layer = None
        self._handles = []
        self.injections = 0

    def _output_elements(self, example_input):
        """Output elements per image of every Linear layer, from one forward pass."""
        sizes = {}
        handles = [layer.register_forward_hook(
            lambda module, inputs, output, index=index: sizes.__setitem__(
                index, output[0].numel()))
            for index, layer in enumerate(self.layers)]
        try:
            with torch.no_grad():
                self.model(example_input[:1])
        finally:
            for handle in handles:
                handle.remove()
        return torch.tensor([sizes[index] for index in range(len(self.layers))])

    def __enter__(self):
        self._handles = [layer.register_forward_hook(self._hook(index))
                         for index, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def arm(self, batch):
        """Draw the next batch's faults (one per image) and return them."""
        faults = draw_neuron_faults(self.generator, self.output_elements, batch)
        self.arm_faults(faults)
        return faults

    def arm_faults(self, faults):
        """Give image ``i`` of the next batch the fault ``faults[.][i]``."""
        layer, element, mask = faults
        order = torch.argsort(layer, stable=True)
        counts = torch.bincount(layer, minlength=len(self.layers)).tolist()
        self._by_layer = [(images, element[images], mask[images])
                          for images in torch.split(order, counts)]
        self.injections += len(layer)

    def _hook(self, index):
        def flip(module, inputs, output):
            images, element, mask = self._by_layer[index]
            if images.numel():
                # One flip per image: distinct elements, so an in-place XOR is exact.
                flat = output.view(output.shape[0], -1).view(torch.int32)
                flat[images, element] ^= mask
            return output
        return flip
