"""A plain Vision Transformer in float, with timm's parameter names.

The module tree (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.norm1``,
``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``,
``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``, ``norm``, ``head``) and the arithmetic
(pre-norm blocks, LayerNorm eps 1e-6, exact GELU, class-token pooling) follow timm's
``VisionTransformer``, so a timm or DeiT state_dict loads strictly. timm itself is not
imported: it drags in torchvision. This float model is what is trained; the int8 model of
:mod:`sw.models.quantization` is built from it.
"""

import torch
from torch import nn

from sw.parameter_checks import check_positive_integer

__all__ = ["VisionTransformer", "vit_tiny_patch16_224", "deit_tiny_patch16_224",
           "tiny_digits_vit", "tiny_mnist_vit", "LAYER_NORM_EPS"]

#: timm's LayerNorm epsilon for ViTs.
LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Cuts the image into non-overlapping patches and projects each to ``embed_dim``."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images):
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` projection, scaled dot product, ``proj``.

    ``attn_drop`` (timm's, kept at rate 0) receives the attention probabilities, which
    lets calibration observe them.
    """

    def __init__(self, dim, num_heads, qkv_bias, drop_rate=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop_rate)

    def forward(self, x):
        return self.proj_drop(self.proj(self.attend(self.qkv(x))))

    def attend(self, qkv):
        """Context vectors (B, tokens, dim) of the scaled dot-product attention of ``qkv``
        (the ``qkv`` projection's output), before ``proj``."""
        return self.context(*self.heads(qkv).unbind(0))

    def heads(self, qkv):
        """``qkv`` (B, tokens, 3 dim) viewed as (3, B, heads, tokens, head_dim): the queries,
        keys and values of every head."""
        batch, tokens, _ = qkv.shape
        return qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim) \
            .permute(2, 0, 3, 1, 4)

    def context(self, q, k, v):
        """Context vectors (B, queries, dim) of queries ``q`` against keys ``k`` and values
        ``v``, each (B, heads, tokens, head_dim)."""
        attention = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        batch, heads, queries, head_dim = q.shape
        return (attention @ v).transpose(1, 2).reshape(batch, queries, heads * head_dim)


class Mlp(nn.Module):
    """The block's feed-forward network: ``fc1``, GELU, ``fc2``."""

    def __init__(self, dim, hidden_dim, drop_rate=0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop_rate)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def drop_path(x, rate, training):
    """Stochastic depth: drop a residual branch for a random subset of the batch."""
    if rate == 0.0 or not training:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype) >= rate
    return x * keep / (1.0 - rate)


class Block(nn.Module):
    """Pre-norm encoder block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, drop_rate=0.0, drop_path_rate=0.0):
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, drop_rate)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop_rate)

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class VisionTransformer(nn.Module):
    """ViT classifier with a class token and learned position embeddings (timm layout).

    Parameters
    ----------
    img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads : int
        As in timm; ``img_size`` must be a multiple of ``patch_size`` and ``embed_dim`` of
        ``num_heads``.
    mlp_ratio : float
        Hidden width of the MLP over ``embed_dim``.
    qkv_bias : bool
        Whether the ``qkv`` projection has a bias.
    drop_rate, drop_path_rate : float
        Dropout after the projections and in the MLP, and stochastic depth growing linearly
        to ``drop_path_rate`` in the last block: training regularisers only, with no
        parameters, so state_dicts do not depend on them.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or range, or inconsistent sizes.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000,
                 embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True,
                 drop_rate=0.0, drop_path_rate=0.0):
        super().__init__()
        for name, value in (("img_size", img_size), ("patch_size", patch_size),
                            ("in_chans", in_chans), ("num_classes", num_classes),
                            ("embed_dim", embed_dim), ("depth", depth),
                            ("num_heads", num_heads)):
            check_positive_integer(name, value)
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        if not isinstance(mlp_ratio, (int, float)) or isinstance(mlp_ratio, bool) \
                or mlp_ratio <= 0:
            raise TypeError(f"mlp_ratio must be a positive number, not {mlp_ratio!r}")
        for name, value in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not 0.0 <= value < 1.0:
                raise TypeError(f"{name} must be a number in [0, 1), not {value!r}")
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                           num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=float(mlp_ratio),
                           qkv_bias=bool(qkv_bias))
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            torch.randn(1, self.patch_embed.num_patches + 1, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate,
                  drop_path_rate * index / max(depth - 1, 1))
            for index in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)

    @property
    def num_tokens(self):
        """Tokens per image: the class token (index 0) and one per patch (1 ..)."""
        return self.patch_embed.num_patches + 1

    def embed(self, images):
        """The first block's input (B, tokens, embed_dim): class token and patch embeddings,
        plus the position embedding."""
        patches = self.patch_embed(images)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def forward_features(self, images):
        """Encoded tokens (B, tokens, embed_dim) after the final norm."""
        return self.norm(self.blocks(self.embed(images)))

    def forward(self, images):
        return self.head(self.forward_features(images)[:, 0])


def _init_weights(module):
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def vit_tiny_patch16_224(**overrides):
    """ViT-Ti/16 at 224x224 (timm ``vit_tiny_patch16_224``): width 192, 12 blocks, 3 heads."""
    config = dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=192,
                  depth=12, num_heads=3, mlp_ratio=4.0, qkv_bias=True)
    return VisionTransformer(**{**config, **overrides})


def deit_tiny_patch16_224(**overrides):
    """DeiT-Ti (timm ``deit_tiny_patch16_224``): the same network as ViT-Ti/16."""
    return vit_tiny_patch16_224(**overrides)


def tiny_digits_vit(**overrides):
    """The ViT for 8x8 ``digits``: 2x2 patches (16 + 1 tokens), width 64, 2 blocks, 4 heads."""
    config = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64,
                  depth=2, num_heads=4, mlp_ratio=2.0, qkv_bias=True)
    return VisionTransformer(**{**config, **overrides})


def tiny_mnist_vit(**overrides):
    """The ViT for 28x28 ``mnist5k``: 7x7 patches (16 + 1 tokens), width 64, 2 blocks."""
    config = dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=64,
                  depth=2, num_heads=4, mlp_ratio=2.0, qkv_bias=True)
    return VisionTransformer(**{**config, **overrides})
