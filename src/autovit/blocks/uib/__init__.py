"""The UIB stage kind: MobileNetV4's Universal Inverted Bottleneck.

One block: [kxk depthwise "start" conv (BN, no act)] -> 1x1 expand (BN, act) -> [kxk depthwise
"mid" conv (BN, act)] -> 1x1 linear projection (BN), with a residual when the stride is 1 and the
widths match. The two optional depthwise convs give the four MobileNetV4 variants:

* inverted bottleneck (IB): mid only (``start_kernel: 0``), MobileNetV2's block;
* ConvNext-like: start only (``mid_kernel: 0``);
* ExtraDW: both;
* FFN: neither (two 1x1 convs; not allowed in the first block of a stride-2 stage).

The stride of a stage's first block sits on the mid depthwise conv when there is one, else on the
start one (as timm's `UniversalInvertedResidual`). Its static module is `autovit.blocks.uib.nn.UIB`, its
elastic one `autovit.blocks.uib.nn.ElasticUIB`. The stride is a layout value (`mbconv_strides`:
the conv stage slots of a space), not a gene.
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

register_table_kinds("uib")


@dataclass(frozen=True)
class UIBStage(Gene):
    """A stage of `depth` UIB blocks (`start_kernel` / `mid_kernel`: 0 = no such depthwise conv)."""

    width: int
    depth: int
    expansion: float
    start_kernel: int
    mid_kernel: int

    @property
    def variant(self) -> str:
        """'IB', 'ConvNext', 'ExtraDW' or 'FFN'."""
        return {(False, True): "IB", (True, False): "ConvNext", (True, True): "ExtraDW",
                (False, False): "FFN"}[(bool(self.start_kernel), bool(self.mid_kernel))]


UIBChoices = choices_dataclass(UIBStage, "UIBChoices")


class UIBKind(StageKind):
    name = "uib"
    title = "UIB"
    gene = UIBStage
    choices = UIBChoices

    def key(self, stage: UIBStage) -> str:
        return f"{stage.width}x{stage.depth}e{stage.expansion}a{stage.start_kernel}m{stage.mid_kernel}"

    def check(self, stage: UIBStage, where: str) -> None:
        s = stage
        if s.width < 1 or s.depth < 1 or s.expansion < 1:
            raise ArchError(f"{where} needs width >= 1, depth >= 1 and expansion >= 1, got {s}")
        for name in ("start_kernel", "mid_kernel"):
            k = getattr(s, name)
            if k < 0 or (k and k % 2 == 0):
                raise ArchError(f"{where}.{name} must be 0 (no such depthwise conv) or a positive odd integer, got {k}")

    def check_stride(self, stage: UIBStage, stride: int, where: str) -> None:
        """A strided first block needs a depthwise conv to carry the stride."""
        if stride > 1 and not (stage.start_kernel or stage.mid_kernel):
            raise ArchError(f"{where} is a stride-{stride} stage but has neither a start nor a mid depthwise conv",
                            hint="give stride-2 UIB slots start_kernel or mid_kernel choices without 0")


UIB = UIBKind()


def block_strides(start_kernel: int, mid_kernel: int, stride: int) -> tuple[int, int]:
    """(start dw stride, mid dw stride) of a block: the stride sits on the mid conv when present."""
    return (1, stride) if mid_kernel else (stride, 1)


# ---------------------------------------------------------------------- costs and operator counts
class BlockCounts(NamedTuple):
    """Closed-form counts of one UIB block (MACs as FlopCounterMode FLOPs / 2)."""

    params: int
    dense_macs: int  # 1x1 expand and projection convs
    depthwise_macs: int
    elements: int  # tensor elements read or written by the convs (memory-traffic proxy)
    out_size: int

    @property
    def macs(self) -> int:
        return self.dense_macs + self.depthwise_macs


def block_counts(cin: int, cout: int, expansion: float, start_kernel: int, mid_kernel: int, stride: int,
                 size: int) -> BlockCounts:
    """Params, MACs and elements of one UIB block on a `size` x `size` input."""
    hidden = expand_width(cin, expansion)
    s_start, s_mid = block_strides(start_kernel, mid_kernel, stride)
    params = dense = depthwise = elements = 0
    if start_kernel:
        side = down(size, s_start)
        params += conv_bn_params(cin, cin, start_kernel, cin)
        depthwise += conv_macs(cin, cin, start_kernel, side * side, cin)
        elements += cin * size * size
        size = side
    params += conv_bn_params(cin, hidden, 1)
    dense += conv_macs(cin, hidden, 1, size * size)
    elements += cin * size * size + hidden * size * size
    if mid_kernel:
        side = down(size, s_mid)
        params += conv_bn_params(hidden, hidden, mid_kernel, hidden)
        depthwise += conv_macs(hidden, hidden, mid_kernel, side * side, hidden)
        elements += hidden * side * side
        size = side
    params += conv_bn_params(hidden, cout, 1)
    dense += conv_macs(hidden, cout, 1, size * size)
    elements += cout * size * size
    return BlockCounts(params, dense, depthwise, elements, size)


def stage_cost(cin: int, stage: UIBStage, stride: int, size: int) -> tuple[int, int, int]:
    """(params, macs, out_size) of a whole UIB stage."""
    params = macs = 0
    for d in range(stage.depth):
        c = block_counts(cin if d == 0 else stage.width, stage.width, stage.expansion, stage.start_kernel,
                         stage.mid_kernel, stride if d == 0 else 1, size)
        params, macs, size = params + c.params, macs + c.macs, c.out_size
    return params, macs, size


# ---------------------------------------------------------------------- latency-table signatures
def block_sig(activation: str, cin: int, cout: int, e: float, a: int, k: int, s: int, h: int) -> BlockSig:
    """Signature of one UIB block (`a`: start kernel, `k`: mid kernel, 0 = none)."""
    return BlockSig.make("uib", cin=cin, cout=cout, e=e, a=a, k=k, s=s, act=activation, h=h)


def stage_blocks(activation: str, cin: int, stage: UIBStage, stride: int, h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one UIB stage: a first block, then depth-1 repeated blocks."""
    out = [(block_sig(activation, cin, stage.width, stage.expansion, stage.start_kernel, stage.mid_kernel,
                      stride, h), 1)]
    if stage.depth > 1:
        out.append((block_sig(activation, stage.width, stage.width, stage.expansion, stage.start_kernel,
                              stage.mid_kernel, 1, down(h, stride)), stage.depth - 1))
    return out


def sig_counts(sig: BlockSig) -> BlockCounts:
    """Operator counts of the block of a `uib` signature."""
    p = dict(sig.params)
    return block_counts(int(p["cin"]), int(p["cout"]), p["e"], int(p["a"]), int(p["k"]), int(p["s"]), int(p["h"]))


# Signature parameters whose variants share a shape (imputed from a measured sibling). The kernels
# are knobs only between non-zero sizes: 0 removes a whole conv, so whether a kernel is 0 stays part
# of the shape (PRESENCE_KNOBS).
KNOBS = ("e", "a", "k")
PRESENCE_KNOBS = ("a", "k")


def block_args(stage: Any) -> tuple:
    """The arguments after (in, out) of the block modules' constructors / `set_active`."""
    return (stage.expansion, stage.start_kernel, stage.mid_kernel)
