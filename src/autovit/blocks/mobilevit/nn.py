"""The MobileViT transformer-stage kind's torch modules: the static `TransformerStageModule`
(MBConv transition + `MobileViTBlock`) and the elastic `ElasticTransformerStage`."""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from autovit.blocks.base import expand_width
from autovit.blocks.elastic import (
    Elastic,
    ElasticAttention,
    ElasticBlock,
    ElasticConv2d,
    ElasticConvBNAct,
    ElasticLayerNorm,
    ElasticMlp,
    set_plain,
)
from autovit.blocks.layers import Attention, ConvBNAct, Mlp
from autovit.blocks.mbconv.nn import ElasticMBConv, MBConv
from autovit.blocks.mobilevit import TRANSITION_KERNEL, TransformerStage


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float, act: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, expand_width(dim, mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def unfold_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * patch^2, N, C]: one sequence of N patches per pixel position.

    Maps whose sides are not multiples of `patch` are resized up first (as MobileViT does);
    `fold_patches(y, patch, (H, W))` undoes both steps.
    """
    B, C, H, W = x.shape
    nh, nw = math.ceil(H / patch), math.ceil(W / patch)
    if nh * patch != H or nw * patch != W:
        x = F.interpolate(x, size=(nh * patch, nw * patch), mode="bilinear", align_corners=False)
    x = x.reshape(B * C * nh, patch, nw, patch).transpose(1, 2)
    return x.reshape(B, C, nh * nw, patch * patch).transpose(1, 3).reshape(B * patch * patch, nh * nw, C)


def fold_patches(x: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `unfold_patches` for a map of spatial `size` (H, W)."""
    H, W = size
    nh, nw = math.ceil(H / patch), math.ceil(W / patch)
    C = x.shape[-1]
    B = x.shape[0] // (patch * patch)
    x = x.contiguous().view(B, patch * patch, nh * nw, C)
    x = x.transpose(1, 3).reshape(B * C * nh, nw, patch, patch)
    x = x.transpose(1, 2).reshape(B, C, nh * patch, nw * patch)
    if nh * patch != H or nw * patch != W:
        x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
    return x


@register_notrace_module  # shape-dependent unfold/fold: a leaf for torch.fx (as timm's MobileVitBlock)
class MobileViTBlock(nn.Module):
    """Local nxn conv + pointwise projection, unfold, global attention across patches, fold,
    1x1 projection, then fusion with the block input (kxk conv over the concatenation)."""

    def __init__(self, dim: int, stage: TransformerStage, head_dim: int, patch: int, local_kernel: int,
                 fusion_kernel: int, act: str) -> None:
        super().__init__()
        self.patch = patch
        self.conv_kxk = ConvBNAct(dim, dim, local_kernel, act=act)
        self.conv_1x1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.layers = nn.Sequential(*[TransformerLayer(dim, stage.heads, head_dim, stage.mlp_ratio, act)
                                      for _ in range(stage.depth)])
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvBNAct(dim, dim, 1, act=act)
        self.fusion = ConvBNAct(2 * dim, dim, fusion_kernel, act=act) if fusion_kernel else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        size = (x.shape[-2], x.shape[-1])
        y = unfold_patches(self.conv_1x1(self.conv_kxk(x)), self.patch)
        y = self.norm(self.layers(y))
        y = self.conv_proj(fold_patches(y, self.patch, size))
        if self.fusion is None:
            return shortcut + y
        return self.fusion(torch.cat((shortcut, y), dim=1))


class TransformerStageModule(nn.Module):
    """Downsampling MBConv (the stage transition) followed by a MobileViT block."""

    def __init__(self, in_chs: int, stage: TransformerStage, stride: int, arch: Any) -> None:
        super().__init__()
        lay = arch.layout
        self.transition = MBConv(in_chs, stage.width, lay.transition_expansion, TRANSITION_KERNEL, stride,
                                 lay.activation)
        self.block = MobileViTBlock(stage.width, stage, lay.head_dim, lay.patch_size, lay.local_kernel,
                                    lay.fusion_kernel, lay.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.transition(x))



class ElasticTransformerLayer(ElasticBlock):
    """Pre-norm transformer layer with elastic width, heads and MLP ratio."""

    def __init__(self, dim: int, heads: int, head_dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.norm1 = ElasticLayerNorm(dim)
        self.attn = ElasticAttention(dim, heads, head_dim)
        self.norm2 = ElasticLayerNorm(dim)
        self.mlp = ElasticMlp(dim, hidden, act)

    def set_active(self, dim: int, heads: int, mlp_ratio: float) -> None:
        self.norm1.set_active(dim)
        self.attn.set_active(dim, heads)
        self.norm2.set_active(dim)
        self.mlp.set_active(dim, expand_width(dim, mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.norm1
        yield from self.attn.active_leaves()
        yield self.norm2
        yield from self.mlp.active_leaves()


class ElasticMobileViTBlock(ElasticBlock):
    """MobileViT block with elastic width and depth (trailing layers skipped); mirrors
    `MobileViTBlock`. Depth 0 (used only to count the block's own convs and norm) runs no layer."""

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, layout: Any) -> None:
        super().__init__()
        act = layout.activation
        self.patch = layout.patch_size
        self.conv_kxk = ElasticConvBNAct(dim, dim, layout.local_kernel, act=act)
        self.conv_1x1 = ElasticConv2d(dim, dim, 1)
        self.layers = nn.ModuleList([ElasticTransformerLayer(dim, heads, layout.head_dim, hidden, act)
                                     for _ in range(depth)])
        self.norm = ElasticLayerNorm(dim)
        self.conv_proj = ElasticConvBNAct(dim, dim, 1, act=act)
        self.fusion = (ElasticConvBNAct(2 * dim, dim, layout.fusion_kernel, act=act, in_groups=2)
                       if layout.fusion_kernel else None)

    def set_active(self, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        self.conv_kxk.set_active(dim, dim)
        self.conv_1x1.set_active(dim, dim)
        for layer in self.layers[:depth]:
            layer.set_active(dim, heads, mlp_ratio)
        set_plain(self, _active_layers=tuple(self.layers[:depth]))
        self.norm.set_active(dim)
        self.conv_proj.set_active(dim, dim)
        if self.fusion is not None:
            self.fusion.set_active(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        size = (x.shape[-2], x.shape[-1])
        y = unfold_patches(self.conv_1x1(self.conv_kxk(x)), self.patch)
        for layer in self._active_layers:
            y = layer(y)
        y = self.conv_proj(fold_patches(self.norm(y), self.patch, size))
        if self.fusion is None:
            return shortcut + y
        return self.fusion(torch.cat((shortcut, y), dim=1))

    def active_leaves(self) -> Iterator[Elastic]:
        yield from self.conv_kxk.active_leaves()
        yield self.conv_1x1
        for layer in self._active_layers:
            yield from layer.active_leaves()
        yield self.norm
        yield from self.conv_proj.active_leaves()
        if self.fusion is not None:
            yield from self.fusion.active_leaves()


class ElasticTransformerStage(ElasticBlock):
    """Downsampling MBConv transition + elastic MobileViT block; mirrors `TransformerStageModule`."""

    def __init__(self, in_chs: int, dim: int, depth: int, heads: int, hidden: int, stride: int,
                 layout: Any) -> None:
        super().__init__()
        self.transition = ElasticMBConv(in_chs, dim, (layout.transition_expansion,), TRANSITION_KERNEL, stride,
                                        layout.activation)
        self.block = ElasticMobileViTBlock(dim, depth, heads, hidden, layout)
        self._transition_expansion = layout.transition_expansion

    def set_active(self, in_chs: int, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        self.transition.set_active(in_chs, dim, self._transition_expansion, TRANSITION_KERNEL)
        self.block.set_active(dim, depth, heads, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.transition(x))

    def active_leaves(self) -> Iterator[Elastic]:
        yield from self.transition.active_leaves()
        yield from self.block.active_leaves()

