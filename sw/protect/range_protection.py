"""Range-based protection of the nonlinear operations, as a :class:`sw.datapath.Datapath`.

Ranger's idea (Chen et al., DSN 2021) applied at the quantized models' hooks: bounds are
profiled on clean training images for every intermediate value that softmax, GELU,
LayerNorm, ReLU and pooling expose (:data:`sw.datapath.NONLINEAR_STAGES`), and optionally
for every GEMM's int32 output; at run time :class:`RangeProtection` checks each value
against its bounds and replaces the ones outside them, and counts them.

Bounds. :func:`profile_bounds` records the smallest and largest finite value of each
(site, stage). The protection widens them by ``margin`` times their span on both sides
(0.1 by default: test images stray a little beyond the training images), then intersects
them with what the mathematics allows, whatever the data: softmax exponentials and
quotients lie in [0, 1] and the sum of a row's exponentials is at least 1 (its largest
term is exp(0)); a variance is at least 0; GELU is at least -0.17 (its minimum is
-0.16997); ReLU and max pooling of ReLU outputs are at least 0. GEMM bounds are rounded
outwards to integers.

Replacement (``policy``): ``clamp`` replaces a value below the lower bound by the lower
bound and one above the upper bound by the upper bound (Ranger's policy, the hardware
range checker's default mode); ``zero`` replaces either by 0 (the checker's other mode).
NaN is out of range (it compares false with both bounds); it has no side, so ``clamp``
replaces it by 0 brought into the bounds (0 itself when the bounds contain it, which they
do for every stage but the softmax sum, where it becomes 1): zero is the neutral value of
an activation, a probability and a normalised output. +-Inf are clamped to the bound on
their side.

Integer units. On the ViT with integer nonlinear units (``nonlinear="int"``) the checked
values are the units' registers (:data:`sw.datapath.INTEGER_NONLINEAR_STAGES`, int64):
their profiled bounds are widened by the same margin, rounded outwards to integers and
kept within the register's range; the float limits above do not apply to them (a GELU
output code is not a GELU output), nor do the softmax invariants below, which are those of
the float stages (the integer units' own checkers, :mod:`sw.twin.nonlinear`, are the
hardware's invariants).

Softmax invariants (``softmax="recompute"``, the default): beyond the ranges, every row of
exponentials must have its largest value exactly 1 (the exponential of the row maximum
minus itself), and every row of quotients must sum to 1 within ``tolerance``. A row that
breaks an invariant, or had a value out of range in its exponentials, sum or quotients, is
recomputed from the softmax input saved at stage ``input`` (after its own range check).
``softmax="clamp"`` only clamps.

What is counted as check operations: two comparisons per checked value (lower and upper
bound); for the softmax invariants, per row of ``n`` values, ``n`` for the maximum of the
exponentials (``n - 1`` comparisons and one equality), ``n`` for the row sum of the
quotients (``n - 1`` additions and the subtraction of 1) and 2 comparisons with the
tolerance. Recomputed rows are counted apart. The model's MACs are counted from the GEMMs
that pass through.
"""

import math
from dataclasses import asdict, dataclass

import torch

from hw.config import INT32_MAX, INT32_MIN
from sw.datapath import INTEGER_NONLINEAR_STAGES, NONLINEAR_STAGES, Datapath
from sw.parameter_checks import check_positive_integer
from sw.twin.gemm import gemm_int8

__all__ = ["RANGE_POLICIES", "SOFTMAX_POLICIES", "NATURAL_LIMITS", "GELU_MINIMUM",
           "STAGE_SETS", "LEAN_STAGES",
           "DEFAULT_MARGIN", "DEFAULT_TOLERANCE", "profile_bounds", "RangeStats",
           "RangeProtection"]

RANGE_POLICIES = ("clamp", "zero")
SOFTMAX_POLICIES = ("recompute", "clamp")
#: Lower bound of GELU(x) = x Phi(x), rounded down (its minimum is -0.169971 at x = -0.752).
GELU_MINIMUM = -0.17
#: What the mathematics allows at each (kind, stage), whatever the data.
NATURAL_LIMITS = {
    ("softmax", "exp"): (0.0, 1.0),
    ("softmax", "sum"): (1.0, math.inf),
    ("softmax", "quotient"): (0.0, 1.0),
    ("layernorm", "var"): (0.0, math.inf),
    ("gelu", "output"): (GELU_MINIMUM, math.inf),
    ("relu", "output"): (0.0, math.inf),
    ("pool", "output"): (0.0, math.inf),
}
DEFAULT_MARGIN = 0.1
#: The stages worth checking: those whose corruption no later operation absorbs. Values
#: that feed a GEMM (LayerNorm and GELU outputs, softmax quotients, ReLU and pooling
#: outputs) pass the activation quantizer, which already saturates them to the calibrated
#: range and turns NaN into 0; a corrupted LayerNorm input, mean or variance spoils its
#: whole row, a corrupted softmax sum its whole row of probabilities. Measured on the digits
#: ViT, nonlinear faults only, BER 1e-3, 3 seeds: SDCs 101/89/84 unprotected, 31/36/35 with
#: these stages and the softmax invariants (1.35% of the MACs), 30/36/35 with every stage
#: (4.9%). On the integer units the same quantities are checked (the LayerNorm's sum of
#: squares is its ``variance`` register); there they buy little (same test: 129/129/121
#: unprotected, 126/127/115 lean at 0.96%, 112/116/108 full at 11%; docs/software-protection.md).
LEAN_STAGES = frozenset({("layernorm", "input"), ("layernorm", "mean"), ("layernorm", "var"),
                         ("layernorm", "variance"), ("softmax", "sum")})
#: Named sets of checked stages (``None``: every profiled stage).
STAGE_SETS = {"full": None, "lean": LEAN_STAGES}
#: Largest |row sum - 1| of softmax quotients accepted: far above float32 rounding for rows
#: of up to 10^4 values, far below the int8 step of the probabilities (1/127 of their max).
DEFAULT_TOLERANCE = 1e-3
#: Stage under which GEMM outputs are profiled and checked.
GEMM_STAGE = "output"


class _Profiler(Datapath):
    """Fault-free datapath that records each (site, stage)'s finite minimum and maximum."""

    def __init__(self, gemm_outputs):
        self.gemm_outputs = gemm_outputs
        self.bounds = {}

    def _record(self, key, values):
        finite = values[torch.isfinite(values)] if values.is_floating_point() else values
        if finite.numel() == 0:
            return
        low, high = finite.min().item(), finite.max().item()
        if key in self.bounds:
            low, high = min(low, self.bounds[key][0]), max(high, self.bounds[key][1])
        self.bounds[key] = (low, high)

    def gemm(self, site, a, b):
        result = gemm_int8(a, b)
        if self.gemm_outputs:
            self._record((site.name, GEMM_STAGE), result)
        return result

    def nonlinear(self, site, stage, values):
        self._record((site.name, stage), values)
        return values


@torch.no_grad()
def profile_bounds(quantized, images, *, batch_size=512, gemm_outputs=True):
    """Smallest and largest value of every (site name, stage) over clean ``images``.

    Parameters
    ----------
    quantized : QuantizedViT or QuantizedCNN
        The int8 model, run fault-free.
    images : torch.Tensor
        Clean images (the training images).
    gemm_outputs : bool
        Also profile every GEMM's int32 output, under the stage ``"output"``.

    Returns
    -------
    dict
        ``{(site name, stage): (low, high)}``, raw (no margin).
    """
    check_positive_integer("batch_size", batch_size)
    profiler = _Profiler(bool(gemm_outputs))
    for start in range(0, len(images), batch_size):
        quantized(images[start:start + batch_size], profiler)
    return profiler.bounds


@dataclass
class RangeStats:
    """Counters of one site kind."""
    values_checked: int = 0
    clamped: int = 0
    nonfinite: int = 0
    rows_checked: int = 0
    recomputed_rows: int = 0
    check_ops: int = 0
    macs: int = 0

    def add(self, other):
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self):
        return asdict(self)


def _replace(values, low, high, policy):
    """(values with the out-of-range ones replaced, mask of those out of range)."""
    outside = ~((values >= low) & (values <= high))
    if not bool(outside.any()):
        return values, outside
    if policy == "zero":
        replacement = torch.zeros_like(values)
    else:
        neutral = min(max(0, low), high)
        replacement = torch.where(values < low, torch.full_like(values, low),
                                  torch.where(values > high, torch.full_like(values, high),
                                              torch.full_like(values, neutral)))
    return torch.where(outside, replacement, values), outside


def _softmax_rows(scores):
    """The rows' softmax, by the very formula of :func:`sw.models.quantized_vit.softmax`."""
    exp = torch.exp(scores - scores.amax(-1, keepdim=True))
    return exp / exp.sum(-1, keepdim=True)


class RangeProtection(Datapath):
    """Check nonlinear values (and optionally GEMM outputs) against profiled bounds.

    Parameters
    ----------
    bounds : dict
        ``{(site name, stage): (low, high)}`` from :func:`profile_bounds`.
    inner : Datapath, optional
        Computes everything (e.g. a fault injector, or :class:`sw.protect.block_abft.BlockABFT`
        around one); fault-free by default.
    margin : float
        Widening of each profiled range by this fraction of its span, on both sides.
    policy : str
        ``"clamp"`` or ``"zero"`` (see the module docstring).
    softmax : str
        ``"recompute"`` (range checks, invariants, rows recomputed) or ``"clamp"``.
    tolerance : float
        Largest accepted |row sum - 1| of softmax quotients.
    stages : "full", "lean" or iterable of (kind, stage)
        Nonlinear stages to check: every profiled one, :data:`LEAN_STAGES`, or these (float
        or integer stage names). The softmax invariants run in ``softmax="recompute"`` mode
        whatever the stages (float softmax only).
    gemm_outputs : bool
        Also check the int32 GEMM outputs (their bounds must have been profiled).

    Members
    -------
    stats : dict of str to RangeStats
        Counters per site kind.

    Raises
    ------
    TypeError
        For an option of the wrong type or an unknown value, naming the option.
    """

    def __init__(self, bounds, inner=None, *, margin=DEFAULT_MARGIN, policy="clamp",
                 softmax="recompute", tolerance=DEFAULT_TOLERANCE, stages="full",
                 gemm_outputs=False):
        if not isinstance(bounds, dict):
            raise TypeError(f"bounds must be a dict from profile_bounds, not {bounds!r}")
        if inner is not None and not isinstance(inner, Datapath):
            raise TypeError(f"inner must be a Datapath, not {inner!r}")
        for name, value in (("margin", margin), ("tolerance", tolerance)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not value >= 0 or math.isinf(value):
                raise TypeError(f"{name} must be a non-negative number, not {value!r}")
        if policy not in RANGE_POLICIES:
            raise TypeError(f"policy must be one of {', '.join(map(repr, RANGE_POLICIES))}, "
                            f"not {policy!r}")
        if softmax not in SOFTMAX_POLICIES:
            raise TypeError(f"softmax must be one of "
                            f"{', '.join(map(repr, SOFTMAX_POLICIES))}, not {softmax!r}")
        if isinstance(stages, str):
            if stages not in STAGE_SETS:
                raise TypeError(f"stages must be one of {', '.join(map(repr, STAGE_SETS))} "
                                f"or (kind, stage) pairs, not {stages!r}")
            stages = STAGE_SETS[stages]
        elif stages is not None:
            stages = frozenset(tuple(stage) if isinstance(stage, (list, tuple)) else stage
                               for stage in stages)
            for stage in stages:
                if not (isinstance(stage, tuple) and len(stage) == 2
                        and (stage[1] in NONLINEAR_STAGES.get(stage[0], ())
                             or stage[1] in INTEGER_NONLINEAR_STAGES.get(stage[0], ()))):
                    raise TypeError(f"stages must hold (kind, stage) pairs of "
                                    f"NONLINEAR_STAGES or INTEGER_NONLINEAR_STAGES, not "
                                    f"{stage!r}")
        self.bounds = bounds
        self.inner = Datapath() if inner is None else inner
        self.margin, self.policy, self.softmax = float(margin), policy, softmax
        self.tolerance = float(tolerance)
        self.stages = stages
        self.gemm_outputs = bool(gemm_outputs)
        self.stats = {}
        self._limits = {}
        self._softmax_input = {}
        self._softmax_bad = {}

    def limits(self, site, stage):
        """Effective (low, high) of ``stage`` at ``site``, or None when it is not checked."""
        key = (site.name, stage)
        if key not in self._limits:
            self._limits[key] = self._make_limits(site, stage)
        return self._limits[key]

    def _make_limits(self, site, stage):
        profiled = self.bounds.get((site.name, stage))
        if profiled is None:
            return None
        low, high = profiled
        span = high - low
        low, high = low - self.margin * span, high + self.margin * span
        if site.operation == "gemm":
            return max(INT32_MIN, math.floor(low)), min(INT32_MAX, math.ceil(high))
        if self.stages is not None and (site.kind, stage) not in self.stages:
            return None
        if site.integer:
            bits, signed = site.register(stage)
            register_low, register_high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) \
                if signed else (0, (1 << bits) - 1)
            return max(register_low, math.floor(low)), min(register_high, math.ceil(high))
        natural_low, natural_high = NATURAL_LIMITS.get((site.kind, stage), (-math.inf, math.inf))
        return max(low, natural_low), min(high, natural_high)

    def total(self):
        """All kinds' counters summed into one :class:`RangeStats`."""
        total = RangeStats()
        for stats in self.stats.values():
            total.add(stats)
        return total

    def _stats(self, site):
        return self.stats.setdefault(site.kind, RangeStats())

    def _check(self, site, stage, values):
        """Values with out-of-range ones replaced, and the mask of those (None: unchecked)."""
        limits = self.limits(site, stage)
        if limits is None:
            return values, None
        stats = self._stats(site)
        checked, outside = _replace(values, *limits, self.policy)
        stats.values_checked += values.numel()
        stats.check_ops += 2 * values.numel()
        stats.clamped += int(outside.sum())
        if values.is_floating_point():
            stats.nonfinite += int((~torch.isfinite(values)).sum())
        return checked, outside

    def gemm(self, site, a, b):
        result = self.inner.gemm(site, a, b)
        self._stats(site).macs += math.prod(a.shape) * b.shape[-1]
        if self.gemm_outputs:
            result, _ = self._check(site, GEMM_STAGE, result)
        return result

    def nonlinear(self, site, stage, values):
        values = self.inner.nonlinear(site, stage, values)
        values, outside = self._check(site, stage, values)
        if site.kind != "softmax" or self.softmax != "recompute" or site.integer:
            return values
        return self._softmax_invariants(site, stage, values, outside)

    def _flag_rows(self, site, rows):
        if rows is None:
            return
        bad = self._softmax_bad.get(site.name)
        self._softmax_bad[site.name] = rows if bad is None else bad | rows

    def _softmax_invariants(self, site, stage, values, outside):
        stats = self._stats(site)
        width = values.shape[-1]
        rows = values.numel() // width
        if stage == "input":
            self._softmax_input[site.name] = values
            self._softmax_bad[site.name] = None
            return values
        if outside is not None:
            self._flag_rows(site, outside.any(-1))
        if stage == "exp":
            stats.check_ops += rows * width
            self._flag_rows(site, values.amax(-1) != 1.0)
            return values
        if stage != "quotient":
            return values
        stats.rows_checked += rows
        stats.check_ops += rows * (width + 2)
        self._flag_rows(site, ~((values.sum(-1) - 1.0).abs() <= self.tolerance))
        bad = self._softmax_bad.pop(site.name, None)
        scores = self._softmax_input.pop(site.name, None)
        if bad is None or scores is None or not bool(bad.any()):
            return values
        stats.recomputed_rows += int(bad.sum())
        values = values.clone()
        # The whole tensor is recomputed and the bad rows taken from it: exp's vectorised
        # and scalar paths may differ in the last bit, and a recomputed row must equal the
        # clean one exactly. Only the bad rows count as recomputed.
        values[bad] = _softmax_rows(scores)[bad]
        return values
