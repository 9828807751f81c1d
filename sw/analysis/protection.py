"""How much LB-ABFT and range protection buy the int8 ViT and CNN, and at what cost.

:func:`evaluate_protection` runs the shipped int8 model on the whole test set under the
fault injector of :mod:`sw.inject.operation` (the paper's operation-level model, every
target, the whole model), once per protection of :data:`sw.protect.policy.PROTECTIONS`, and
counts accuracy and silent data corruptions (top-1 differs from the fault-free,
unprotected int8 prediction) with 95% Wilson intervals (:func:`sw.analysis.vulnerability.wilson_interval`).
Every protection sees the very same faults: per bit error rate one seed, whatever the
protection (the protections call the injector exactly as the bare model does, and
recompute without it). Range bounds are profiled on the clean training images.

:func:`protection_goal` answers the question of the issue: at the lowest rate where the
unprotected ViT loses at least 20 points, does ``abft+range`` stay within 1 point of its
fault-free accuracy, for less than 5% of the model's MACs in checks?
:func:`write_protection_plot` draws accuracy against rate, one curve per protection, the
ViT and the CNN side by side.
"""

import zlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from sw.analysis.vulnerability import (
    check_fault_budget,
    check_options,
    faulty_passes,
    predict,
    progress_bar,
    quantized_model,
    torch_threads,  # noqa: E402
)
from sw.inject.operation import FaultInjector  # noqa: E402
from sw.models.datasets import check_dataset_name, load_dataset  # noqa: E402
from sw.models.training import check_model_name  # noqa: E402
from sw.protect.policy import (
    PROTECTIONS,
    check_protection_name,
    protect,
    protection_summary,  # noqa: E402
)
from sw.protect.range_protection import profile_bounds  # noqa: E402

__all__ = ["PROTECTION_BERS", "evaluate_protection", "protection_goal",
           "write_protection_plot"]

#: Bit error rates of the default sweep: from harmless to ruinous for the unprotected ViT.
PROTECTION_BERS = (1e-7, 3e-7, 1e-6, 3e-6, 1e-5)


def _seed(seed, ber):
    """One generator seed per rate, the same for every protection (paired comparison)."""
    return zlib.crc32(f"{seed}/protection/{ber!r}".encode())


def _run(quantized, images, batch_size, datapath):
    predicted = predict(quantized, images, batch_size, datapath)
    return predicted, protection_summary(datapath)


def _block_sizes(summary):
    sizes = {}
    for kind, parts in summary["by_kind"].items():
        if "abft" in parts:
            plans = parts["abft"]["plans"]
            sizes[kind] = plans[0] if len(plans) == 1 else plans
    return sizes


def evaluate_protection(model="vit", dataset="digits", protections=PROTECTIONS,
                        bers=PROTECTION_BERS, trials=3, seed=0, *, batch_size=512,
                        abft_options=None, range_options=None, targets=None, audit=True,
                        checkpoint_dir=None, threads=1, progress=False):
    """Accuracy and SDC rate of the int8 ``model`` under each protection and bit error rate.

    Parameters
    ----------
    model, dataset : str
        Which shipped checkpoint ("vit" or "cnn"; "digits" or "mnist5k").
    protections : sequence of str
        Among :data:`sw.protect.policy.PROTECTIONS`.
    bers : sequence of float
        Bit error rates of the fault injector.
    trials : int
        Passes over the whole test set per protection and rate, each with fresh faults.
    seed : int
        Seeds the injectors; the same seed gives the same result.
    abft_options, range_options : dict, optional
        Options of :class:`sw.protect.block_abft.BlockABFT` and
        :class:`sw.protect.range_protection.RangeProtection`; range checks default to the ``lean``
        stage set.
    targets : iterable of str, optional
        Representations the injector hits (all by default).
    audit : bool
        Count false alarms and missed blocks (costs one fault-free GEMM per GEMM).
    progress : bool
        Show a progress bar of the passes over the test set on stderr.

    Returns
    -------
    dict
        ``model``, ``dataset``, ``clean_accuracy`` (int8, unprotected, fault-free),
        ``bers``, ``trials``, ``seed``, ``protections``, ``fault_free``
        {protection: {accuracy, false_alarms, clamped, agrees}}, ``overhead``
        {protection: percent of the model's MACs in check operations},
        ``overhead_detail`` {protection: summary of the fault-free run},
        ``block_sizes`` {GEMM kind: plan}, and ``results``: one dict per (protection, ber)
        with ``protection``, ``ber``, ``accuracy``, ``sdc_rate``, ``sdc_ci``,
        ``sdc_count``, ``inferences``, ``flips_per_inference``, ``detections``,
        ``recomputed_blocks``, ``recompute_percent``, ``wrong_blocks``,
        ``false_alarms``, ``missed``, ``clamped``, ``nonfinite``, ``recomputed_rows``.

    Raises
    ------
    TypeError
        For an unknown model, data set or protection, or a sweep option out of its range.
    sw.inject.bit_flips.TooManyFlips
        A ``ValueError``, for a rate of ``bers`` whose flips would not fit in memory.
    """
    check_model_name(model)
    check_dataset_name(dataset)
    if isinstance(protections, str) or not protections:
        raise TypeError(f"protections must be a non-empty sequence of protection names, "
                        f"not {protections!r}")
    for protection in protections:
        check_protection_name(protection)
    check_options(bers, trials, seed, batch_size)
    abft_options = dict(abft_options or {}, audit=audit)
    range_options = dict({"stages": "lean"}, **(range_options or {}))
    with torch_threads(threads):
        check_fault_budget(model, dataset, bers, targets=targets, batch_size=batch_size,
                           checkpoint_dir=checkpoint_dir)
        _, quantized = quantized_model(model, dataset, checkpoint_dir)
        split = load_dataset(dataset)
        images, labels = split.test_images, split.test_labels
        bounds = profile_bounds(quantized, split.train_images, batch_size=batch_size)

        def datapath(protection, inner=None):
            return protect(protection, inner, bounds=bounds, abft_options=abft_options,
                           range_options=range_options)

        clean = predict(quantized, images, batch_size)
        bar = progress_bar(progress, len(protections) * (1 + len(bers) * trials),
                           f"{model} protections")
        fault_free, overhead, detail, block_sizes = {}, {}, {}, {}
        for protection in protections:
            predicted, summary = _run(quantized, images, batch_size, datapath(protection))
            bar.update()
            fault_free[protection] = {
                "accuracy": int((predicted == labels).sum()) / len(labels),
                "agrees": bool((predicted == clean).all()),
                "false_alarms": summary["detections"], "clamped": summary["clamped"],
                "recomputed_rows": summary["recomputed_rows"]}
            overhead[protection] = summary["overhead_percent"]
            detail[protection] = {key: value for key, value in summary.items()
                                  if key != "by_kind"}
            detail[protection]["by_kind"] = {
                kind: {part: {name: value for name, value in stats.items() if name != "plans"}
                       for part, stats in parts.items()}
                for kind, parts in summary["by_kind"].items()}
            block_sizes.update(_block_sizes(summary))
        results = []
        for protection in protections:
            for ber in bers:
                injector = FaultInjector(float(ber), seed=_seed(seed, ber), targets=targets)
                protected = datapath(protection, injector)
                passes = faulty_passes(quantized, images, labels, clean, trials, batch_size,
                                       injector, protected, bar)
                summary = protection_summary(protected)
                results.append({
                    "protection": protection, **passes,
                    "recompute_percent": (100.0 * summary["recompute_macs"] / summary["macs"]
                                          if summary["macs"] else 0.0),
                    **{name: summary[name] for name in (
                        "detections", "recomputed_blocks", "wrong_blocks", "false_alarms",
                        "missed", "clamped", "nonfinite", "recomputed_rows")}})
        bar.close()
    return {"model": model, "dataset": dataset,
            "clean_accuracy": int((clean == labels).sum()) / len(labels),
            "bers": [float(ber) for ber in bers], "trials": trials, "seed": seed,
            "protections": list(protections), "fault_free": fault_free, "overhead": overhead,
            "overhead_detail": detail, "block_sizes": block_sizes, "results": results}


def _accuracy(result, protection, ber):
    for entry in result["results"]:
        if entry["protection"] == protection and entry["ber"] == ber:
            return entry["accuracy"]
    return None


def protection_goal(result, drop=0.20, tolerance=0.01, budget_percent=5.0,
                    protection="abft+range"):
    """The issue's goal, checked on a result of :func:`evaluate_protection`.

    Finds the lowest rate of the sweep where the unprotected model's accuracy is at least
    ``drop`` below its fault-free accuracy, then whether ``protection`` stays within
    ``tolerance`` of its own fault-free accuracy there and costs less than
    ``budget_percent`` of the model's MACs in checks.

    Raises
    ------
    ValueError
        If ``result`` lacks the ``none`` or the ``protection`` runs.
    """
    for needed in ("none", protection):
        if needed not in result["protections"]:
            raise ValueError(f"protection_goal needs the {needed!r} runs, not only "
                             f"{result['protections']!r}")
    reference = result["fault_free"]["none"]["accuracy"]
    ber = next((ber for ber in sorted(result["bers"])
                if reference - _accuracy(result, "none", ber) >= drop), None)
    goal = {"model": result["model"], "protection": protection, "drop": drop,
            "tolerance": tolerance, "budget_percent": budget_percent, "ber": ber,
            "overhead_percent": result["overhead"][protection],
            "under_budget": result["overhead"][protection] < budget_percent}
    if ber is None:
        goal.update(reached=None, unprotected_accuracy=None, protected_accuracy=None,
                    fault_free_accuracy=result["fault_free"][protection]["accuracy"],
                    within_tolerance=None)
        return goal
    fault_free = result["fault_free"][protection]["accuracy"]
    protected = _accuracy(result, protection, ber)
    goal.update(unprotected_accuracy=_accuracy(result, "none", ber),
                protected_accuracy=protected, fault_free_accuracy=fault_free,
                within_tolerance=fault_free - protected <= tolerance)
    goal["reached"] = goal["within_tolerance"] and goal["under_budget"]
    return goal


def write_protection_plot(results, path):
    """Accuracy against bit error rate, one curve per protection, one panel per model.

    ``results`` is one :func:`evaluate_protection` result or a list of them (e.g. the ViT
    and the CNN); the PNG goes to ``path``, which is returned.
    """
    results = [results] if isinstance(results, dict) else list(results)
    if not results:
        raise TypeError("results must hold at least one evaluate_protection result")
    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5),
                                squeeze=False)
    for axis, result in zip(axes[0], results):
        for protection in result["protections"]:
            points = [(entry["ber"], entry["accuracy"]) for entry in result["results"]
                      if entry["protection"] == protection]
            overhead = result["overhead"][protection]
            axis.plot([ber for ber, _ in points], [accuracy for _, accuracy in points],
                      marker="o", label=f"{protection} ({overhead:.3f}% ops)")
        axis.axhline(result["clean_accuracy"], color="grey", linestyle=":",
                     label="fault-free int8")
        axis.set_xscale("log")
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("bit error rate")
        axis.set_ylabel("test accuracy")
        axis.set_title(f"{result['model'].upper()} on {result['dataset']}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
