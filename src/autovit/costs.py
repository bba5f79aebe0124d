"""Closed-form parameter and MAC counts of an `Arch`, without building the network.

Mirrors `autovit.model` layer by layer. MACs follow torch's FlopCounterMode (FLOPs / 2):
convolutions, linear layers and the two attention matmuls; norms, activations, pooling and
resizing are not counted. Batch size 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autovit.arch import Arch
from autovit.model import expand_width


@dataclass(frozen=True)
class StageCost:
    name: str
    params: int
    macs: int
    out_channels: int
    out_size: int  # spatial side of the output feature map


def _conv_bn(cin: int, cout: int, k: int, groups: int = 1) -> int:
    return k * k * (cin // groups) * cout + 2 * cout


def _conv_macs(cin: int, cout: int, k: int, out_hw: int, groups: int = 1) -> int:
    return k * k * (cin // groups) * cout * out_hw


def _down(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def _mbconv(cin: int, cout: int, e: float, k: int, stride: int, size: int) -> tuple[int, int, int]:
    """(params, macs, out_size) of one MBConv block."""
    hidden = expand_width(cin, e)
    out = _down(size, stride)
    params = _conv_bn(cin, hidden, 1) + _conv_bn(hidden, hidden, k, hidden) + _conv_bn(hidden, cout, 1)
    macs = _conv_macs(cin, hidden, 1, size * size)
    macs += _conv_macs(hidden, hidden, k, out * out, hidden) + _conv_macs(hidden, cout, 1, out * out)
    return params, macs, out


def _transformer_layer(dim: int, heads: int, head_dim: int, mlp_ratio: float, tokens: int,
                       patch_area: int) -> tuple[int, int]:
    inner = heads * head_dim
    hidden = expand_width(dim, mlp_ratio)
    params = 4 * dim  # two LayerNorms
    params += dim * 3 * inner + 3 * inner + inner * dim + dim  # qkv, proj
    params += dim * hidden + hidden + hidden * dim + dim  # mlp
    n = tokens // patch_area  # sequence length: patches
    macs = tokens * (dim * 3 * inner + inner * dim + 2 * dim * hidden)
    macs += 2 * patch_area * heads * n * n * head_dim  # q @ k^T and attn @ v
    return params, macs


def stage_costs(arch: Arch, num_classes: int = 1000, in_chans: int = 3) -> list[StageCost]:
    """Per-stage params and MACs (stem, each MBConv and transformer stage, head)."""
    lay = arch.layout
    out: list[StageCost] = []
    size = _down(arch.resolution, lay.stem_stride)
    out.append(StageCost("stem", _conv_bn(in_chans, arch.stem_width, lay.stem_kernel),
                         _conv_macs(in_chans, arch.stem_width, lay.stem_kernel, size * size), arch.stem_width, size))
    chs = arch.stem_width
    for i, (s, stride) in enumerate(zip(arch.mbconv, lay.mbconv_strides)):
        params = macs = 0
        for d in range(s.depth):
            p, m, size = _mbconv(chs if d == 0 else s.width, s.width, s.expansion, s.kernel,
                                 stride if d == 0 else 1, size)
            params, macs = params + p, macs + m
        chs = s.width
        out.append(StageCost(f"mbconv{i + 1}", params, macs, chs, size))
    for i, (s, stride) in enumerate(zip(arch.transformer, lay.transformer_strides)):
        params, macs, size = _mbconv(chs, s.width, lay.transition_expansion, 3, stride, size)
        dim, hw = s.width, size * size
        params += _conv_bn(dim, dim, lay.local_kernel) + dim * dim  # conv_kxk, conv_1x1
        macs += _conv_macs(dim, dim, lay.local_kernel, hw) + _conv_macs(dim, dim, 1, hw)
        padded = math.ceil(size / lay.patch_size) * lay.patch_size
        for _ in range(s.depth):
            p, m = _transformer_layer(dim, s.heads, lay.head_dim, s.mlp_ratio, padded * padded,
                                      lay.patch_size ** 2)
            params, macs = params + p, macs + m
        params += 2 * dim + _conv_bn(dim, dim, 1)  # final norm, conv_proj
        macs += _conv_macs(dim, dim, 1, hw)
        if lay.fusion_kernel:
            params += _conv_bn(2 * dim, dim, lay.fusion_kernel)
            macs += _conv_macs(2 * dim, dim, lay.fusion_kernel, hw)
        chs = dim
        out.append(StageCost(f"transformer{i + 1}", params, macs, chs, size))
    params = macs = 0
    pooled = chs
    if lay.head_expansion:
        pooled = expand_width(chs, lay.head_expansion)
        params += _conv_bn(chs, pooled, 1)
        macs += _conv_macs(chs, pooled, 1, size * size)
    params += pooled * arch.head_width + arch.head_width
    macs += pooled * arch.head_width
    if num_classes > 0:
        params += arch.head_width * num_classes + num_classes
        macs += arch.head_width * num_classes
    out.append(StageCost("head", params, macs, arch.head_width, 1))
    return out


def count_params(arch: Arch, num_classes: int = 1000) -> int:
    """Number of trainable parameters of `build_model(arch, num_classes)`."""
    return sum(s.params for s in stage_costs(arch, num_classes))


def count_macs(arch: Arch, num_classes: int = 1000) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (FlopCounterMode FLOPs / 2)."""
    return sum(s.macs for s in stage_costs(arch, num_classes))
