"""The Mobile MQA stage kind: MobileNetV4's multi-query attention on 2D maps, each followed by an FFN.

A stage: a downsampling MBConv transition (kernel `TRANSITION_KERNEL`, expansion
`layout.transition_expansion`, as the MobileViT stages), then `depth` layers of

    x = x + MQA(BN(x));  x = x + FFN(x)

MQA: `heads` query heads (1x1 conv to heads x `layout.head_dim`) attend over one shared key head and
one shared value head (1x1 convs to `layout.head_dim`), computed from the map itself
(``kv_stride`` 1) or from a depthwise-3x3-stride-2-downsampled copy of it (``kv_stride`` 2: 4x fewer
keys, as MobileNetV4's hybrids); a 1x1 conv projects the heads back to the width. Convs have no
bias, as in timm's `MultiQueryAttention2d`. FFN: UIB's FFN variant (1x1 expand by ``ffn_ratio``
with BN + act, 1x1 projection with BN). Its static module is `autovit.blocks.mqa.nn.MQAStageModule`, its
elastic one `autovit.blocks.mqa.nn.ElasticMQAStage`.

Latency tables hold the transition as an ``mbconv`` block and each layer as one ``mqa`` block.
"""

from __future__ import annotations

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
from autovit.blocks.mobilevit import TRANSITION_KERNEL
from autovit.errors import ArchError

register_table_kinds("mqa")

KV_KERNEL = 3  # depthwise kernel of the key/value downsampling (kv_stride 2; not searched)


@dataclass(frozen=True)
class MQAStage(Gene):
    """A Mobile MQA stage: a downsampling MBConv, then `depth` (MQA + FFN) layers."""

    width: int
    depth: int
    heads: int
    kv_stride: int
    ffn_ratio: float


MQAChoices = choices_dataclass(MQAStage, "MQAChoices")


class MQAKind(StageKind):
    name = "mqa"
    title = "MQA"
    gene = MQAStage
    choices = MQAChoices

    def key(self, stage: MQAStage) -> str:
        return f"{stage.width}x{stage.depth}h{stage.heads}kv{stage.kv_stride}f{stage.ffn_ratio}"

    def check(self, stage: MQAStage, where: str) -> None:
        s = stage
        if s.width < 1 or s.depth < 1 or s.heads < 1 or s.ffn_ratio <= 0:
            raise ArchError(f"{where} needs width, depth, heads >= 1 and ffn_ratio > 0, got {s}")
        if s.kv_stride not in (1, 2):
            raise ArchError(f"{where}.kv_stride must be 1 (full keys/values) or 2 (downsampled), got {s.kv_stride}")


MQA = MQAKind()


# ---------------------------------------------------------------------- costs and operator counts
class LayerCounts(NamedTuple):
    """Closed-form counts of one MQA + FFN layer (MACs as FlopCounterMode FLOPs / 2)."""

    params: int
    dense_macs: int  # q, k, v, output and FFN 1x1 convs
    depthwise_macs: int  # key/value downsampling
    attention_macs: int  # q @ k^T and attn @ v
    elements: int
    keys: int  # key/value positions

    @property
    def macs(self) -> int:
        return self.dense_macs + self.depthwise_macs + self.attention_macs


def layer_counts(dim: int, heads: int, key_dim: int, kv_stride: int, ffn_ratio: float, side: int) -> LayerCounts:
    """Counts of one layer on a `side` x `side` map of `dim` channels."""
    hw = side * side
    kv_side = down(side, kv_stride)
    m = kv_side * kv_side
    inner = heads * key_dim
    hidden = expand_width(dim, ffn_ratio)
    params = 2 * dim  # BN before the attention
    dense = depthwise = 0
    if kv_stride > 1:
        params += conv_bn_params(dim, dim, KV_KERNEL, dim)
        depthwise += conv_macs(dim, dim, KV_KERNEL, m, dim)
    params += dim * inner + 2 * dim * key_dim + inner * dim  # q, k, v, output convs (no bias)
    dense += dim * inner * hw + 2 * dim * key_dim * m + inner * dim * hw
    attention = 2 * heads * hw * m * key_dim
    params += conv_bn_params(dim, hidden, 1) + conv_bn_params(hidden, dim, 1)
    dense += 2 * dim * hidden * hw
    elements = 4 * dim * hw + 2 * inner * hw + 2 * key_dim * m + heads * hw * m + 2 * hidden * hw
    return LayerCounts(params, dense, depthwise, attention, elements, m)


def stage_cost(cin: int, stage: MQAStage, stride: int, size: int, layout: Any) -> tuple[int, int, int]:
    """(params, macs, out_size) of a whole MQA stage."""
    t = mbconv.block_counts(cin, stage.width, layout.transition_expansion, TRANSITION_KERNEL, stride, size)
    layer = layer_counts(stage.width, stage.heads, layout.head_dim, stage.kv_stride, stage.ffn_ratio, t.out_size)
    return t.params + stage.depth * layer.params, t.macs + stage.depth * layer.macs, t.out_size


# ---------------------------------------------------------------------- latency-table signatures
def layer_sig(lay: Any, width: int, heads: int, kv_stride: int, ffn_ratio: float, h: int) -> BlockSig:
    return BlockSig.make("mqa", d=width, heads=heads, kd=lay.head_dim, kvs=kv_stride, r=ffn_ratio,
                         act=lay.activation, h=h)


def stage_blocks(lay: Any, cin: int, stage: MQAStage, stride: int, h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one MQA stage: its MBConv transition plus depth x (MQA + FFN)."""
    return [(mbconv.block_sig(lay.activation, cin, stage.width, lay.transition_expansion, TRANSITION_KERNEL,
                              stride, h), 1),
            (layer_sig(lay, stage.width, stage.heads, stage.kv_stride, stage.ffn_ratio, down(h, stride)), stage.depth)]


def sig_counts(sig: BlockSig) -> LayerCounts:
    """Operator counts of the layer of an `mqa` signature."""
    p = dict(sig.params)
    return layer_counts(int(p["d"]), int(p["heads"]), int(p["kd"]), int(p["kvs"]), p["r"], int(p["h"]))
