"""Closed-form parameter and MAC counts of an `Arch`, without building the network.

Sums the closed-form costs each block kind gives for itself (`autovit.blocks`), which mirror
`autovit.model` layer by layer. MACs follow torch's FlopCounterMode (FLOPs / 2): convolutions,
linear layers and the two attention matmuls; norms, activations, pooling and resizing are not
counted. Batch size 1.
"""

from __future__ import annotations

from autovit.arch import Arch
from autovit.blocks import MQA, UIB, mbconv, mobilevit, mqa, uib
from autovit.blocks import kind_of
from autovit.blocks.base import StageCost
from autovit.blocks.head import head_cost
from autovit.blocks.stem import stem_cost

__all__ = ["StageCost", "count_macs", "count_params", "stage_costs"]


def stage_costs(arch: Arch, num_classes: int = 1000, in_chans: int = 3) -> list[StageCost]:
    """Per-stage params and MACs (stem, each conv (MBConv / UIB) and attention (transformer / MQA) stage, head)."""
    lay = arch.layout
    out = [stem_cost(lay, arch.resolution, arch.stem_width, in_chans)]
    chs, size = arch.stem_width, out[0].out_size
    for i, (s, stride) in enumerate(zip(arch.mbconv, lay.mbconv_strides)):
        kind = kind_of(s)
        params, macs, size = (uib if kind is UIB else mbconv).stage_cost(chs, s, stride, size)
        chs = s.width
        out.append(StageCost(f"{kind.name}{i + 1}", params, macs, chs, size))
    for i, (s, stride) in enumerate(zip(arch.transformer, lay.transformer_strides)):
        kind = kind_of(s)
        params, macs, size = (mqa if kind is MQA else mobilevit).stage_cost(chs, s, stride, size, lay)
        chs = s.width
        out.append(StageCost(f"{kind.name}{i + 1}", params, macs, chs, size))
    out.append(head_cost(lay, chs, arch.head_width, size, num_classes))
    return out


def count_params(arch: Arch, num_classes: int = 1000) -> int:
    """Number of trainable parameters of `build_model(arch, num_classes)`."""
    return sum(s.params for s in stage_costs(arch, num_classes))


def count_macs(arch: Arch, num_classes: int = 1000) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (FlopCounterMode FLOPs / 2)."""
    return sum(s.macs for s in stage_costs(arch, num_classes))
