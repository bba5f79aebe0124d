"""The MobileViT transformer stage kind.

A stage: a downsampling MBConv transition (kernel `TRANSITION_KERNEL`, expansion
`layout.transition_expansion`), then a MobileViT block: local kxk conv + 1x1 projection, unfold
into patches, `depth` pre-norm transformer layers (heads x `layout.head_dim`, MLP `mlp_ratio`),
norm, fold, 1x1 projection, residual (or a fusion conv). Its static module is
`autovit.blocks.mobilevit.nn.TransformerStageModule`, its elastic one `autovit.blocks.mobilevit.nn.ElasticTransformerStage`.

Latency tables split a stage into its fixed part (``tfixed``) and, per layer, an attention half
(``attn``) and an MLP half (``mlp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from autovit.blocks import mbconv
from autovit.blocks.base import (
    BlockSig,
    Gene,
    StageKind,
    choices_dataclass,
    conv_bn_params,
    conv_macs,
    down,
    expand_width,
    register_table_kinds,
)
from autovit.errors import ArchError

register_table_kinds("tfixed", "attn", "mlp")

TRANSITION_KERNEL = 3  # depthwise kernel of the stage's downsampling MBConv transition (not searched)


@dataclass(frozen=True)
class TransformerStage(Gene):
    """A MobileViT-style stage: a downsampling MBConv, then `depth` transformer layers."""

    width: int
    depth: int
    heads: int
    mlp_ratio: float


TransformerChoices = choices_dataclass(TransformerStage, "TransformerChoices")


class TransformerKind(StageKind):
    name = "transformer"
    title = "Transformer"
    gene = TransformerStage
    choices = TransformerChoices

    def key(self, stage: TransformerStage) -> str:
        return f"{stage.width}x{stage.depth}h{stage.heads}r{stage.mlp_ratio}"

    def check(self, stage: TransformerStage, where: str) -> None:
        s = stage
        if s.width < 1 or s.depth < 1 or s.heads < 1 or s.mlp_ratio <= 0:
            raise ArchError(f"{where} needs width, depth, heads >= 1 and mlp_ratio > 0, got {s}")


TRANSFORMER = TransformerKind()


# ---------------------------------------------------------------------- costs and operator counts
class FixedCounts(NamedTuple):
    """Counts of a stage's fixed part: transition MBConv, local convs, norm, output projection, fusion."""

    params: int
    dense_macs: int
    depthwise_macs: int
    elements: int
    out_size: int


def fixed_counts(cin: int, dim: int, stride: int, size: int, transition_expansion: float, local_kernel: int,
                 fusion_kernel: int) -> FixedCounts:
    t = mbconv.block_counts(cin, dim, transition_expansion, TRANSITION_KERNEL, stride, size)
    out = t.out_size
    hw = out * out
    params = t.params + conv_bn_params(dim, dim, local_kernel) + dim * dim  # conv_kxk, conv_1x1
    params += 2 * dim + conv_bn_params(dim, dim, 1)  # final norm, conv_proj
    dense = t.dense_macs + conv_macs(dim, dim, local_kernel, hw) + 2 * conv_macs(dim, dim, 1, hw)
    if fusion_kernel:
        params += conv_bn_params(2 * dim, dim, fusion_kernel)
        dense += conv_macs(2 * dim, dim, fusion_kernel, hw)
    elements = t.elements + 6 * dim * hw  # local convs, projection, fold/unfold and norm
    return FixedCounts(params, dense, t.depthwise_macs, elements, out)


def padded_tokens(side: int, patch: int) -> int:
    """Pixels of the feature map after resizing its side up to a multiple of the patch size."""
    padded = math.ceil(side / patch) * patch
    return padded * padded


class LayerCounts(NamedTuple):
    """Counts of one transformer layer (attention half + MLP half)."""

    attn_params: int
    attn_linear_macs: int
    attention_macs: int  # q @ k^T and attn @ v
    mlp_params: int
    mlp_linear_macs: int

    @property
    def params(self) -> int:
        return self.attn_params + self.mlp_params

    @property
    def macs(self) -> int:
        return self.attn_linear_macs + self.attention_macs + self.mlp_linear_macs


def layer_counts(dim: int, heads: int, head_dim: int, mlp_ratio: float, tokens: int, patch_area: int) -> LayerCounts:
    inner = heads * head_dim
    hidden = expand_width(dim, mlp_ratio)
    n = tokens // patch_area  # sequence length: patches
    return LayerCounts(
        attn_params=2 * dim + dim * 3 * inner + 3 * inner + inner * dim + dim,  # LayerNorm, qkv, proj
        attn_linear_macs=tokens * (dim * 3 * inner + inner * dim),
        attention_macs=2 * patch_area * heads * n * n * head_dim,
        mlp_params=2 * dim + dim * hidden + hidden + hidden * dim + dim,  # LayerNorm, fc1, fc2
        mlp_linear_macs=tokens * 2 * dim * hidden,
    )


def stage_cost(cin: int, stage: TransformerStage, stride: int, size: int, layout: Any) -> tuple[int, int, int]:
    """(params, macs, out_size) of a whole transformer stage."""
    f = fixed_counts(cin, stage.width, stride, size, layout.transition_expansion, layout.local_kernel,
                     layout.fusion_kernel)
    layer = layer_counts(stage.width, stage.heads, layout.head_dim, stage.mlp_ratio,
                         padded_tokens(f.out_size, layout.patch_size), layout.patch_size ** 2)
    return (f.params + stage.depth * layer.params, f.dense_macs + f.depthwise_macs + stage.depth * layer.macs,
            f.out_size)


# ---------------------------------------------------------------------- latency-table signatures
def tfixed_sig(lay: Any, cin: int, width: int, s: int, h: int) -> BlockSig:
    return BlockSig.make("tfixed", cin=cin, d=width, s=s, te=lay.transition_expansion, lk=lay.local_kernel,
                         fk=lay.fusion_kernel, p=lay.patch_size, act=lay.activation, h=h)


def attn_sig(lay: Any, width: int, heads: int, h: int) -> BlockSig:
    return BlockSig.make("attn", d=width, heads=heads, hd=lay.head_dim, p=lay.patch_size, h=h)


def mlp_sig(lay: Any, width: int, ratio: float, h: int) -> BlockSig:
    return BlockSig.make("mlp", d=width, r=ratio, p=lay.patch_size, act=lay.activation, h=h)


def stage_blocks(lay: Any, cin: int, stage: TransformerStage, stride: int, h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one transformer stage: its fixed part plus depth x (attn + mlp)."""
    side = down(h, stride)
    return [(tfixed_sig(lay, cin, stage.width, stride, h), 1),
            (attn_sig(lay, stage.width, stage.heads, side), stage.depth),
            (mlp_sig(lay, stage.width, stage.mlp_ratio, side), stage.depth)]
