"""The int8 Vision Transformer: every GEMM on the accelerator model, nonlinearities in float
or on the integer units.

Built from a trained :class:`sw.models.vit.VisionTransformer` and its calibration
(:mod:`sw.models.quantization`). The patch embedding (as an im2col GEMM), ``qkv``, both attention
matmuls (Q K^T and attention x V, per head), ``proj``, ``fc1``, ``fc2`` and ``head`` run
int8 x int8 -> int32 through ``datapath.gemm``. Residual additions, the class token and
position embeddings, the dequantization of GEMM outputs and their biases stay in float.

Softmax, GELU and LayerNorm (``nonlinear``):

``"float"`` (default)
    run in float32 and show their intermediate values to ``datapath.nonlinear`` (the stages
    of :data:`sw.datapath.NONLINEAR_STAGES`); their outputs are quantized to int8 with the
    next GEMM's calibrated scale.
``"int"``
    run on the bit-exact twin of the integer units (:mod:`sw.twin.nonlinear`,
    docs/nonlinear.md), as the hardware computes them, and show every register to
    ``datapath.nonlinear`` (the stages of :data:`sw.datapath.INTEGER_NONLINEAR_STAGES`,
    int64 values). LayerNorm takes the residual stream quantized to ``B``-bit codes
    (scale: the calibrated largest input over ``2**(B-1) - 1``) and gives the int8 codes of
    the next GEMM's input scale (qkv, fc1, head), gain, offset and scale folded into its
    CSRs; softmax takes the int32 Q K^T accumulators and gives codes 0..127 of scale 1/127
    to attn_context; GELU takes the fc1 output requantized to int8 (scale: the calibrated
    largest fc1 output over 127) and gives int8 codes of the same scale to fc2.
"""

import dataclasses

import torch
from torch.nn import functional

from sw.datapath import Datapath, Site
from sw.models.quantization import QuantizedLinear, activation_scale, quantize_activation
from sw.twin.nonlinear import gelu as integer_gelu
from sw.twin.nonlinear import layernorm as integer_layernorm
from sw.twin.nonlinear import softmax as integer_softmax
from sw.twin.nonlinear.gelu import GeluParams
from sw.twin.nonlinear.layernorm import LayerNormParams
from sw.twin.nonlinear.softmax import ONE, SoftmaxParams

__all__ = ["QuantizedViT", "VIT_KINDS", "NONLINEAR_MODES", "NORM_INPUT_BITS", "softmax",
           "layer_norm", "gelu"]

#: Module kinds of the ViT's sites, in the order a block runs them.
VIT_KINDS = ("patch_embed", "layernorm", "qkv", "attn_scores", "softmax", "attn_context",
             "proj", "fc1", "gelu", "fc2", "head")
#: How softmax, GELU and LayerNorm are computed: float32, or on the integer units' twin.
NONLINEAR_MODES = ("float", "int")
#: ``B``, the width of the integer LayerNorm's input codes (the unit's default).
NORM_INPUT_BITS = 16


def softmax(site, scores, datapath):
    """Row softmax, exposing its input, exponentials, their sum and the quotients."""
    scores = datapath.nonlinear(site, "input", scores)
    exp = datapath.nonlinear(site, "exp", torch.exp(scores - scores.amax(-1, keepdim=True)))
    total = datapath.nonlinear(site, "sum", exp.sum(-1, keepdim=True))
    return datapath.nonlinear(site, "quotient", exp / total)


def layer_norm(site, values, norm, datapath):
    """LayerNorm over the last axis, exposing its input, mean, variance and output."""
    values = datapath.nonlinear(site, "input", values)
    mean = datapath.nonlinear(site, "mean", values.mean(-1, keepdim=True))
    centred = values - mean
    var = datapath.nonlinear(site, "var", (centred * centred).mean(-1, keepdim=True))
    output = centred / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    return datapath.nonlinear(site, "output", output)


def gelu(site, values, datapath):
    """Exact (erf) GELU, exposing its input and output."""
    values = datapath.nonlinear(site, "input", values)
    return datapath.nonlinear(site, "output", functional.gelu(values))


def _hook(site, datapath):
    """The twin's ``hook(stage, values)``: every register through ``datapath.nonlinear``."""
    return lambda stage, values: datapath.nonlinear(site, stage, values)


class _Norm:
    def __init__(self, module):
        self.weight = module.weight.detach().float().clone()
        self.bias = module.bias.detach().float().clone()
        self.eps = module.eps


class _IntegerNorm:
    """A LayerNorm on the integer unit: the input scale of its B-bit codes and its CSRs."""

    def __init__(self, module, input_max_abs, output_scale, length):
        weight = module.weight.detach().float()
        self.input_bits = NORM_INPUT_BITS
        self.input_scale = activation_scale(input_max_abs, self.input_bits)
        self.params = LayerNormParams.for_affine(
            weight.tolist(), module.bias.detach().float().tolist(), self.input_scale,
            output_scale, length=length or weight.numel(), eps=module.eps,
            input_bits=self.input_bits)

    def __call__(self, site, values, datapath):
        """int8 codes of the next GEMM's input scale for the float residual ``values``."""
        codes = quantize_activation(values, self.input_scale, self.input_bits)
        return integer_layernorm(codes, self.params, _hook(site, datapath)).output


class _IntegerUnits:
    """One block's integer softmax and GELU, its LayerNorms and fc2 on the GELU's scale."""

    def __init__(self, block, quantized, max_abs, prefix, tokens, length):
        self.norm1 = _IntegerNorm(block.norm1, _calibrated(max_abs, f"{prefix}.norm1"),
                                  quantized.qkv.input_scale, length)
        self.norm2 = _IntegerNorm(block.norm2, _calibrated(max_abs, f"{prefix}.norm2"),
                                  quantized.fc1.input_scale, length)
        score_scale = quantized.q_scale * quantized.k_scale * quantized.head_scale
        self.softmax = SoftmaxParams.for_scale(score_scale, length=length or tokens)
        self.gelu_scale = activation_scale(_calibrated(max_abs, f"{prefix}.mlp.act"))
        self.gelu = GeluParams.for_scale(self.gelu_scale,
                                         length=length or block.mlp.fc1.out_features)
        self.fc2 = dataclasses.replace(quantized.fc2, input_scale=self.gelu_scale)


def _calibrated(max_abs, name):
    if name not in max_abs:
        raise ValueError(f"max_abs has no {name!r}: the integer nonlinear units need the "
                         f"LayerNorm and GELU inputs that sw.models.quantize.calibrate records")
    return max_abs[name]


class _QuantizedBlock:
    def __init__(self, block, max_abs, prefix):
        attn = block.attn
        self.num_heads = attn.num_heads
        self.head_scale = attn.scale
        self.norm1, self.norm2 = _Norm(block.norm1), _Norm(block.norm2)
        self.qkv = QuantizedLinear.from_float(attn.qkv.weight, attn.qkv.bias,
                                              max_abs[f"{prefix}.attn.qkv"])
        self.proj = QuantizedLinear.from_float(attn.proj.weight, attn.proj.bias,
                                               max_abs[f"{prefix}.attn.proj"])
        self.fc1 = QuantizedLinear.from_float(block.mlp.fc1.weight, block.mlp.fc1.bias,
                                              max_abs[f"{prefix}.mlp.fc1"])
        self.fc2 = QuantizedLinear.from_float(block.mlp.fc2.weight, block.mlp.fc2.bias,
                                              max_abs[f"{prefix}.mlp.fc2"])
        self.q_scale, self.k_scale, self.v_scale, self.p_scale = (
            activation_scale(max_abs[f"{prefix}.attn.{part}"])
            for part in ("q", "k", "v", "probs"))


class QuantizedViT:
    """int8 twin of a :class:`sw.models.vit.VisionTransformer`; call it on images to get logits.

    Parameters
    ----------
    model : sw.models.vit.VisionTransformer
        The trained float model (its weights are copied and quantized).
    max_abs : dict
        Calibration from :func:`sw.models.quantize.calibrate`.
    nonlinear : str
        ``"float"`` (default) or ``"int"``: softmax, GELU and LayerNorm in float32 or on
        the integer units (see the module docstring).
    unit_length : int or None
        With ``nonlinear="int"``: the units' generator ``length`` (their longest row, on
        which some widths depend), as an accelerator with ``nonlinear_length`` builds them;
        ``None`` (default): each unit as long as its rows.

    Members
    -------
    sites : tuple of Site
        Every operation, in execution order; tokens are 0 (class) and 1 .. patches. With
        ``nonlinear="int"`` the nonlinear sites carry their units' registers.
    nonlinear : str
        ``"float"`` or ``"int"``.
    units : dict
        With ``nonlinear="int"``, each nonlinear site's unit parameters by site name
        (:class:`sw.twin.nonlinear.SoftmaxParams`, ``GeluParams``, ``LayerNormParams``);
        empty otherwise.

    Raises
    ------
    TypeError
        If ``nonlinear`` is not one of :data:`NONLINEAR_MODES`.
    ValueError
        If ``nonlinear="int"`` and ``max_abs`` lacks a LayerNorm or GELU input, or
        ``unit_length`` is shorter than a unit's rows.
    """

    def __init__(self, model, max_abs, nonlinear="float", unit_length=None):
        if not isinstance(nonlinear, str) or nonlinear not in NONLINEAR_MODES:
            raise TypeError(f"nonlinear must be one of {', '.join(map(repr, NONLINEAR_MODES))}, "
                            f"not {nonlinear!r}")
        self.nonlinear = nonlinear
        self.config = dict(model.config)
        self.num_tokens = model.num_tokens
        self.patch_size = model.config["patch_size"]
        self.grid_size = model.patch_embed.grid_size
        proj = model.patch_embed.proj
        self.patch_embed = QuantizedLinear.from_float(proj.weight, proj.bias,
                                                      max_abs["patch_embed.proj"])
        self.cls_token = model.cls_token.detach().float().clone()
        self.pos_embed = model.pos_embed.detach().float().clone()
        self.blocks = [_QuantizedBlock(block, max_abs, f"blocks.{index}")
                       for index, block in enumerate(model.blocks)]
        self.norm = _Norm(model.norm)
        self.head = QuantizedLinear.from_float(model.head.weight, model.head.bias,
                                               max_abs["head"])
        self.integer_blocks = []
        self.integer_norm = None
        self.units = {}
        if nonlinear == "int":
            self._check_unit_length(model, unit_length)
            self.integer_blocks = [
                _IntegerUnits(block, quantized, max_abs, f"blocks.{index}", self.num_tokens,
                              unit_length)
                for index, (block, quantized) in enumerate(zip(model.blocks, self.blocks))]
            self.integer_norm = _IntegerNorm(model.norm, _calibrated(max_abs, "norm"),
                                             self.head.input_scale, unit_length)
            for index, units in enumerate(self.integer_blocks):
                prefix = f"blocks.{index}"
                self.units.update({f"{prefix}.norm1": units.norm1.params,
                                   f"{prefix}.attn.softmax": units.softmax,
                                   f"{prefix}.norm2": units.norm2.params,
                                   f"{prefix}.mlp.act": units.gelu})
            self.units["norm"] = self.integer_norm.params
        self._sites = self._make_sites()
        self.sites = tuple(self._sites.values())

    def _check_unit_length(self, model, unit_length):
        if unit_length is None:
            return
        rows = {"softmax": self.num_tokens, "layernorm": model.config["embed_dim"],
                "gelu": max(block.mlp.fc1.out_features for block in model.blocks)}
        if isinstance(unit_length, bool) or not isinstance(unit_length, int):
            raise TypeError(f"unit_length must be an int or None, not {unit_length!r}")
        for unit, n in rows.items():
            if unit_length < n:
                raise ValueError(f"unit_length {unit_length} is shorter than the {unit} "
                                 f"rows of this ViT ({n} elements)")

    def _make_sites(self):
        tokens = tuple(range(self.num_tokens))
        sites = [Site("patch_embed.proj", "patch_embed", None, "gemm", tokens[1:])]
        for index in range(len(self.blocks)):
            prefix = f"blocks.{index}"
            for suffix, kind, operation in (
                    ("norm1", "layernorm", "nonlinear"), ("attn.qkv", "qkv", "gemm"),
                    ("attn.scores", "attn_scores", "gemm"),
                    ("attn.softmax", "softmax", "nonlinear"),
                    ("attn.context", "attn_context", "gemm"), ("attn.proj", "proj", "gemm"),
                    ("norm2", "layernorm", "nonlinear"), ("mlp.fc1", "fc1", "gemm"),
                    ("mlp.act", "gelu", "nonlinear"), ("mlp.fc2", "fc2", "gemm")):
                sites.append(self._site(f"{prefix}.{suffix}", kind, index, operation, tokens))
        sites.append(self._site("norm", "layernorm", None, "nonlinear", tokens))
        sites.append(Site("head", "head", None, "gemm", (0,)))
        return {site.name: site for site in sites}

    def _site(self, name, kind, layer, operation, tokens):
        params = self.units.get(name)
        registers = None if params is None else tuple(
            (stage, bits, signed) for stage, (bits, signed) in params.registers.items())
        return Site(name, kind, layer, operation, tokens, registers)

    def site(self, name):
        """The :class:`Site` called ``name``."""
        return self._sites[name]

    def patches(self, images):
        """int8 im2col rows (B, patches, C * p * p) of the images, in timm's patch order."""
        codes = quantize_activation(images.float(), self.patch_embed.input_scale)
        columns = functional.unfold(codes.float(), self.patch_size, stride=self.patch_size)
        return columns.transpose(1, 2).to(torch.int8)

    def _probabilities(self, prefix, index, block, scores, datapath):
        """int8 attention probabilities of the int32 ``scores`` and their scale."""
        site = self._sites[f"{prefix}.attn.softmax"]
        if self.nonlinear == "int":
            params = self.integer_blocks[index].softmax
            return integer_softmax(scores, params, _hook(site, datapath)).output, 1.0 / ONE
        scores = scores.float() * (block.q_scale * block.k_scale * block.head_scale)
        probabilities = softmax(site, scores, datapath)
        return quantize_activation(probabilities, block.p_scale), block.p_scale

    def _attention(self, prefix, index, block, codes, datapath):
        qkv = block.qkv(self._sites[f"{prefix}.attn.qkv"], codes, datapath)
        batch, tokens, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        heads = block.num_heads
        q, k, v = qkv.reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q_codes = quantize_activation(q, block.q_scale)
        k_codes = quantize_activation(k, block.k_scale).transpose(-2, -1).contiguous()
        v_codes = quantize_activation(v, block.v_scale)
        scores = datapath.gemm(self._sites[f"{prefix}.attn.scores"], q_codes, k_codes)
        p_codes, p_scale = self._probabilities(prefix, index, block, scores, datapath)
        context = datapath.gemm(self._sites[f"{prefix}.attn.context"], p_codes, v_codes)
        context = context.float() * (p_scale * block.v_scale)
        context = context.transpose(1, 2).reshape(batch, tokens, dim)
        return block.proj.forward(self._sites[f"{prefix}.attn.proj"], context, datapath)

    def _block(self, index, block, x, datapath):
        prefix = f"blocks.{index}"
        norm1, norm2 = f"{prefix}.norm1", f"{prefix}.norm2"
        fc1_site, act_site, fc2_site = (self._sites[f"{prefix}.mlp.{name}"]
                                        for name in ("fc1", "act", "fc2"))
        if self.nonlinear == "int":
            units = self.integer_blocks[index]
            codes = units.norm1(self._sites[norm1], x, datapath)
            x = x + self._attention(prefix, index, block, codes, datapath)
            codes = units.norm2(self._sites[norm2], x, datapath)
            hidden = quantize_activation(block.fc1(fc1_site, codes, datapath), units.gelu_scale)
            hidden = integer_gelu(hidden, units.gelu, _hook(act_site, datapath)).output
            return x + units.fc2(fc2_site, hidden, datapath)
        normed = layer_norm(self._sites[norm1], x, block.norm1, datapath)
        codes = quantize_activation(normed, block.qkv.input_scale)
        x = x + self._attention(prefix, index, block, codes, datapath)
        normed = layer_norm(self._sites[norm2], x, block.norm2, datapath)
        hidden = block.fc1.forward(fc1_site, normed, datapath)
        hidden = gelu(act_site, hidden, datapath)
        return x + block.fc2.forward(fc2_site, hidden, datapath)

    @torch.no_grad()
    def __call__(self, images, datapath=None):
        """Logits (B, classes) for images (B, C, H, W), every operation run by ``datapath``."""
        datapath = Datapath() if datapath is None else datapath
        patches = self.patch_embed(self._sites["patch_embed.proj"], self.patches(images),
                                   datapath)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        x = torch.cat([cls, patches], dim=1) + self.pos_embed
        for index, block in enumerate(self.blocks):
            x = self._block(index, block, x, datapath)
        if self.nonlinear == "int":
            codes = self.integer_norm(self._sites["norm"], x, datapath)
        else:
            normed = layer_norm(self._sites["norm"], x, self.norm, datapath)
            codes = quantize_activation(normed, self.head.input_scale)
        return self.head(self._sites["head"], codes[:, :1], datapath)[:, 0]
