"""Software fault injection against PyTorchFI, on the same float ViT, in one run.

Both inject one single-bit flip per image into the output of a random ``nn.Linear`` of the
trained tiny ViT (`sw/checkpoints/vit_digits.pt`) and run the faulty inference, batch after
batch over the test images; the figure is faulty inferences per second. PyTorchFI 0.6.0
(`random_neuron_single_bit_inj_batched`) builds a corrupted copy of the model per batch and
loops over the images in Python inside its hook; ours (:class:`sw.neuron_injection.
LinearOutputInjector`) flips a whole batch's faults with one indexing operation per layer.
Also measured: the int8 ViT on the accelerator twin with the operation-level injector
(`sw.fault_injection`), the engine of `softerror vit analyze`.

PyTorchFI is installed into the venv on first use with ``--no-deps`` (it would otherwise
pull another torch); the figures use one torch thread, as the analysis does.
"""

import subprocess
import sys
import time

import torch
from torch import nn

PYTORCHFI = "pytorchfi==0.6.0"
BATCH = 64


def _pytorchfi():
    try:
        import pytorchfi  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--disable-pip-version-check", PYTORCHFI], check=True)
    from pytorchfi import neuron_error_models
    return neuron_error_models


def _batches(images, count):
    """``count`` full batches cycling over ``images``."""
    per_pass = len(images) // BATCH
    return [images[(i % per_pass) * BATCH:(i % per_pass + 1) * BATCH] for i in range(count)]


def _rate(run, batches):
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            run(batch)
    return len(batches) * BATCH / (time.perf_counter() - started)


def _pytorchfi_runner(model, images):
    models = _pytorchfi()
    injector = models.single_bit_flip_func(model, batch_size=BATCH,
                                           input_shape=list(images.shape[1:]),
                                           layer_types=[nn.Linear], use_cuda=False, bits=8)
    # PyTorchFI flips a bit of the value quantized to `bits` over the layer's range.
    ranges = [float(r) for r in _linear_ranges(model, images)]

    def run(batch):
        corrupted = models.random_neuron_single_bit_inj_batched(injector, ranges)
        corrupted(batch)
    return run


def _linear_ranges(model, images):
    """Largest |output| of every Linear layer on clean images (PyTorchFI's layer ranges)."""
    peaks = []
    handles = [layer.register_forward_hook(
        lambda module, inputs, output: peaks.append(float(output.abs().max())))
        for layer in model.modules() if isinstance(layer, nn.Linear)]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return peaks


def measure(batches=10, rounds=5):
    """Best of ``rounds`` interleaved rounds of ``batches`` batches for each contender."""
    from sw.analysis import quantized_model, torch_threads
    from sw.datasets import load_dataset
    from sw.fault_injection import FaultInjector
    from sw.neuron_injection import LinearOutputInjector
    images = load_dataset("digits").test_images
    with torch_threads(1):
        model, quantized = quantized_model("vit", "digits")
        model.eval()
        work = _batches(images, batches)
        ours = LinearOutputInjector(model, images, seed=0)

        def run_ours(batch):
            ours.arm(len(batch))
            model(batch)
        theirs = _pytorchfi_runner(model, images)
        # The int8 model on the twin, faults only in GEMM outputs, about one per image.
        probe = FaultInjector(1e-5, seed=0, targets=["output"])
        _rate(lambda batch: quantized(batch, probe), work[:2])
        twin = FaultInjector(1e-5 * (2 * BATCH) / probe.total_flips(), seed=1,
                             targets=["output"])
        best = {"clean": 0.0, "ours": 0.0, "pytorchfi": 0.0, "twin": 0.0}
        for _ in range(rounds):
            best["clean"] = max(best["clean"], _rate(model, work))
            with ours:
                best["ours"] = max(best["ours"], _rate(run_ours, work))
            best["pytorchfi"] = max(best["pytorchfi"], _rate(theirs, work))
            best["twin"] = max(best["twin"], _rate(lambda batch: quantized(batch, twin), work))
        twin_flips = twin.total_flips() / (rounds * len(work) * BATCH)
    return {"batch": BATCH, "rounds": rounds, "clean_per_s": best["clean"],
            "ours_per_s": best["ours"], "pytorchfi_per_s": best["pytorchfi"],
            "speedup": best["ours"] / best["pytorchfi"], "twin_per_s": best["twin"],
            "twin_flips_per_image": twin_flips}


def report(figures):
    return "\n".join([
        "Software fault injection, tiny ViT (float), one single-bit flip per image in a "
        f"random Linear output, batches of {figures['batch']}, 1 thread, best of "
        f"{figures['rounds']} interleaved rounds:",
        f"  fault-free inference:       {figures['clean_per_s']:>9,.0f} images/s",
        f"  ours (vectorised hooks):    {figures['ours_per_s']:>9,.0f} faulty inferences/s",
        f"  PyTorchFI 0.6.0:            {figures['pytorchfi_per_s']:>9,.0f} faulty inferences/s",
        f"  ratio:                      {figures['speedup']:>9.1f}x",
        f"  int8 ViT on the twin, {figures['twin_flips_per_image']:.2f} accumulator flips per "
        f"image (softerror vit analyze): {figures['twin_per_s']:,.0f} faulty inferences/s",
    ])


if __name__ == "__main__":
    print(report(measure()))
