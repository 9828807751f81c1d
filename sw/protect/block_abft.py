"""LB-ABFT in software: block-wise checksums on every int8 GEMM, detect then recompute.

:class:`BlockABFT` is a :class:`sw.datapath.Datapath` that wraps another one (typically the
fault injector of :mod:`sw.inject.operation`). For every GEMM ``C = A x B`` it lets the
inner datapath compute ``C`` (possibly corrupted), cuts ``C`` into blocks of
``rows x cols`` output elements and checks every block against checksums computed from the
operands it was handed. Those operands are the clean, buffer-side values: the injector
corrupts its own copies, like the hardware's array registers, never the caller's. The
checks are the hardware's (:mod:`sw.twin.protection`), vectorised over all blocks of all
images and heads at once:

- column checks: ``s[k] = sum_i A[i][k]`` over the block's rows, checksum
  ``sum_k s[k] B[k][j]`` against the sum of the block's column ``j`` of ``C``;
- row checks: ``r[k] = sum_j B[k][j]`` over the block's columns, checksum
  ``sum_k A[i][k] r[k]`` against the sum of the block's row ``i`` of ``C``.

All checksum arithmetic is modulo 2**32, hence exact: a clean GEMM never raises an alarm.
A block whose checks disagree is recomputed with the fault-free path
(:func:`sw.twin.gemm.gemm_int8` on the block's operands) and written back.

Block shape and checks per GEMM (``block="auto"``, ``checks="auto"``):

- checks: ``row`` when ``B`` is a weight (a 2-D operand shared by every image: its row sums
  are computed once per weight, offline, so a row check costs ``M K`` MACs per block
  column), ``col`` otherwise (the attention matmuls, whose ``B`` is K^T or V);
- block: among the shapes whose sides are multiples of the array tile (default 8 x 8),
  capped at the GEMM's ``M`` and ``N``, the one of least area (finest recomputation) whose
  check cost is at most ``overhead_target`` of the GEMM's MACs; when none reaches the
  target, the cheapest one (the whole extent along the checksum's sum axis).

``block="tile"`` uses the array tile itself (the hardware's block): then the detection
decision of every block is the ``error`` flag of :func:`sw.twin.protection.check_tile`
for the same tile.

What the check cost counts, per GEMM of ``M x K x N`` (one image, one head), with
``R = ceil(M / rows)`` block rows and ``Q = ceil(N / cols)`` block columns; every
addition, multiply-accumulate and comparison is one operation, as one MAC of the GEMM is:

- column checks: ``M K`` additions (column sums of A), ``R K N`` MACs (the checksum row of
  every block row), ``M N`` additions (column sums of C), ``R N`` comparisons;
- row checks: ``K N`` additions (row sums of B) unless B is a weight, ``Q M K`` MACs (the
  checksum column of every block column), ``M N`` additions (row sums of C), ``Q M``
  comparisons;
- ``rowcol``: both.

Recomputation is counted apart (``recompute_macs``): ``rows x K x cols`` per recomputed
block.
"""

import math
from dataclasses import dataclass, field, fields

import torch

from sw.datapath import Datapath
from sw.twin.gemm import gemm_int8, wrap_int32

__all__ = ["ABFT_CHECKS", "BlockPlan", "GemmCheckStats", "BlockABFT", "check_ops",
           "choose_block", "DEFAULT_TILE", "DEFAULT_OVERHEAD_TARGET"]

#: Checks of a block: column checksums, row checksums, or both; ``auto`` picks per GEMM.
ABFT_CHECKS = ("auto", "col", "row", "rowcol")
#: The accelerator's array (output tile) size, rows x cols.
DEFAULT_TILE = (8, 8)
#: Largest check cost, as a fraction of a GEMM's MACs, that ``block="auto"`` aims for: 3%
#: leaves room under a 5% budget for the model's small GEMMs (the attention matmuls, whose
#: short K makes their checks cost about 18%) and for range checks.
DEFAULT_OVERHEAD_TARGET = 0.03


def check_ops(m, k, n, rows, cols, checks, weight_b=False):
    """Check operations of one ``m x k x n`` GEMM cut into ``rows x cols`` blocks.

    Returns a dict with ``a_sums``, ``b_sums``, ``checksum_macs``, ``c_sums``,
    ``comparisons`` and their ``total`` (see the module docstring for what each counts).
    """
    block_rows, block_cols = -(-m // rows), -(-n // cols)
    ops = dict(a_sums=0, b_sums=0, checksum_macs=0, c_sums=0, comparisons=0)
    if checks in ("col", "rowcol"):
        ops["a_sums"] += m * k
        ops["checksum_macs"] += block_rows * k * n
        ops["c_sums"] += m * n
        ops["comparisons"] += block_rows * n
    if checks in ("row", "rowcol"):
        ops["b_sums"] += 0 if weight_b else k * n
        ops["checksum_macs"] += block_cols * m * k
        ops["c_sums"] += m * n
        ops["comparisons"] += block_cols * m
    ops["total"] = sum(ops.values())
    return ops


def _candidates(extent, step):
    values = list(range(step, extent, step)) + [extent]
    return sorted(set(min(value, extent) for value in values))


def choose_block(m, k, n, checks, tile=DEFAULT_TILE, overhead_target=DEFAULT_OVERHEAD_TARGET,
                 weight_b=False):
    """(rows, cols) of the blocks of an ``m x k x n`` GEMM by the rule of ``block="auto"``."""
    best = None
    for rows in _candidates(m, tile[0]):
        for cols in _candidates(n, tile[1]):
            cost = check_ops(m, k, n, rows, cols, checks, weight_b)["total"] / (m * k * n)
            key = (cost > overhead_target, 0 if cost <= overhead_target else cost, rows * cols)
            if best is None or key < best[0]:
                best = (key, (rows, cols))
    return best[1]


@dataclass(frozen=True)
class BlockPlan:
    """How one GEMM shape is checked: its shape, blocks, checks and their relative cost."""
    m: int
    k: int
    n: int
    rows: int
    cols: int
    checks: str
    weight_b: bool
    check_ops: int

    @property
    def overhead(self):
        """Check operations over the GEMM's MACs."""
        return self.check_ops / (self.m * self.k * self.n)

    def as_dict(self):
        return dict(m=self.m, k=self.k, n=self.n, rows=self.rows, cols=self.cols,
                    checks=self.checks, weight_b=self.weight_b,
                    overhead_percent=100.0 * self.overhead)


@dataclass
class GemmCheckStats:
    """Counters of one GEMM kind. ``gemms`` counts (image, head) instances."""
    calls: int = 0
    gemms: int = 0
    macs: int = 0
    check_ops: int = 0
    blocks: int = 0
    detections: int = 0
    recompute_macs: int = 0
    wrong_blocks: int = 0
    false_alarms: int = 0
    missed: int = 0
    plans: dict = field(default_factory=dict)

    def counters(self):
        """The fields that add up over calls (all but ``plans``), by name."""
        return {item.name: getattr(self, item.name) for item in fields(self)
                if item.name != "plans"}

    def add(self, other):
        for name, value in other.counters().items():
            setattr(self, name, getattr(self, name) + value)
        self.plans.update(other.plans)

    def as_dict(self):
        result = self.counters()
        result["recomputed_blocks"] = self.detections
        result["overhead_percent"] = 100.0 * self.check_ops / self.macs if self.macs else 0.0
        result["plans"] = [plan.as_dict() for plan in self.plans.values()]
        return result


def _check_tile_shape(name, value):
    if not isinstance(value, tuple) or len(value) != 2 or any(
            not isinstance(side, int) or isinstance(side, bool) or side < 1 for side in value):
        raise TypeError(f"{name} must be a pair of positive integers (rows, cols), not {value!r}")


class BlockABFT(Datapath):
    """Block-wise ABFT around ``inner``: check every GEMM's blocks, recompute the bad ones.

    Parameters
    ----------
    inner : Datapath, optional
        Computes the GEMMs (and nonlinear values, passed through); fault-free by default.
    block : "auto", "tile" or (int, int)
        Block shape: chosen per GEMM shape (see the module docstring), the array tile, or a
        fixed ``(rows, cols)`` (capped at each GEMM's ``M`` and ``N``).
    checks : str
        One of :data:`ABFT_CHECKS`.
    tile : (int, int)
        The array's tile, ``rows x cols``: the unit of ``block="tile"`` and the step of
        ``block="auto"``.
    overhead_target : float
        Check cost, as a fraction of a GEMM's MACs, that ``block="auto"`` aims for.
    audit : bool
        Also compute each GEMM fault-free to count wrong blocks, false alarms (a flagged
        block whose output was right) and missed blocks (a wrong block not flagged): for
        evaluation only, the hardware cannot know them.

    Members
    -------
    stats : dict of str to GemmCheckStats
        Counters per GEMM kind (``Site.kind``).

    Raises
    ------
    TypeError
        For an option of the wrong type or an unknown value, naming the option.
    """

    def __init__(self, inner=None, *, block="auto", checks="auto", tile=DEFAULT_TILE,
                 overhead_target=DEFAULT_OVERHEAD_TARGET, audit=False):
        if inner is not None and not isinstance(inner, Datapath):
            raise TypeError(f"inner must be a Datapath, not {inner!r}")
        _check_tile_shape("tile", tile)
        if isinstance(block, str):
            if block not in ("auto", "tile"):
                raise TypeError(f"block must be 'auto', 'tile' or (rows, cols), not {block!r}")
        else:
            _check_tile_shape("block", block)
        if not isinstance(checks, str) or checks not in ABFT_CHECKS:
            raise TypeError(f"checks must be one of {', '.join(map(repr, ABFT_CHECKS))}, "
                            f"not {checks!r}")
        if not isinstance(overhead_target, (int, float)) or isinstance(overhead_target, bool) \
                or not 0 < overhead_target < 1:
            raise TypeError(f"overhead_target must be a number in (0, 1), not "
                            f"{overhead_target!r}")
        self.inner = Datapath() if inner is None else inner
        self.block, self.checks, self.tile = block, checks, tile
        self.overhead_target = float(overhead_target)
        self.audit = bool(audit)
        self.stats = {}
        self._plans = {}

    def plan(self, m, k, n, weight_b):
        """The :class:`BlockPlan` of an ``m x k x n`` GEMM (``weight_b``: B is a weight)."""
        key = (m, k, n, weight_b)
        if key not in self._plans:
            checks = self.checks
            if checks == "auto":
                checks = "row" if weight_b else "col"
            if self.block == "auto":
                rows, cols = choose_block(m, k, n, checks, self.tile, self.overhead_target,
                                          weight_b)
            else:
                rows, cols = self.tile if self.block == "tile" else self.block
                rows, cols = min(rows, m), min(cols, n)
            ops = check_ops(m, k, n, rows, cols, checks, weight_b)["total"]
            self._plans[key] = BlockPlan(m, k, n, rows, cols, checks, weight_b, ops)
        return self._plans[key]

    def total(self):
        """All kinds' counters summed into one :class:`GemmCheckStats`."""
        total = GemmCheckStats()
        for stats in self.stats.values():
            total.add(stats)
        return total

    def flags(self, a, b, c):
        """Bad-block flags (G, R, Q) of result ``c`` of ``a @ b``: G images x heads, R x Q."""
        return self._check(a, b, c)[-1]

    def _check(self, a, b, c):
        """(plan, a and b with the images and heads as one batch axis G, ``c``'s padded
        blocks, their bad-block flags) of result ``c`` of ``a @ b``."""
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        groups = math.prod(a.shape[:-2])
        plan = self.plan(m, k, n, b.dim() == 2)
        a3 = a.reshape(groups, m, k)
        b3 = b if b.dim() == 2 else b.reshape(groups, k, n)
        return (plan, a3, b3) + _check_blocks(a3, b3, c.reshape(groups, m, n), plan)

    def nonlinear(self, site, stage, values):
        return self.inner.nonlinear(site, stage, values)

    def gemm(self, site, a, b):
        result = self.inner.gemm(site, a, b)
        plan, a3, b3, checked, flags = self._check(a, b, result)
        groups, m, k, n = len(a3), plan.m, plan.k, plan.n
        stats = self.stats.setdefault(site.kind, GemmCheckStats())
        stats.plans[(m, k, n, plan.weight_b)] = plan
        stats.calls += 1
        stats.gemms += groups
        stats.macs += groups * m * k * n
        stats.check_ops += groups * plan.check_ops
        stats.blocks += flags.numel()
        detected = int(flags.sum())
        stats.detections += detected
        stats.recompute_macs += detected * plan.rows * k * plan.cols
        if self.audit:
            clean = _blocks(gemm_int8(a, b).reshape(groups, m, n), plan)
            wrong = (checked != clean).flatten(3).any(-1)
            stats.wrong_blocks += int(wrong.sum())
            stats.false_alarms += int((flags & ~wrong).sum())
            stats.missed += int((wrong & ~flags).sum())
        if detected == 0:
            return result
        return _recompute(a3, b3, checked, flags, plan).reshape(result.shape)


def _pad(tensor, axis, size):
    """``tensor`` zero-padded along ``axis`` (negative) to ``size``."""
    missing = size - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=axis)


def _blocks(c, plan):
    """(G, R, Q, rows, cols) int64 view of ``c`` (G, M, N), zero-padded to whole blocks."""
    block_rows, block_cols = -(-plan.m // plan.rows), -(-plan.n // plan.cols)
    c = _pad(_pad(c.to(torch.int64), -2, block_rows * plan.rows), -1, block_cols * plan.cols)
    return c.reshape(c.shape[0], block_rows, plan.rows, block_cols, plan.cols) \
        .permute(0, 1, 3, 2, 4)


def _exact_matmul(x, y):
    """``x @ y`` of integer tensors, exact (float64 holds every partial sum), as int64."""
    return (x.to(torch.float64) @ y.to(torch.float64)).round().to(torch.int64)


def _check_blocks(a, b, c, plan):
    """Padded blocks of ``c`` (G, R, Q, rows, cols) and the flags (G, R, Q) of bad blocks."""
    groups = a.shape[0]
    block_rows, block_cols = -(-plan.m // plan.rows), -(-plan.n // plan.cols)
    a = _pad(a, -2, block_rows * plan.rows)
    b = _pad(b, -1, block_cols * plan.cols)
    blocks = _blocks(c, plan)
    flags = torch.zeros((groups, block_rows, block_cols), dtype=torch.bool)
    if plan.checks in ("col", "rowcol"):
        column_sums_a = a.reshape(groups, block_rows, plan.rows, plan.k).to(torch.int64).sum(2)
        checksum = _exact_matmul(column_sums_a, b)                    # (G, R, Qc)
        checksum = checksum.reshape(groups, block_rows, block_cols, plan.cols)
        difference = wrap_int32(checksum - blocks.sum(3))             # (G, R, Q, cols)
        flags |= (difference != 0).any(-1)
    if plan.checks in ("row", "rowcol"):
        row_sums_b = b.reshape(*b.shape[:-1], block_cols, plan.cols).to(torch.int64).sum(-1)
        checksum = _exact_matmul(a, row_sums_b)                       # (G, Rr, Q)
        checksum = checksum.reshape(groups, block_rows, plan.rows, block_cols).transpose(2, 3)
        difference = wrap_int32(checksum - blocks.sum(4))             # (G, R, Q, rows)
        flags |= (difference != 0).any(-1)
    return blocks, flags


def _recompute(a, b, blocks, flags, plan):
    """``c`` (G, M, N) int32 with the flagged blocks recomputed fault-free, in one batch."""
    groups = a.shape[0]
    block_rows, block_cols = flags.shape[1:]
    group, block_row, block_col = flags.nonzero(as_tuple=True)
    a_blocks = _pad(a, -2, block_rows * plan.rows) \
        .reshape(groups, block_rows, plan.rows, plan.k)[group, block_row]
    b = _pad(b, -1, block_cols * plan.cols)
    if b.dim() == 2:
        b_blocks = b.reshape(plan.k, block_cols, plan.cols).permute(1, 0, 2)[block_col]
    else:
        b_blocks = b.reshape(groups, plan.k, block_cols, plan.cols) \
            .permute(0, 2, 1, 3)[group, block_col]
    blocks = blocks.contiguous()
    blocks[group, block_row, block_col] = gemm_int8(a_blocks, b_blocks).to(torch.int64)
    c = blocks.permute(0, 1, 3, 2, 4).reshape(groups, block_rows * plan.rows,
                                               block_cols * plan.cols)
    return c[:, :plan.m, :plan.n].to(torch.int32)
