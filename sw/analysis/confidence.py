"""Confidence intervals of measured rates, shared by the analyses and the RTL campaigns."""

import math

__all__ = ["wilson_interval", "Z_95"]

#: Normal quantile for 95% two-sided confidence.
Z_95 = 1.959963984540054


def wilson_interval(successes, trials, z=Z_95):
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
