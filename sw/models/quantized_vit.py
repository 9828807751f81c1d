"""The int8 Vision Transformer: every GEMM on the accelerator model, nonlinearities in float.

Built from a trained :class:`sw.models.vit.VisionTransformer` and its calibration
(:mod:`sw.models.quantization`). The patch embedding (as an im2col GEMM), ``qkv``, both attention
matmuls (Q K^T and attention x V, per head), ``proj``, ``fc1``, ``fc2`` and ``head`` run
int8 x int8 -> int32 through ``datapath.gemm``; softmax, GELU and LayerNorm run in float32
and show their intermediate values to ``datapath.nonlinear`` (see :mod:`sw.datapath`).
Residual additions, the class token and position embeddings stay in float.
"""

import torch
from torch.nn import functional

from sw.datapath import Datapath, Site
from sw.models.quantization import QuantizedLinear, activation_scale, quantize_activation

__all__ = ["QuantizedViT", "VIT_KINDS", "softmax", "layer_norm", "gelu"]

#: Module kinds of the ViT's sites, in the order a block runs them.
VIT_KINDS = ("patch_embed", "layernorm", "qkv", "attn_scores", "softmax", "attn_context",
             "proj", "fc1", "gelu", "fc2", "head")


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


class _Norm:
    def __init__(self, module):
        self.weight = module.weight.detach().float().clone()
        self.bias = module.bias.detach().float().clone()
        self.eps = module.eps


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
        Calibration from :func:`sw.models.quantization.calibrate`.

    Members
    -------
    sites : tuple of Site
        Every operation, in execution order; tokens are 0 (class) and 1 .. patches.
    """

    def __init__(self, model, max_abs):
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
        self._sites = self._make_sites()
        self.sites = tuple(self._sites.values())

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
                sites.append(Site(f"{prefix}.{suffix}", kind, index, operation, tokens))
        sites.append(Site("norm", "layernorm", None, "nonlinear", tokens))
        sites.append(Site("head", "head", None, "gemm", (0,)))
        return {site.name: site for site in sites}

    def site(self, name):
        """The :class:`Site` called ``name``."""
        return self._sites[name]

    def patches(self, images):
        """int8 im2col rows (B, patches, C * p * p) of the images, in timm's patch order."""
        codes = quantize_activation(images.float(), self.patch_embed.input_scale)
        columns = functional.unfold(codes.float(), self.patch_size, stride=self.patch_size)
        return columns.transpose(1, 2).to(torch.int8)

    def _attention(self, prefix, block, x, datapath):
        batch, tokens, dim = x.shape
        heads = block.num_heads
        qkv = block.qkv.forward(self._sites[f"{prefix}.attn.qkv"], x, datapath)
        q, k, v = qkv.reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q_codes = quantize_activation(q, block.q_scale)
        k_codes = quantize_activation(k, block.k_scale).transpose(-2, -1).contiguous()
        v_codes = quantize_activation(v, block.v_scale)
        scores = datapath.gemm(self._sites[f"{prefix}.attn.scores"], q_codes, k_codes)
        scores = scores.float() * (block.q_scale * block.k_scale * block.head_scale)
        probabilities = softmax(self._sites[f"{prefix}.attn.softmax"], scores, datapath)
        p_codes = quantize_activation(probabilities, block.p_scale)
        context = datapath.gemm(self._sites[f"{prefix}.attn.context"], p_codes, v_codes)
        context = context.float() * (block.p_scale * block.v_scale)
        context = context.transpose(1, 2).reshape(batch, tokens, dim)
        return block.proj.forward(self._sites[f"{prefix}.attn.proj"], context, datapath)

    def _block(self, index, block, x, datapath):
        prefix = f"blocks.{index}"
        normed = layer_norm(self._sites[f"{prefix}.norm1"], x, block.norm1, datapath)
        x = x + self._attention(prefix, block, normed, datapath)
        normed = layer_norm(self._sites[f"{prefix}.norm2"], x, block.norm2, datapath)
        hidden = block.fc1.forward(self._sites[f"{prefix}.mlp.fc1"], normed, datapath)
        hidden = gelu(self._sites[f"{prefix}.mlp.act"], hidden, datapath)
        return x + block.fc2.forward(self._sites[f"{prefix}.mlp.fc2"], hidden, datapath)

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
        x = layer_norm(self._sites["norm"], x, self.norm, datapath)
        return self.head.forward(self._sites["head"], x[:, :1], datapath)[:, 0]
