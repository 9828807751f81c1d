"""Software fault injection: the paper's operation-level bit-flip model as a :class:`Datapath`.

:class:`FaultInjector` runs the quantized network's operations like the fault-free
accelerator but flips bits first, each bit independently with probability
``bit_error_rate``, with one independent fault set per image of the batch. Per image and
per selected site, the targets and their sizes in bits are:

- ``a``: int8 A operand (activations; Q; attention probabilities): G * R * K * 8
- ``b``: int8 B operand (weights; K^T; V): G * K * N * 8
- ``product``: int16 products a[m, k] * b[k, n]: G * R * N * K * 16
- ``partial_sum``: int32 partial sums after each of the K accumulation steps: G * R * N * K * 32
- ``output``: int32 accumulators leaving the array: G * R * N * 32
- ``nonlinear``: float32 intermediates of softmax, GELU, LayerNorm, ReLU and pooling (the
  stages of :data:`sw.datapath.NONLINEAR_STAGES`): elements * 32, per stage; on the ViT
  with integer nonlinear units (``nonlinear="int"``), their registers (the stages of
  :data:`sw.datapath.INTEGER_NONLINEAR_STAGES`) at their widths (``site.register(stage)``,
  e.g. 8 bits for an output code, 20 for the softmax's exponent): elements * bits, per
  stage

with G the heads (1 for a Linear), R the rows (tokens) of the site (only the chosen token's
rows at the patch granularity), K the reduction and N the output width. Flip counts are
drawn Binomial(bits, bit_error_rate), their mean being exactly BER x elements x bit width.

How each flip acts, exactly in the int32 wrap-around arithmetic: ``a`` and ``output`` flips
XOR the value (so do the flips of a float32 intermediate, in its IEEE 754 pattern, and of
an integer unit's register, in its two's-complement or unsigned pattern of its width); a
``b`` flip changes the weight as read by the rows it feeds (all rows, or only the chosen
token's rows at the patch granularity), adding ``a[:, k] * delta`` to column n; a
``product`` flip adds the change of that 16-bit product to its output; a ``partial_sum``
flip of bit b at step k adds +-2**b (the sign given by bit b of the partial sum at step k)
to its output, since every later step only adds to it. Flips of distinct elements combine
exactly; two ``product``/``partial_sum`` flips of one output at different steps are applied
independently (negligible at the rates of interest).
"""

import itertools
import math
import re

import torch

from sw.datapath import Datapath
from sw.inject.bit_flips import combine_flips, flip_bits, flip_register_bits, sample_flips
from sw.parameter_checks import check_integer, check_probability
from sw.twin.gemm import gemm_int8, to_signed, wrap_int32

__all__ = ["FaultInjector", "GEMM_TARGETS", "TARGETS", "KINDS"]

#: Representations of a GEMM that can be hit.
GEMM_TARGETS = ("a", "b", "product", "partial_sum", "output")
#: Everything :class:`FaultInjector` can hit.
TARGETS = GEMM_TARGETS + ("nonlinear",)
#: Module kinds of the ViT and the CNN (whose convolutions are ``conv1``, ``conv2``, ...).
KINDS = ("patch_embed", "qkv", "attn_scores", "softmax", "attn_context", "proj", "fc1",
         "gelu", "fc2", "layernorm", "head", "conv1", "conv2", "relu", "pool", "fc")
#: Most elements (products, rows) that flips of one GEMM expand to at once, 32 MiB as int64.
CHUNK_ELEMENTS = 1 << 22
_WIDTH = {"a": 8, "b": 8, "product": 16, "partial_sum": 32, "output": 32, "nonlinear": 32}


def _check_index(name, value):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < 0):
        raise TypeError(f"{name} must be a non-negative integer or None, not {value!r}")


class FaultInjector(Datapath):
    """Flip bits at the selected sites of a quantized ViT or CNN while it runs.

    Parameters
    ----------
    bit_error_rate : float
        Probability that any one bit flips, in [0, 1].
    seed : int, optional
        Seeds a fresh generator; ignored when ``generator`` is given.
    generator : torch.Generator, optional
        Source of all randomness (same state, same faults).
    layer : int, optional
        Only sites of this encoder block (ViT) or stage (CNN).
    kind : str, optional
        Only sites of this module kind (one of :data:`KINDS`).
    token : int, optional
        Only the computations of this token (0 = class token, 1.. = patches): its rows of
        every site, its row of the attention scores, softmax and context.
    targets : iterable of str, optional
        Representations to hit (subset of :data:`TARGETS`); all by default.

    Members
    -------
    flips : list of (Site, str, torch.Tensor)
        Per site and target (``nonlinear`` targets are named by their stage), the number of
        flips of each image, in the order they were drawn.
    largest_region : int
        Bits per image of the largest region drawn from so far (even at rate 0), which
        bounds the flips of one draw (see :func:`sw.inject.bit_flips.check_flip_budget`).

    Raises
    ------
    TypeError
        For an option of the wrong type or range, or an unknown kind or target.
    """

    def __init__(self, bit_error_rate, *, seed=None, generator=None, layer=None, kind=None,
                 token=None, targets=None):
        check_probability("bit_error_rate", bit_error_rate)
        _check_index("layer", layer)
        _check_index("token", token)
        if kind is not None and kind not in KINDS \
                and not re.fullmatch(r"conv[1-9][0-9]*", str(kind)):
            raise TypeError(f"kind must be one of {', '.join(map(repr, KINDS))} or None, "
                            f"not {kind!r}")
        targets = TARGETS if targets is None else \
            (targets,) if isinstance(targets, str) else tuple(targets)
        for target in targets:
            if target not in TARGETS:
                raise TypeError(f"targets must be among {', '.join(map(repr, TARGETS))}, "
                                f"not {target!r}")
        if generator is None:
            if seed is not None:
                check_integer("seed", seed)
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        self.bit_error_rate = float(bit_error_rate)
        self.generator = generator
        self.layer, self.kind, self.token = layer, kind, token
        self.targets = frozenset(targets)
        self.flips = []
        self.largest_region = 0
        self._rows = {}

    def flips_per_image(self):
        """Flips each image received, summed over all sites (all calls on equal batches)."""
        if not self.flips:
            return torch.zeros(0, dtype=torch.int64)
        sizes = {counts.numel() for _, _, counts in self.flips}
        if len(sizes) > 1:
            raise ValueError(f"flips_per_image needs equal batch sizes, not {sorted(sizes)}")
        return torch.stack([counts for _, _, counts in self.flips]).sum(0)

    def total_flips(self):
        """Flips injected so far, over all images and sites."""
        return sum(int(counts.sum()) for _, _, counts in self.flips)

    def _selected_rows(self, site):
        """Row indices to hit at ``site`` (all rows: None), or () if the site is not selected."""
        if (self.layer is not None and site.layer != self.layer) or \
                (self.kind is not None and site.kind != self.kind):
            return ()
        if self.token is None:
            return None
        if site.name not in self._rows:
            self._rows[site.name] = site.rows_of(self.token)
        return self._rows[site.name]

    def _sample(self, site, target, batch, shape, width):
        self.largest_region = max(self.largest_region, math.prod(shape) * width)
        flips = sample_flips(batch, shape, width, self.bit_error_rate, self.generator)
        self.flips.append((site, target, flips.counts))
        return flips

    def _flip_rows(self, site, target, values, rows, register=None):
        """Flip bits of ``values`` (B, G, M, F) in the given rows (None: all); ``register``
        is ``(bits, signed)`` for an integer unit's register."""
        batch, groups, height, width_f = values.shape
        count = height if rows is None else len(rows)
        if register is not None:
            width = register[0]
        else:
            width = _WIDTH["nonlinear" if values.dtype == torch.float32 else target]
        flips = self._sample(site, target, batch, (groups, count, width_f), width)
        if flips.total == 0:
            return values
        group, row, column = flips.coordinates
        if rows is not None:
            row = torch.tensor(rows, dtype=torch.int64)[row]
        element = ((flips.image * groups + group) * height + row) * width_f + column
        if register is not None:
            return flip_register_bits(values.contiguous(), element, flips.bit, *register)
        return flip_bits(values.contiguous(), element, flips.bit)

    def nonlinear(self, site, stage, values):
        rows = self._selected_rows(site)
        if rows == () or "nonlinear" not in self.targets:
            return values
        register = site.register(stage) if site.integer else None
        shape = values.shape
        grouped = values.reshape(shape[0], -1, shape[-2], shape[-1])
        return self._flip_rows(site, stage, grouped, rows, register).reshape(shape)

    def gemm(self, site, a, b):
        rows = self._selected_rows(site)
        if rows == () or not self.targets & set(GEMM_TARGETS):
            return gemm_int8(a, b)
        batch, height, depth = a.shape[0], a.shape[-2], a.shape[-1]
        width = b.shape[-1]
        output_shape = (*a.shape[:-1], width)
        groups = math.prod(a.shape[1:-2])
        a = a.reshape(batch, groups, height, depth)
        b = b if b.dim() == 2 else b.reshape(batch, groups, depth, width)
        if "a" in self.targets:
            a = self._flip_rows(site, "a", a, rows)
        result = gemm_int8(a, b)
        row_index = torch.arange(height) if rows is None else torch.tensor(rows)
        changes = []
        if "b" in self.targets:
            changes.append(self._operand_changes(site, a, b, row_index))
        for target in ("product", "partial_sum"):
            if target in self.targets:
                changes.append(self._step_changes(site, target, a, b, row_index))
        result = _add_changes(result, itertools.chain.from_iterable(changes))
        if "output" in self.targets:
            result = self._flip_rows(site, "output", result, rows)
        return result.reshape(output_shape)

    def _operand_changes(self, site, a, b, row_index):
        """B-operand flips: column n of the rows that read b[k, n] gains a[:, k] * delta.

        Draws the flips now; returns their (flat output element, change) pairs as an
        iterator, :data:`CHUNK_ELEMENTS` at a time.
        """
        batch, groups, height, depth = a.shape
        width = b.shape[-1]
        flips = self._sample(site, "b", batch, (groups, depth, width), _WIDTH["b"])
        if flips.total == 0:
            return iter(())
        group, k, n = flips.coordinates
        element = ((flips.image * groups + group) * depth + k) * width + n
        unique, mask = combine_flips(element, flips.bit, 8)
        return _operand_chunk_changes(a, b, unique, mask, row_index)

    def _step_changes(self, site, target, a, b, row_index):
        """Product or partial-sum flips at step k of output (m, n): the changes they make,
        as a list of one (flat output element, change) pair (none without flips)."""
        batch, groups, height, depth = a.shape
        width = b.shape[-1]
        bits = _WIDTH[target]
        flips = self._sample(site, target, batch, (groups, len(row_index), width, depth), bits)
        if flips.total == 0:
            return []
        group, row, n, k = flips.coordinates
        row = row_index[row]
        element = (((flips.image * groups + group) * height + row) * width + n) * depth + k
        unique, mask = combine_flips(element, flips.bit, bits)
        if target == "product":
            k, output = unique % depth, unique // depth
            image, group, row, n = _output_coordinates(output, groups, height, width)
            old = a[image, group, row, k].to(torch.int64) * \
                _b_values(b, image, group, k, n).to(torch.int64)
        else:
            old = _partial_sums(a, b, unique)
        return [(unique // depth, to_signed((old & ((1 << bits) - 1)) ^ mask, bits) - old)]


def _output_coordinates(output, groups, height, width):
    """(image, group, row, column) of flat output elements of a (B, G, M, N) result."""
    n, rest = output % width, output // width
    row, rest = rest % height, rest // height
    return rest // groups, rest % groups, row, n


def _operand_chunk_changes(a, b, unique, mask, row_index):
    """The changes of combined B-operand flips ``unique`` (flat (image, group, k, n)
    indices) with XOR ``mask``, a chunk of at most :data:`CHUNK_ELEMENTS` rows at a time."""
    _, groups, height, depth = a.shape
    width = b.shape[-1]
    rows = row_index[None, :]
    size = max(1, CHUNK_ELEMENTS // len(row_index))
    for start in range(0, unique.numel(), size):
        chunk = unique[start:start + size]
        n, rest = chunk % width, chunk // width
        k, rest = rest % depth, rest // depth
        group, image = rest % groups, rest // groups
        old = _b_values(b, image, group, k, n).to(torch.int64)
        delta = to_signed((old & 0xFF) ^ mask[start:start + size], 8) - old
        change = a[image[:, None], group[:, None], rows, k[:, None]].to(torch.int64) \
            * delta[:, None]
        output = ((image[:, None] * groups + group[:, None]) * height + rows) * width \
            + n[:, None]
        yield output.reshape(-1), change.reshape(-1)


def _partial_sums(a, b, unique):
    """The int32 partial sum after step k of each output, for sorted flat (output, k)
    indices ``unique``: the K products of each output are summed once, whatever the number
    of its flips, for at most :data:`CHUNK_ELEMENTS` products at a time."""
    _, groups, height, depth = a.shape
    width = b.shape[-1]
    b_rows = b.transpose(-2, -1).contiguous()           # column n of b as a row
    k, output = unique % depth, unique // depth
    outputs, counts = torch.unique_consecutive(output, return_counts=True)
    ends = counts.cumsum(0).tolist()
    old = torch.empty(unique.numel(), dtype=torch.int64)
    size = max(1, CHUNK_ELEMENTS // depth)
    for start in range(0, outputs.numel(), size):
        image, group, row, n = _output_coordinates(outputs[start:start + size], groups,
                                                   height, width)
        columns = b_rows[n] if b.dim() == 2 else b_rows[image, group, n]
        sums = (a[image, group, row].to(torch.int64) * columns.to(torch.int64)).cumsum(1)
        first = ends[start - 1] if start else 0
        last = ends[min(start + size, outputs.numel()) - 1]
        owner = torch.repeat_interleave(torch.arange(len(n)), counts[start:start + size])
        old[first:last] = wrap_int32(sums[owner, k[first:last]]).to(torch.int64)
    return old


def _b_values(b, image, group, k, n):
    return b[k, n] if b.dim() == 2 else b[image, group, k, n]


def _add_changes(result, changes):
    """``result`` (int32) plus the (flat element, change) pairs of ``changes``, wrapping
    modulo 2**32. Up to :data:`CHUNK_ELEMENTS` changes are summed per touched element;
    beyond, in one int64 per element of ``result``, so that memory stays bounded."""
    flat = result.reshape(-1)
    pending, dense = [], None
    for element, change in changes:
        if dense is None:
            pending.append((element, change))
            if sum(element.numel() for element, _ in pending) <= CHUNK_ELEMENTS:
                continue
            dense = torch.zeros(flat.numel(), dtype=torch.int64)
            element = torch.cat([element for element, _ in pending])
            change = torch.cat([change for _, change in pending])
        dense.index_add_(0, element, change)
    if dense is not None:
        touched = dense.nonzero()[:, 0]
        total = dense[touched]
    elif pending:
        touched, inverse = torch.unique(torch.cat([element for element, _ in pending]),
                                        return_inverse=True)
        total = torch.zeros(touched.numel(), dtype=torch.int64).index_add_(
            0, inverse, torch.cat([change for _, change in pending]))
    else:
        return result
    flat = flat.clone()
    flat[touched] = wrap_int32(flat[touched].to(torch.int64) + total)
    return flat.view(result.shape)
