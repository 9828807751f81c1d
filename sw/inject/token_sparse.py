"""Single-neuron flips in the float ViT's Linear outputs, recomputing only what each flip reaches.

The fault model and layer numbering are those of :mod:`sw.inject.neuron` (PyTorchFI's
single-neuron model): per faulty inference, one flipped float32 bit in one output element of
one ``nn.Linear``. A full faulty inference recomputes the whole network, although almost all
of it reproduces fault-free values. This engine runs the fault-free pass once per image, keeps
every block's activations, and per fault recomputes only what the flip can change:

- up to the next attention, a flip in token t's row changes only that row (LayerNorm, the
  Linear layers, GELU and the residual additions work row by row): one row is recomputed;
- an attention whose keys or values changed passes the change to every token, so the rest of
  that block is recomputed in full; in the last block only the class token's row is, since
  the head reads nothing else;
- hence a flip in the last block outside the class token's row (its query, ``proj``, ``fc1``
  or ``fc2`` row) cannot reach the output: that inference is the fault-free one.

The logits match a full faulty forward pass (:class:`sw.inject.neuron.LinearOutputInjector`)
up to float rounding: MKL rounds a matrix row differently when it is computed within a matrix
of another height, the same difference a plain forward pass shows between two batch sizes.
"""

from typing import NamedTuple

import torch

from sw.inject.neuron import NeuronFaults, draw_neuron_faults, flip_bits
from sw.models.vit import VisionTransformer

__all__ = ["TokenSparseInjector"]

#: Faults per internal step: the gathered activations of a few thousand stay in cache.
CHUNK_FAULTS = 2048

#: The Linear layers of each encoder block, in the order ``model.modules()`` lists them.
BLOCK_LAYERS = ("qkv", "proj", "fc1", "fc2")


class _Rows(NamedTuple):
    """Changed rows of single tokens: fault-batch item, token, residual-stream row, values."""
    items: torch.Tensor
    tokens: torch.Tensor
    residual: torch.Tensor
    values: torch.Tensor


class _Images(NamedTuple):
    """Fault-batch items whose keys or values changed: block input, queries (n, heads,
    tokens, head_dim) and keys_values (n, 2, heads, tokens, head_dim); in the last block only
    the class token's input row and query."""
    items: torch.Tensor
    x: torch.Tensor
    queries: torch.Tensor
    keys_values: torch.Tensor


def _cat(parts, kind):
    """Concatenate the non-empty ``parts`` field by field (None when all are empty)."""
    parts = [part for part in parts if part is not None and part.items.numel()]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return kind(*(torch.cat(fields) for fields in zip(*parts)))


def _attend(attn, queries, keys, values):
    """Context rows (n, asked, dim) of ``queries`` (n, heads, asked, head_dim).

    :meth:`sw.models.vit.Attention.context`, except that a single query per image takes products
    and sums instead of a batch of one-row matmuls, which MKL runs several times slower
    (the sums round within float32 precision of the matmul's).
    """
    count, heads, asked, head_dim = queries.shape
    if asked > 1:
        return attn.context(queries, keys, values)
    attention = (queries * attn.scale * keys).sum(-1, keepdim=True).softmax(dim=-2)
    context = (attention * values).sum(-2, keepdim=True)
    return context.transpose(1, 2).reshape(count, asked, heads * head_dim)


class TokenSparseInjector:
    """Faulty inferences of a float ViT on cached images, one Linear-output bit flip each.

    Parameters
    ----------
    model : sw.models.vit.VisionTransformer
        In eval mode. Its Linear layers are numbered as ``model.modules()`` lists them
        (per block ``qkv``, ``proj``, ``fc1``, ``fc2``; then ``head``), as in
        :class:`sw.inject.neuron.LinearOutputInjector`.
    images : torch.Tensor
        The images the faults will be injected on; their fault-free pass runs here, once.

    Members
    -------
    clean_logits : torch.Tensor
        Fault-free logits of ``images``, identical to ``model(images)``.
    output_elements : torch.Tensor
        Output elements per image of each Linear layer.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`sw.models.vit.VisionTransformer` in eval mode.
    """

    def __init__(self, model, images):
        if not isinstance(model, VisionTransformer):
            raise TypeError(f"model must be a sw.models.vit.VisionTransformer, not "
                            f"{type(model).__name__}")
        if model.training:
            raise TypeError("model must be in eval mode (call model.eval())")
        self.model = model
        self.layers = [module for block in model.blocks
                       for module in (block.attn.qkv, block.attn.proj, block.mlp.fc1,
                                      block.mlp.fc2)] + [model.head]
        tokens = model.num_tokens
        self.output_elements = torch.tensor(
            [tokens * layer.out_features for layer in self.layers[:-1]]
            + [model.head.out_features])
        with torch.no_grad():
            self._cache_fault_free_pass(images)

    def _cache_fault_free_pass(self, images):
        """Every block's activations on ``images``, by the arithmetic of ``model.forward``."""
        model = self.model
        x = model.embed(images)
        self._activations = []
        for block in model.blocks:
            qkv = block.attn.qkv(block.norm1(x))
            heads = block.attn.heads(qkv)
            proj = block.attn.proj(block.attn.attend(qkv))
            h = x + proj
            fc1 = block.mlp.fc1(block.norm2(h))
            fc2 = block.mlp.fc2(block.mlp.act(fc1))
            self._activations.append({"x": x, "x0": x[:, 0].contiguous(),
                                      "queries": heads[0].contiguous(),
                                      "keys_values": heads[1:].transpose(0, 1).contiguous(),
                                      "proj": proj, "h": h,
                                      "fc1": fc1, "fc2": fc2})
            x = h + fc2
        self.clean_logits = model.head(model.norm(x)[:, 0])

    def draw(self, generator, count):
        """``count`` faults drawn as :class:`LinearOutputInjector` draws them."""
        return draw_neuron_faults(generator, self.output_elements, count)

    def run(self, image, faults):
        """Logits (n, classes) of image ``image[i]`` (an index into the cached images) with
        fault ``i`` of ``faults`` (a :class:`sw.inject.neuron.NeuronFaults`), for each i.

        Raises
        ------
        TypeError
            For an ``image`` that is not a 1-D int64 tensor.
        ValueError
            For an ``image`` index beyond the cached images, or lengths that differ.
        """
        faults = NeuronFaults(*faults)
        image = torch.as_tensor(image)
        images = len(self.clean_logits)
        if image.dim() != 1 or image.dtype != torch.int64:
            raise TypeError(f"image must be a 1-D int64 tensor of image indices, not "
                            f"{image.dim()}-D {image.dtype}")
        if len(image) and not 0 <= int(image.min()) <= int(image.max()) < images:
            bad = image[(image < 0) | (image >= images)][0]
            raise ValueError(f"image index {int(bad)} is out of range for {images} cached "
                             f"images")
        if any(len(field) != len(image) for field in faults):
            raise ValueError(f"image and faults must have the same length, not {len(image)} "
                             f"and {[len(field) for field in faults]}")
        with torch.no_grad():
            return torch.cat([self._run_chunk(image[start:start + CHUNK_FAULTS],
                                              NeuronFaults(*(field[start:start + CHUNK_FAULTS]
                                                             for field in faults)))
                              for start in range(0, len(image), CHUNK_FAULTS)]
                             or [self.clean_logits[:0]])

    def _run_chunk(self, image, faults):
        """:meth:`run` on a chunk of faults small enough to keep its gathers in cache."""
        order = torch.argsort(faults.layer, stable=True)
        counts = torch.bincount(faults.layer, minlength=len(self.layers)).tolist()
        by_layer = torch.split(order, counts)
        logits = self.clean_logits[image]
        items = by_layer[-1]
        logits[items, faults.element[items]] = flip_bits(
            logits[items, faults.element[items]], faults.mask[items])
        rows = whole = None
        blocks = self.model.blocks
        for index, block in enumerate(blocks[:-1]):
            rows, whole = self._inner_block(index, block, image, faults,
                                            by_layer[len(BLOCK_LAYERS) * index:], rows, whole)
        index = len(blocks) - 1
        rows = self._last_block(index, blocks[index], image, faults,
                                by_layer[len(BLOCK_LAYERS) * index:], rows, whole)
        if rows is not None:
            logits[rows.items] = self.model.head(self.model.norm(rows.values))
        return logits

    def _inner_block(self, index, block, image, faults, by_layer, rows, whole):
        """Carry the changes entering block ``index`` (``rows`` of single tokens, ``whole``
        images) and the block's own faults to its output, where the next block takes them."""
        activations = self._activations[index]
        attn, mlp = block.attn, block.mlp
        dim = attn.proj.in_features
        items = by_layer[0]
        is_query = faults.element[items] % (3 * dim) < dim
        # Images whose keys or values change: every token's attention changes.
        changed = self._changed(activations, block, image, faults, items[~is_query], rows,
                                whole, last=False)
        if changed is not None:
            keys, values = changed.keys_values.unbind(1)
            h = changed.x + attn.proj(_attend(attn, changed.queries, keys, values))
            changed = _Images(changed.items, h + mlp.fc2(mlp.act(mlp.fc1(block.norm2(h)))),
                              None, None)
        # A faulty query changes its own token's attention only.
        rows = self._rows_to_output(activations, block, image, faults, by_layer,
                                    self._query_rows(activations, attn, image, faults,
                                                     items[is_query]), keep=None)
        return rows, changed

    def _last_block(self, index, block, image, faults, by_layer, rows, whole):
        """The changes entering the last block and its faults, carried to the class token's
        output row (all else is invisible to the head)."""
        activations = self._activations[index]
        attn = block.attn
        dim = attn.proj.in_features
        items = by_layer[0]
        element = faults.element[items]
        # The class token's attention changes when its query, or any key or value, does.
        reaching = (element % (3 * dim) >= dim) | (element // (3 * dim) == 0)
        changed = self._changed(activations, block, image, faults, items[reaching], rows,
                                whole, last=True)
        if changed is None:
            context = None
        else:
            keys, values = changed.keys_values.unbind(1)
            context = _Rows(changed.items, torch.zeros_like(changed.items), changed.x,
                            _attend(attn, changed.queries, keys, values)[:, 0])
        return self._rows_to_output(activations, block, image, faults, by_layer, context,
                                    keep=0)

    def _query_rows(self, activations, attn, image, faults, items):
        """Context rows of the tokens whose query has a flip, against the clean keys."""
        dim, heads = attn.proj.in_features, attn.num_heads
        element = faults.element[items]
        tokens, column = element // (3 * dim), element % (3 * dim)
        images = image[items]
        queries = activations["queries"][images, :, tokens].reshape(len(items), dim)
        position = torch.arange(len(items))
        queries[position, column] = flip_bits(queries[position, column], faults.mask[items])
        keys, values = activations["keys_values"].index_select(0, images).unbind(1)
        context = _attend(attn, queries.reshape(len(items), heads, 1, dim // heads), keys,
                          values)[:, 0]
        return _Rows(items, tokens, activations["x"][images, tokens], context)

    def _changed(self, activations, block, image, faults, flipped, rows, whole, last):
        """The images whose keys or values changed: by a flip in ``qkv`` (``flipped``
        items), by the single-token ``rows`` entering the block, or in ``whole``.

        In the last block only the class token's input row and query are kept.
        """
        attn = block.attn
        dim, heads = attn.proj.in_features, attn.num_heads
        head_dim = dim // heads
        empty = torch.zeros(0, dtype=torch.int64)
        if rows is None:
            rows = _Rows(empty, empty, None, torch.zeros(0, dim))
        if whole is None:
            whole = _Images(empty, None, None, None)
        items = torch.cat([flipped, rows.items, whole.items])
        if not len(items):
            return None
        # The clean values of the flipped and row-changed images and the recomputed ones of
        # the whole images, written into one tensor each (no concatenated big copies).
        gathered = len(flipped) + len(rows.items)
        images = image[items[:gathered]]

        def gather(source, select=None):
            part = source if select is None else source[select]
            into = part.new_empty((len(items),) + part.shape[1:])
            torch.index_select(part, 0, images, out=into[:gathered])
            return into
        x = gather(activations["x0"] if last else activations["x"])
        queries = gather(activations["queries"], (slice(None), slice(None), slice(0, 1))) \
            if last else gather(activations["queries"])
        keys_values = gather(activations["keys_values"])
        if len(whole.items):
            split = attn.heads(attn.qkv(block.norm1(whole.x)))
            keys_values[gathered:] = split[1:].transpose(0, 1)
            queries[gathered:] = split[0][:, :, :1] if last else split[0]
            x[gathered:] = whole.x[:, 0] if last else whole.x
        element = faults.element[flipped]
        position = torch.arange(len(flipped))
        token, column = element // (3 * dim), element % (3 * dim)
        part, head, channel = column // dim, column % dim // head_dim, column % head_dim
        is_query = part == 0
        at = (position[is_query], head[is_query], token[is_query], channel[is_query])
        queries[at] = flip_bits(queries[at], faults.mask[flipped][is_query])
        at = (position[~is_query], part[~is_query] - 1, head[~is_query], token[~is_query],
              channel[~is_query])
        keys_values[at] = flip_bits(keys_values[at], faults.mask[flipped][~is_query])
        position = torch.arange(len(flipped), gathered)
        qkv = attn.qkv(block.norm1(rows.values)).reshape(len(position), 3, heads, head_dim)
        keys_values[position, :, :, rows.tokens] = qkv[:, 1:]
        if last:
            first = rows.tokens == 0
            queries[position[first], :, 0] = qkv[first, 0]
            x[position[first]] = rows.values[first]
        else:
            queries[position, :, rows.tokens] = qkv[:, 0]
            x[position, rows.tokens] = rows.values
        return _Images(items, x, queries, keys_values)

    def _faulty_rows(self, activations, stage, residual, image, faults, items, width,
                     keep=None):
        """Rows of ``stage``'s output with their fault, and the residual rows they join.

        With ``keep`` 0, only faults in the class token's row are kept.
        """
        tokens = faults.element[items] // width
        if keep is not None:
            items, tokens = items[tokens == keep], tokens[tokens == keep]
        images = image[items]
        values = activations[stage][images, tokens]
        column = faults.element[items] % width
        rows = torch.arange(len(items))
        values[rows, column] = flip_bits(values[rows, column], faults.mask[items])
        return _Rows(items, tokens, activations[residual][images, tokens], values)

    def _rows_to_output(self, activations, block, image, faults, by_layer, context, keep):
        """Single-token rows from the attention ``context`` rows and the faults of ``proj``,
        ``fc1`` and ``fc2`` (in the token ``keep`` only, unless None), through the rest of
        the block: the rows of the block output that changed."""
        attn, mlp = block.attn, block.mlp
        proj = [self._faulty_rows(activations, "proj", "x", image, faults, by_layer[1],
                                  attn.proj.out_features, keep)]
        if context is not None and context.items.numel():
            proj.append(context._replace(values=attn.proj(context.values)))
        proj = _cat(proj, _Rows)
        fc1 = [self._faulty_rows(activations, "fc1", "h", image, faults, by_layer[2],
                                 mlp.fc1.out_features, keep)]
        if proj is not None:
            h = proj.residual + proj.values
            fc1.append(proj._replace(residual=h, values=mlp.fc1(block.norm2(h))))
        fc1 = _cat(fc1, _Rows)
        fc2 = [self._faulty_rows(activations, "fc2", "h", image, faults, by_layer[3],
                                 mlp.fc2.out_features, keep)]
        if fc1 is not None:
            fc2.append(fc1._replace(values=mlp.fc2(mlp.act(fc1.values))))
        fc2 = _cat(fc2, _Rows)
        if fc2 is None:
            return None
        return fc2._replace(residual=None, values=fc2.residual + fc2.values)
