"""What several upsets per loaded tile pass would cost in statistical power.

The RTL engine loads a new tile pass for nearly every upset; drawing M upsets per pass
(cluster sampling) would share the load and the golden run among them. Its estimates
would stay unbiased, but upsets of one pass are alike, so M of them are worth fewer than
M independent ones: the design effect ``1 + (M - 1) * icc``, with ``icc`` the intraclass
correlation of an outcome within a pass. This measures ``icc`` on the twin engine's
records (``python -m bench.cluster_sampling``): the independent draws of a campaign fall
several times on the same pass, and the one-way ANOVA estimator compares the spread
within passes with the spread between them.
"""

from collections import defaultdict

import numpy as np
import torch

from hw.config import AcceleratorConfig
from sim.cosim.campaign import CHUNK
from sim.cosim.engine import ModelCampaign, ModelCampaignOptions

__all__ = ["intraclass_correlation", "measure", "report"]

#: The outcomes whose correlation within a pass is measured.
OUTCOMES = {"tile wrong": lambda record: not record.tile_equal,
            "sdc": lambda record: record.outcome == "sdc"}


def intraclass_correlation(groups):
    """One-way ANOVA estimate of the intraclass correlation of 0/1 outcomes (a list of
    lists, one per group; groups of one count towards the mean only)."""
    values = np.concatenate([np.asarray(group, dtype=float) for group in groups])
    total, count = values.mean(), len(values)
    sizes = np.array([len(group) for group in groups])
    means = np.array([np.mean(group) for group in groups])
    between = float((sizes * (means - total) ** 2).sum()) / (len(groups) - 1)
    within = sum(float(((np.asarray(group) - mean) ** 2).sum())
                 for group, mean in zip(groups, means)) / (count - len(groups))
    typical = (count - float((sizes ** 2).sum()) / count) / (len(groups) - 1)
    if between + (typical - 1) * within == 0:
        return 0.0
    return (between - within) / (between + (typical - 1) * within)


def measure(experiments=30_000, images=4, designs=("none", "rowcol")):
    """{design: {outcome: (rate, intraclass correlation)}} of the ViT on digits, 8x8."""
    torch.set_num_threads(1)
    results = {}
    for abft in designs:
        config = AcceleratorConfig(rows=8, cols=8, k_max=256, abft=abft)
        campaign = ModelCampaign.prepare(ModelCampaignOptions(
            config, model="vit", images=images, seed=0, engine="twin"))
        records = []
        for first in range(0, experiments, CHUNK):
            records += campaign.run_twin(range(first, min(first + CHUNK, experiments)))
        results[config.label] = {}
        for name, outcome in OUTCOMES.items():
            groups = defaultdict(list)
            for record in records:
                groups[record.image, record.pass_index].append(outcome(record))
            rate = float(np.mean([outcome(record) for record in records]))
            results[config.label][name] = (rate, intraclass_correlation(list(groups.values())))
    return results


def report(results, cluster=8):
    lines = [f"Upsets per tile pass: intraclass correlation within a pass, and the design "
             f"effect of {cluster} upsets per pass (twin engine, ViT on digits):"]
    for design, outcomes in results.items():
        for name, (rate, icc) in outcomes.items():
            lines.append(f"  {design:>16} {name:>10}: rate {rate:.4f}, icc {icc:+.3f}, "
                         f"design effect {1 + (cluster - 1) * icc:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(measure()))
