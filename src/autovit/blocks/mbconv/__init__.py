"""The MBConv stage kind (MobileNetV2 inverted residual, optional squeeze-excite).

One home for what an MBConv stage is: its gene (`MBConvStage`), its choices in a space
(`MBConvChoices`), its closed-form params / MACs and operator counts (`block_counts`, shared by
`autovit.costs` and the latency imputation), and its latency-table signatures. Its static module
is `autovit.blocks.mbconv.nn.MBConv`, its elastic module `autovit.blocks.mbconv.nn.ElasticMBConv`.

A block: 1x1 expand -> kxk depthwise (stride) -> [squeeze-excite] -> 1x1 linear projection,
with a residual when the stride is 1 and the widths match. Squeeze-excite (`se`, the reduction
ratio of the hidden width, 0 = none) is timm's `SEModule` (ReLU, sigmoid gate) with
``expand_width(hidden, se)`` reduced channels; the paper's spaces have it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

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

register_table_kinds("mbconv")


@dataclass(frozen=True)
class MBConvStage(Gene):
    """A stage of MobileNetV2 inverted-residual blocks (`se`: squeeze-excite ratio, 0 = none)."""

    width: int
    depth: int
    expansion: float
    kernel: int
    se: float = 0


MBConvChoices = choices_dataclass(MBConvStage, "MBConvChoices")


class MBConvKind(StageKind):
    name = "mbconv"
    title = "MBConv"
    gene = MBConvStage
    choices = MBConvChoices

    def key(self, stage: MBConvStage) -> str:
        se = f"se{stage.se}" if stage.se else ""
        return f"{stage.width}x{stage.depth}e{stage.expansion}k{stage.kernel}{se}"

    def check(self, stage: MBConvStage, where: str) -> None:
        s = stage
        if s.width < 1 or s.depth < 1 or s.expansion < 1 or s.kernel < 1 or s.kernel % 2 == 0:
            raise ArchError(f"{where} needs width >= 1, depth >= 1, expansion >= 1 and an odd kernel, got {s}")
        if not 0 <= s.se <= 1:
            raise ArchError(f"{where}.se must be 0 (no squeeze-excite) or a ratio in (0, 1], got {s.se}")


MBCONV = MBConvKind()


# ---------------------------------------------------------------------- costs and operator counts
class BlockCounts(NamedTuple):
    """Closed-form counts of one MBConv block (MACs as FlopCounterMode FLOPs / 2)."""

    params: int
    dense_macs: int  # 1x1 expand and projection convs, squeeze-excite convs
    depthwise_macs: int
    elements: int  # tensor elements read or written by the convs (the memory-traffic proxy)
    out_size: int

    @property
    def macs(self) -> int:
        return self.dense_macs + self.depthwise_macs


def se_width(hidden: int, se: float) -> int:
    """Reduced channels of the squeeze-excite of a block with `hidden` channels (0: no SE)."""
    return expand_width(hidden, se) if se else 0


def block_counts(cin: int, cout: int, expansion: float, kernel: int, stride: int, size: int,
                 se: float = 0) -> BlockCounts:
    """Params, MACs and elements of one MBConv block on a `size` x `size` input."""
    hidden = expand_width(cin, expansion)
    out = down(size, stride)
    params = conv_bn_params(cin, hidden, 1) + conv_bn_params(hidden, hidden, kernel, hidden)
    params += conv_bn_params(hidden, cout, 1)
    dense = conv_macs(cin, hidden, 1, size * size) + conv_macs(hidden, cout, 1, out * out)
    depthwise = conv_macs(hidden, hidden, kernel, out * out, hidden)
    elements = cin * size * size + hidden * size * size + hidden * out * out + cout * out * out
    rd = se_width(hidden, se)
    if rd:
        params += hidden * rd + rd + rd * hidden + hidden  # fc1, fc2 (1x1 convs with bias)
        dense += 2 * hidden * rd
        elements += hidden * out * out
    return BlockCounts(params, dense, depthwise, elements, out)


def stage_cost(cin: int, stage: MBConvStage, stride: int, size: int) -> tuple[int, int, int]:
    """(params, macs, out_size) of a whole MBConv stage."""
    params = macs = 0
    for d in range(stage.depth):
        c = block_counts(cin if d == 0 else stage.width, stage.width, stage.expansion, stage.kernel,
                         stride if d == 0 else 1, size, stage.se)
        params, macs, size = params + c.params, macs + c.macs, c.out_size
    return params, macs, size


# ---------------------------------------------------------------------- latency-table signatures
def block_sig(activation: str, cin: int, cout: int, e: float, k: int, s: int, h: int, se: float = 0) -> BlockSig:
    """Signature of one MBConv block; `se` appears only when on, so tables profiled before
    squeeze-excite existed still serve SE-off archs."""
    extra = {"se": se} if se else {}
    return BlockSig.make("mbconv", cin=cin, cout=cout, e=e, k=k, s=s, act=activation, h=h, **extra)


def stage_blocks(activation: str, cin: int, stage: Any, stride: int, h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one MBConv stage: a first block, then depth-1 repeated blocks."""
    se = getattr(stage, "se", 0)
    out = [(block_sig(activation, cin, stage.width, stage.expansion, stage.kernel, stride, h, se), 1)]
    if stage.depth > 1:
        out.append((block_sig(activation, stage.width, stage.width, stage.expansion, stage.kernel, 1,
                              down(h, stride), se), stage.depth - 1))
    return out


def sig_counts(sig: BlockSig) -> BlockCounts:
    """Operator counts of the block of an `mbconv` signature."""
    p = dict(sig.params)
    return block_counts(int(p["cin"]), int(p["cout"]), p["e"], int(p["k"]), int(p["s"]), int(p["h"]),
                        p.get("se", 0))


# Signature parameters whose variants share a shape (imputed from a measured sibling).
KNOBS = ("e", "k", "se")
