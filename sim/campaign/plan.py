"""The experiments of a campaign: which bit of which register, at which cycle.

Experiment ``i`` of a campaign is a pure function of the campaign seed and ``i`` (a
SplitMix64 hash, vectorised with numpy), so any subset can be regenerated in any order:
a resumed, re-batched or extended campaign runs exactly the experiments an uninterrupted
one runs. Sampling is uniform over (site bit, workload cycle); the workload's cycles are
the tiles' injection windows laid end to end.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["ExperimentPlan", "random_plan", "exhaustive_plan"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values):
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(seed, indices, stream, bound):
    """Integers in [0, bound) for each index, independent across streams (bias < 2**-40)."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed) * np.uint64(4) + np.uint64(stream))
        return (_splitmix64(indices.astype(np.uint64) ^ key) % np.uint64(bound)).astype(np.int64)


@dataclass(frozen=True)
class ExperimentPlan:
    """Parallel arrays: experiment index, site (index into the selected sites), bit, cycle."""
    experiment: np.ndarray
    site: np.ndarray
    bit: np.ndarray
    cycle: np.ndarray

    def __len__(self):
        return len(self.experiment)

    def select(self, mask):
        return ExperimentPlan(self.experiment[mask], self.site[mask], self.bit[mask],
                              self.cycle[mask])


def _site_bits(widths, flat_bits):
    """Map flat bit numbers over the concatenated sites to (site, bit)."""
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    site = np.searchsorted(starts, flat_bits, side="right") - 1
    return site, flat_bits - starts[site]


def random_plan(seed, widths, cycles, indices):
    """Experiments ``indices`` of a campaign sampling uniformly over bits x cycles."""
    widths = np.asarray(widths, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    flat = _uniform(seed, indices, 0, int(widths.sum()))
    site, bit = _site_bits(widths, flat)
    return ExperimentPlan(indices, site, bit, _uniform(seed, indices, 1, cycles))


def exhaustive_plan(widths, cycle, indices):
    """Experiment ``i`` flips flat bit ``i`` of the selected sites, all at ``cycle``."""
    indices = np.asarray(indices, dtype=np.int64)
    site, bit = _site_bits(np.asarray(widths, dtype=np.int64), indices)
    return ExperimentPlan(indices, site, bit, np.full(len(indices), cycle, dtype=np.int64))
