"""Vulnerability analysis of the int8 ViT and CNN under software fault injection.

:func:`analyze` runs the quantized model on the whole test set ``trials`` times per unit
and bit error rate, each time with a fresh, seeded :class:`sw.fault_injection.FaultInjector`
restricted to the unit (the whole model, one layer, one module kind, one token), and
counts silent data corruptions: images whose top-1 class differs from the fault-free int8
prediction. Rates come with 95% Wilson score intervals. :func:`write_plots` and
:func:`write_report` (from :mod:`sw.analysis_report`) turn the results into plots and a
markdown report.
"""

import functools
import time
import zlib

import torch

from sw.analysis_report import write_plots, write_report
from sw.confidence import Z_95, wilson_interval
from sw.datasets import check_dataset_name, load_dataset
from sw.fault_injection import FaultInjector
from sw.parameter_checks import check_integer, check_positive_integer, check_probability
from sw.quantization import quantize
from sw.training import accuracy, check_model_name, load_model, torch_threads

__all__ = ["GRANULARITIES", "DEFAULT_BERS", "Z_95", "wilson_interval", "evaluate",
           "analysis_units", "analyze", "quantized_model", "write_plots",
           "write_report", "check_options", "predict"]

GRANULARITIES = ("model", "layer", "module", "patch")
#: Bit error rates of the default sweep: from nearly harmless to ruinous for both models.
DEFAULT_BERS = (1e-8, 1e-7, 1e-6, 1e-5)
#: Training images used to calibrate the activation scales.
CALIBRATION_IMAGES = 512


@functools.lru_cache(maxsize=8)
def quantized_model(model, dataset, checkpoint_dir=None):
    """(float model, int8 model) of the shipped checkpoint, calibrated on training images."""
    check_model_name(model)
    check_dataset_name(dataset)
    network = load_model(model, dataset, checkpoint_dir)
    split = load_dataset(dataset)
    return network, quantize(network, split.train_images[:CALIBRATION_IMAGES])


def evaluate(model="vit", dataset="digits", checkpoint_dir=None, threads=1):
    """Test accuracy of the trained float model and of its int8 twin."""
    with torch_threads(threads):
        network, quantized = quantized_model(model, dataset, checkpoint_dir)
        split = load_dataset(dataset)
        return {"model": model, "dataset": dataset,
                "float_accuracy": accuracy(network, split.test_images, split.test_labels),
                "int8_accuracy": accuracy(quantized, split.test_images, split.test_labels)}


def analysis_units(quantized, granularity):
    """The units of ``granularity`` for a quantized model: (label, injector selection) pairs.

    ``model``: the whole network; ``layer``: each encoder block (ViT) or stage (CNN, the
    classifier being the last); ``module``: each module kind, in execution order;
    ``patch``: each token that owns computations (the ViT's class token is 0).
    """
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(map(repr, GRANULARITIES))}, "
                         f"not {granularity!r}")
    sites = quantized.sites
    if granularity == "model":
        return [("model", {})]
    if granularity == "layer":
        layers = sorted({site.layer for site in sites if site.layer is not None})
        return [(layer, {"layer": layer}) for layer in layers]
    if granularity == "module":
        kinds = list(dict.fromkeys(site.kind for site in sites))
        return [(kind, {"kind": kind}) for kind in kinds]
    tokens = sorted({token for site in sites if site.row_tokens for token in site.row_tokens})
    return [(token, {"token": token}) for token in tokens]


def check_options(bers, trials, seed, batch_size):
    """Raise ``TypeError`` naming the first bad sweep option and its value."""
    if isinstance(bers, (int, float)) or not bers:
        raise TypeError(f"bers must be a non-empty sequence of bit error rates, not {bers!r}")
    for ber in bers:
        check_probability("each of bers", ber)
    for name, value in (("trials", trials), ("batch_size", batch_size)):
        check_positive_integer(name, value)
    check_integer("seed", seed)


def _unit_seed(seed, granularity, unit, ber):
    """A generator seed for one (unit, rate) that does not depend on the rest of the sweep."""
    return zlib.crc32(f"{seed}/{granularity}/{unit}/{ber!r}".encode())


def predict(quantized, images, batch_size, datapath=None):
    """Top-1 classes of ``images`` through ``quantized`` (on ``datapath``), batch by batch."""
    return torch.cat([quantized(images[start:start + batch_size], datapath).argmax(-1)
                      for start in range(0, len(images), batch_size)])


def faulty_passes(quantized, images, labels, clean, trials, batch_size, injector,
                  datapath=None):
    """``trials`` passes over the test set with ``injector``'s faults (through ``datapath``,
    by default the injector itself): accuracy, SDC rate and its interval."""
    correct = sdc = 0
    for _ in range(trials):
        predicted = predict(quantized, images, batch_size,
                            injector if datapath is None else datapath)
        correct += int((predicted == labels).sum())
        sdc += int((predicted != clean).sum())
    count = trials * len(images)
    low, high = wilson_interval(sdc, count)
    return {"ber": injector.bit_error_rate, "accuracy": correct / count,
            "sdc_rate": sdc / count, "sdc_ci": [low, high], "sdc_count": sdc,
            "inferences": count, "trials": trials,
            "flips_per_inference": injector.total_flips() / count}


def analyze(model="vit", dataset="digits", granularity="module", bers=DEFAULT_BERS, trials=3,
            seed=0, *, batch_size=512, targets=None, checkpoint_dir=None, threads=1):
    """Accuracy and SDC rate of the int8 ``model`` per unit of ``granularity`` and per BER.

    Parameters
    ----------
    model, dataset : str
        Which shipped checkpoint ("vit" or "cnn"; "digits" or "mnist5k").
    granularity : str
        "model", "layer", "module" or "patch" (see :func:`analysis_units`).
    bers : sequence of float
        Bit error rates.
    trials : int
        Passes over the whole test set per unit and rate, each with fresh faults.
    seed : int
        Seeds every injector; the same seed gives the same result.
    targets : iterable of str, optional
        Representations to hit (see :data:`sw.fault_injection.TARGETS`).
    threads : int
        torch threads while it runs (one is fastest for these small tensors).

    Returns
    -------
    dict
        ``model``, ``dataset``, ``granularity``, ``float_accuracy``, ``clean_accuracy``
        (int8, fault-free), ``bers``, ``trials``, ``seed``, ``grid_size``,
        ``inferences_per_second`` and ``results``: one dict per (unit, ber) with ``unit``,
        ``ber``, ``accuracy``, ``sdc_rate``, ``sdc_ci`` [lo, hi], ``sdc_count``,
        ``inferences``, ``trials`` and ``flips_per_inference``.
    """
    check_model_name(model)
    check_dataset_name(dataset)
    check_options(bers, trials, seed, batch_size)
    chosen_targets = sorted(FaultInjector(0.0, targets=targets).targets)
    with torch_threads(threads):
        network, quantized = quantized_model(model, dataset, checkpoint_dir)
        units = analysis_units(quantized, granularity)
        split = load_dataset(dataset)
        images, labels = split.test_images, split.test_labels
        started = time.perf_counter()
        clean = predict(quantized, images, batch_size)
        results, inferences = [], 0
        for unit, selection in units:
            for ber in bers:
                injector = FaultInjector(float(ber), targets=targets,
                                         seed=_unit_seed(seed, granularity, unit, ber),
                                         **selection)
                results.append({"unit": unit, **faulty_passes(
                    quantized, images, labels, clean, trials, batch_size, injector)})
                inferences += trials * len(images)
        seconds = time.perf_counter() - started
        float_accuracy = accuracy(network, images, labels)
    return {"model": model, "dataset": dataset, "granularity": granularity,
            "float_accuracy": float_accuracy,
            "clean_accuracy": int((clean == labels).sum()) / len(labels),
            "bers": [float(ber) for ber in bers], "trials": trials, "seed": seed,
            "targets": chosen_targets, "grid_size": quantized.grid_size,
            "seconds": seconds, "inferences_per_second": inferences / seconds,
            "results": results}

