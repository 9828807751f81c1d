"""Post-training quantization of a trained float ViT or CNN: calibrate, then build its int8 twin.

The quantization scheme and the int8 layers are in :mod:`sw.models.quantization`; the
quantized models in :mod:`sw.models.quantized_vit` and :mod:`sw.models.quantized_cnn`.
"""

import torch

from sw.models.cnn import SmallCNN
from sw.models.quantized_cnn import QuantizedCNN
from sw.models.quantized_vit import NONLINEAR_MODES, QuantizedViT
from sw.models.vit import Attention, VisionTransformer

__all__ = ["calibrate", "quantize"]


@torch.no_grad()
def calibrate(model, images, batch_size=256):
    """Largest |value| each quantized tensor reaches when ``model`` runs on ``images``.

    Returns a dict keyed by module name (the input of every Linear and Conv2d) and, for
    each ViT attention, ``"<attn>.q"``, ``"<attn>.k"``, ``"<attn>.v"`` and the
    probabilities ``"<attn>.probs"``. The inputs of every LayerNorm and GELU are recorded
    under their module names too (``"blocks.0.norm1"``, ``"norm"``; ``"blocks.0.mlp.act"``,
    the fc1 output): the integer-only ViT (``QuantizedViT(..., nonlinear="int")``)
    quantizes them for its LayerNorm and GELU units; the float one does not use them.
    """
    max_abs = {}

    def record(name, values):
        max_abs[name] = max(max_abs.get(name, 0.0), float(values.abs().max()))

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm,
                               torch.nn.GELU)):
            handles.append(module.register_forward_pre_hook(
                lambda module, inputs, name=name: record(name, inputs[0])))
        if isinstance(module, Attention):
            def split(qkv_module, inputs, output, name=name):
                q, k, v = output.reshape(*output.shape[:-1], 3, -1).unbind(-2)
                for part, values in zip("qkv", (q, k, v)):
                    record(f"{name}.{part}", values)
            handles.append(module.qkv.register_forward_hook(split))
            handles.append(module.attn_drop.register_forward_pre_hook(
                lambda module, inputs, name=name: record(f"{name}.probs", inputs[0])))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return max_abs


def quantize(model, calibration_images, nonlinear="float", unit_length=None):
    """The int8 twin of a float ViT or CNN, calibrated on ``calibration_images``.

    ``nonlinear="int"`` (ViT only) runs softmax, GELU and LayerNorm on the integer units
    (:class:`sw.models.quantized_vit.QuantizedViT`), of generator length ``unit_length``
    (``None``: as long as their rows).

    Raises
    ------
    TypeError
        If ``model`` is neither a :class:`sw.models.vit.VisionTransformer` nor a
        :class:`sw.models.cnn.SmallCNN`, or ``nonlinear`` is not ``"float"`` or ``"int"``.
    ValueError
        If ``nonlinear="int"`` is asked of a CNN (it has no softmax, GELU or LayerNorm).
    """
    if not isinstance(nonlinear, str) or nonlinear not in NONLINEAR_MODES:
        raise TypeError(f"nonlinear must be one of {', '.join(map(repr, NONLINEAR_MODES))}, "
                        f"not {nonlinear!r}")
    if isinstance(model, VisionTransformer):
        return QuantizedViT(model, calibrate(model, calibration_images), nonlinear,
                            unit_length)
    if isinstance(model, SmallCNN):
        if nonlinear != "float":
            raise ValueError(f"nonlinear {nonlinear!r} needs a VisionTransformer: a SmallCNN "
                             f"has no softmax, GELU or LayerNorm")
        return QuantizedCNN(model, calibrate(model, calibration_images))
    raise TypeError(f"model must be a VisionTransformer or a SmallCNN, not "
                    f"{type(model).__name__}")
