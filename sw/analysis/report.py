"""Plots and a markdown report of the ViT-versus-CNN vulnerability analysis.

Takes what :func:`sw.analysis.vulnerability.analyze` returns (one result per granularity, for each
model) and draws, side by side for the ViT and the CNN: accuracy against bit error rate per
module kind, SDC rate per layer, and the SDC rate of each patch on the image's patch grid.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

__all__ = ["write_plots", "write_report", "PLOT_FILES"]

#: File names of the plots, by granularity.
PLOT_FILES = {"module": "accuracy_vs_ber.png", "layer": "layer_vulnerability.png",
              "patch": "patch_heatmap.png"}


def _by_granularity(results):
    results = [results] if isinstance(results, dict) else list(results or [])
    return {result["granularity"]: result for result in results}


def _series(result):
    """{unit: [(ber, entry), ...]} in the order the units were analysed."""
    series = {}
    for entry in result["results"]:
        series.setdefault(entry["unit"], []).append((entry["ber"], entry))
    return series


def _reference_ber(result):
    """The largest rate analysed: where differences between units are clearest."""
    return max(result["bers"])


def _plot_modules(axis, result, model_result):
    axis.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])
    for unit, points in _series(result).items():
        axis.plot([ber for ber, _ in points], [entry["accuracy"] for _, entry in points],
                  marker="o", label=str(unit))
    if model_result is not None:
        points = _series(model_result)["model"]
        axis.plot([ber for ber, _ in points], [entry["accuracy"] for _, entry in points],
                  "k--", linewidth=2, label="whole model")
    axis.set_xscale("log")
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("bit error rate")
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=7, ncol=2)


def _plot_layers(axis, result):
    series = _series(result)
    layers = list(series)
    bers = result["bers"]
    width = 0.8 / len(bers)
    for index, ber in enumerate(bers):
        entries = [dict(series[layer])[ber] for layer in layers]
        rates = [entry["sdc_rate"] for entry in entries]
        errors = [[rate - entry["sdc_ci"][0] for rate, entry in zip(rates, entries)],
                  [entry["sdc_ci"][1] - rate for rate, entry in zip(rates, entries)]]
        axis.bar([position + (index - (len(bers) - 1) / 2) * width
                  for position in range(len(layers))], rates, width, yerr=errors,
                 capsize=2, label=f"BER {ber:g}")
    axis.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    axis.set_xlabel("layer")
    axis.set_ylabel("SDC rate")
    axis.legend(fontsize=7)


def _plot_patches(axis, figure, result):
    ber = _reference_ber(result)
    grid = result["grid_size"]
    rates = {entry["unit"]: entry["sdc_rate"] for entry in result["results"]
             if entry["ber"] == ber}
    image = [[rates.get(1 + row * grid + column, float("nan")) for column in range(grid)]
             for row in range(grid)]
    shown = axis.imshow(image, cmap="magma", vmin=0)
    figure.colorbar(shown, ax=axis, label="SDC rate")
    if grid <= 8:
        for row in range(grid):
            for column in range(grid):
                axis.text(column, row, f"{image[row][column]:.3f}", ha="center",
                          va="center", color="cyan", fontsize=7)
    title = f"BER {ber:g}"
    if 0 in rates:
        title += f"; class token {rates[0]:.3f}"
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def write_plots(results_vit, results_cnn, out_dir):
    """Write the comparison PNGs into ``out_dir``; returns their paths.

    ``results_vit`` and ``results_cnn`` are results of :func:`sw.analysis.vulnerability.analyze` (one, or
    a list with one per granularity); a plot is drawn for each granularity present.
    """
    os.makedirs(out_dir, exist_ok=True)
    models = (("ViT", _by_granularity(results_vit)), ("CNN", _by_granularity(results_cnn)))
    paths = []
    for granularity, file_name in PLOT_FILES.items():
        present = [(name, results) for name, results in models if granularity in results]
        if not present:
            continue
        figure, axes = plt.subplots(1, len(present), figsize=(6 * len(present), 4.5),
                                    squeeze=False)
        for axis, (name, results) in zip(axes[0], present):
            result = results[granularity]
            if granularity == "module":
                _plot_modules(axis, result, results.get("model"))
            elif granularity == "layer":
                _plot_layers(axis, result)
            else:
                _plot_patches(axis, figure, result)
            axis.set_title(f"{name} ({result['dataset']}): {axis.get_title()}".rstrip(": "),
                           fontsize=10)
        figure.tight_layout()
        path = os.path.join(out_dir, file_name)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def _percent(value):
    return f"{100 * value:.1f}%"


def _table(lines, name, result):
    ber = _reference_ber(result)
    lines += [f"**{name}, {result['granularity']}** (BER {ber:g}, {result['trials']} passes "
              f"over the test set):", "",
              "| unit | accuracy | SDC rate | 95% CI | flips/inference |", "|---|---|---|---|---|"]
    for entry in result["results"]:
        if entry["ber"] == ber:
            low, high = entry["sdc_ci"]
            lines.append(f"| {entry['unit']} | {_percent(entry['accuracy'])} | "
                         f"{_percent(entry['sdc_rate'])} | [{_percent(low)}, {_percent(high)}] "
                         f"| {entry['flips_per_inference']:.2f} |")
    lines.append("")


def write_report(out_dir, results_vit, results_cnn, evaluations=None):
    """Write ``report.md`` (and the plots it embeds) into ``out_dir``; returns its path.

    ``evaluations`` is an optional list of :func:`sw.analysis.vulnerability.evaluate` results.
    """
    paths = write_plots(results_vit, results_cnn, out_dir)
    lines = ["# Soft-error vulnerability: ViT versus CNN", "",
             "Single-bit flips at the operation level (GEMM operands, products, partial "
             "sums, accumulators, and the float intermediates of the nonlinear operations), "
             "each bit flipping with probability BER. SDC: the top-1 class differs from the "
             "fault-free int8 model's.", ""]
    if evaluations:
        lines += ["| model | data set | float accuracy | int8 accuracy |", "|---|---|---|---|"]
        lines += [f"| {e['model']} | {e['dataset']} | {_percent(e['float_accuracy'])} | "
                  f"{_percent(e['int8_accuracy'])} |" for e in evaluations]
        lines.append("")
    for path in paths:
        lines += [f"![{os.path.basename(path)}]({os.path.basename(path)})", ""]
    for name, results in (("ViT", _by_granularity(results_vit)),
                          ("CNN", _by_granularity(results_cnn))):
        for granularity in ("model", "layer", "module"):
            if granularity in results:
                _table(lines, name, results[granularity])
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as stream:
        stream.write("\n".join(lines))
    return path
