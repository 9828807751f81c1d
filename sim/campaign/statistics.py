"""Statistics of fault-injection campaigns: confidence intervals and sample sizes."""

import math

from sw.analysis.confidence import Z_95, wilson_interval

__all__ = ["wilson_interval", "leveugle_sample_size", "margin_of_error", "Z_95"]


def leveugle_sample_size(population, margin, z=Z_95, p=0.5):
    """Injections needed for ``margin`` at confidence ``z`` (Leveugle et al., DATE 2009).

    n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p))), the finite-population sample size for a
    proportion, with p = 0.5 the worst case when nothing is known in advance.
    """
    if population < 1:
        return 0
    n = population / (1 + margin * margin * (population - 1) / (z * z * p * (1 - p)))
    return math.ceil(n)


def margin_of_error(samples, population, z=Z_95, p=0.5):
    """The margin ``samples`` injections give, inverting the formula above."""
    if samples < 1:
        return 1.0
    if samples >= population:
        return 0.0
    return z * math.sqrt(p * (1 - p) / samples * (population - samples) / (population - 1))
