"""Software fault injection against PyTorchFI, on the same float ViT, in one run.

All contenders run the same campaign on the trained tiny ViT (`sw/models/checkpoints/vit_digits.pt`):
``FAULTS_PER_IMAGE`` faulty inferences of each of the 360 test images, each with one
single-bit flip in the output of a random ``nn.Linear``; the figure is faulty inferences per
second.

- PyTorchFI 0.6.0 (`random_neuron_single_bit_inj_batched`) builds a corrupted copy of the
  model per batch and loops over the images in Python inside its hook. It runs at batch 64
  and at batch 360 (the whole test set, its fastest); the ratios use its faster figure.
- Ours, hooks (:class:`sw.inject.neuron.LinearOutputInjector`): the same full faulty
  forward pass, each batch's faults flipped by one indexing operation per layer.
- Ours, token-sparse (:class:`sw.inject.token_sparse.TokenSparseInjector`): runs the
  fault-free pass once (timed) and per fault recomputes only the rows and layers the flip
  reaches.
- The int8 ViT on the accelerator twin with the operation-level injector
  (`sw.inject.operation`), the engine of `softerror vit analyze`.

PyTorchFI is installed into the venv on first use with ``--no-deps`` (it would otherwise
pull another torch); the figures use one torch thread, as the analysis does.
"""

import subprocess
import sys
import time

import torch
from torch import nn

PYTORCHFI = "pytorchfi==0.6.0"
BATCHES = (64, 360)
FAULTS_PER_IMAGE = 48       # 17,280 faulty inferences: whole batches of 64 and of 360


def _pytorchfi():
    try:
        import pytorchfi  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--disable-pip-version-check", PYTORCHFI], check=True)
    from pytorchfi import neuron_error_models
    return neuron_error_models


def _batches(images, size, count):
    """``count`` full batches of ``size`` cycling over ``images``."""
    per_pass = len(images) // size
    return [images[(i % per_pass) * size:(i % per_pass + 1) * size] for i in range(count)]


def _rate(run, batches):
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            run(batch)
    return sum(len(batch) for batch in batches) / (time.perf_counter() - started)


def _pytorchfi_runner(model, images, ranges, batch_size):
    """One PyTorchFI batch of faulty inferences per call, with layer ``ranges``."""
    models = _pytorchfi()
    injector = models.single_bit_flip_func(model, batch_size=batch_size,
                                           input_shape=list(images.shape[1:]),
                                           layer_types=[nn.Linear], use_cuda=False, bits=8)

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


def _token_sparse_rate(model, images, generator):
    """Faulty inferences per second of a ``FAULTS_PER_IMAGE`` campaign over ``images``,
    the engine's fault-free pass included."""
    from sw.inject.token_sparse import TokenSparseInjector
    started = time.perf_counter()
    engine = TokenSparseInjector(model, images)
    image = torch.arange(len(images)).repeat(FAULTS_PER_IMAGE)
    engine.run(image, engine.draw(generator, len(image)))
    return len(image) / (time.perf_counter() - started)


def measure(rounds=3):
    """Best of ``rounds`` interleaved rounds for each contender."""
    from sw.analysis.vulnerability import quantized_model, torch_threads
    from sw.inject.neuron import LinearOutputInjector
    from sw.inject.operation import FaultInjector
    from sw.models.datasets import load_dataset
    images = load_dataset("digits").test_images
    best = {}

    def keep(name, rate):
        best[name] = max(best.get(name, 0.0), rate)
    with torch_threads(1):
        model, quantized = quantized_model("vit", "digits")
        model.eval()
        campaign = len(images) * FAULTS_PER_IMAGE
        work = {size: _batches(images, size, campaign // size) for size in BATCHES}
        hooks = LinearOutputInjector(model, images, seed=0)

        def run_hooks(batch):
            hooks.arm(len(batch))
            model(batch)
        # PyTorchFI flips a bit of the value quantized to `bits` over the layer's range; its
        # quantizer overflows at the range's end, so the ranges get 1% of headroom.
        ranges = [1.01 * peak for peak in _linear_ranges(model, images)]
        theirs = {size: _pytorchfi_runner(model, images, ranges, size) for size in BATCHES}
        generator = torch.Generator().manual_seed(0)
        # The int8 model on the twin, faults only in GEMM outputs, about one per image.
        twin_work = _batches(images, 64, 10)
        probe = FaultInjector(1e-5, seed=0, targets=["output"])
        _rate(lambda batch: quantized(batch, probe), twin_work[:2])
        twin = FaultInjector(1e-5 * (2 * len(twin_work[0])) / probe.total_flips(), seed=1,
                             targets=["output"])
        for _ in range(rounds):
            for size in BATCHES:
                keep(("clean", size), _rate(model, work[size]))
                with hooks:
                    keep(("hooks", size), _rate(run_hooks, work[size]))
                keep(("pytorchfi", size), _rate(theirs[size], work[size]))
            keep("token_sparse", _token_sparse_rate(model, images, generator))
            keep("twin", _rate(lambda batch: quantized(batch, twin), twin_work))
        twin_flips = twin.total_flips() / (rounds * sum(map(len, twin_work)))
    pytorchfi = max(best["pytorchfi", size] for size in BATCHES)
    return {"batches": list(BATCHES), "rounds": rounds, "faults_per_image": FAULTS_PER_IMAGE,
            "images": len(images),
            "clean_per_s": [best["clean", size] for size in BATCHES],
            "hooks_per_s": [best["hooks", size] for size in BATCHES],
            "pytorchfi_per_s": [best["pytorchfi", size] for size in BATCHES],
            "token_sparse_per_s": best["token_sparse"],
            "hooks_speedup": max(best["hooks", size] for size in BATCHES) / pytorchfi,
            "token_sparse_speedup": best["token_sparse"] / pytorchfi,
            "twin_per_s": best["twin"], "twin_flips_per_image": twin_flips}


def report(figures):
    def pair(rates):
        return " / ".join(f"{rate:,.0f}" for rate in rates)
    batches = " / ".join(map(str, figures["batches"]))
    campaign = figures["faults_per_image"] * figures["images"]
    return "\n".join([
        "Software fault injection, tiny ViT (float): each contender runs "
        f"{campaign:,} faulty inferences ({figures['faults_per_image']} per test image), one "
        "single-bit flip each in a random Linear output; 1 thread, best of "
        f"{figures['rounds']} interleaved rounds (per second):",
        f"  fault-free inference, batch {batches}:      {pair(figures['clean_per_s'])} images",
        f"  PyTorchFI 0.6.0, batch {batches}:           "
        f"{pair(figures['pytorchfi_per_s'])} faulty inferences",
        f"  ours, hooks (full pass), batch {batches}:   {pair(figures['hooks_per_s'])} "
        f"faulty inferences  ({figures['hooks_speedup']:.1f}x PyTorchFI's best)",
        f"  ours, token-sparse (fault-free pass included):  "
        f"{figures['token_sparse_per_s']:,.0f} faulty inferences  "
        f"({figures['token_sparse_speedup']:.1f}x PyTorchFI's best)",
        f"  int8 ViT on the twin, {figures['twin_flips_per_image']:.2f} accumulator flips per "
        f"image (softerror vit analyze): {figures['twin_per_s']:,.0f} faulty inferences",
    ])


if __name__ == "__main__":
    print(report(measure()))
