"""Elastic versions of the blocks of `autovit.model`, with the same module names, so that a
supernet's active slices load into the static network by name (`copy_active_weights`)."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from timm.layers import SEModule

from autovit.arch import Layout
from autovit.blocks.base import expand_width
from autovit.blocks.mbconv import se_width
from autovit.blocks.mobilevit import TRANSITION_KERNEL
from autovit.blocks.mqa import KV_KERNEL
from autovit.blocks.uib import block_strides
from autovit.model import (
    ConvBNAct,
    MBConv,
    MBPoolHead,
    MQALayer,
    MultiQueryAttention2d,
    UIB,
    multi_query_attention,
    fold_patches,
    make_activation,
    unfold_patches,
)
from autovit.supernet.elastic import (
    Elastic,
    ElasticAttention,
    ElasticBatchNorm2d,
    ElasticBlock,
    ElasticConv2d,
    ElasticDepthwiseConv2d,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticMlp,
    set_plain,
)


class ElasticConvBNAct(ElasticBlock):
    """Conv (or depthwise conv) + BatchNorm + optional activation; mirrors `ConvBNAct`."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, act: str | None = "silu",
                 depthwise: bool = False, in_groups: int = 1) -> None:
        super().__init__()
        self.act_name = act
        self.conv = (ElasticDepthwiseConv2d(in_chs, kernel, stride) if depthwise
                     else ElasticConv2d(in_chs, out_chs, kernel, stride, in_groups=in_groups))
        self.bn = ElasticBatchNorm2d(out_chs)
        self.act = make_activation(act) if act else nn.Identity()

    def set_active(self, in_chs: int, out_chs: int, kernel: int | None = None) -> None:
        self.conv.set_active(in_chs, out_chs, kernel)
        self.bn.set_active(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.conv
        yield self.bn

    def static_twin(self) -> nn.Module:
        c = self.conv
        return ConvBNAct(c.active_in, c.active_out, c.active_kernel, c.stride[0], groups=c._groups, act=self.act_name)


class ElasticSqueezeExcite(ElasticBlock):
    """Squeeze-excite with elastic channels and reduced channels; mirrors timm's `SEModule`
    (mean pool -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid gate). A smaller choice uses the first
    `channels` inputs and the first `reduced` hidden units of the largest block's convs."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = ElasticConv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = ElasticConv2d(reduced, channels, 1, bias=True)
        self.set_active(channels, reduced)

    def set_active(self, channels: int, reduced: int) -> None:
        set_plain(self, config=(channels, reduced))
        self.fc1.set_active(channels, reduced)
        self.fc2.set_active(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.fc1
        yield self.fc2

    def static_twin(self) -> nn.Module:
        channels, reduced = self.config
        return SEModule(channels, rd_channels=reduced)


class ElasticMBConv(ElasticBlock):
    """Inverted residual with elastic in/out width, expansion, depthwise kernel and squeeze-excite
    ratio; mirrors `MBConv`.

    The 1x1 expand conv is used at every expansion (as in the static block); the residual is used
    when the stride is 1 and the active in and out widths are equal. The squeeze-excite module is
    built when some choice of `se_ratios` is on and skipped when the active choice is 0.
    """

    def __init__(self, in_chs: int, out_chs: int, expansions: tuple[float, ...], kernel: int, stride: int,
                 act: str, se_ratios: tuple[float, ...] = (0,)) -> None:
        super().__init__()
        self.stride, self.act_name = stride, act
        hidden = max(expand_width(in_chs, e) for e in expansions)
        self.expand = ElasticConvBNAct(in_chs, hidden, 1, act=act)
        self.dw = ElasticConvBNAct(hidden, hidden, kernel, stride, act=act, depthwise=True)
        reduced = se_width(hidden, max(se_ratios))
        self.se = ElasticSqueezeExcite(hidden, reduced) if reduced else nn.Identity()
        self.project = ElasticConvBNAct(hidden, out_chs, 1, act=None)
        self.set_active(in_chs, out_chs, max(expansions), kernel, max(se_ratios))

    def set_active(self, in_chs: int, out_chs: int, expansion: float, kernel: int, se: float = 0) -> None:
        hidden = expand_width(in_chs, expansion)
        set_plain(self, config=(in_chs, out_chs, expansion, kernel, se),
                  has_residual=self.stride == 1 and in_chs == out_chs, _se=self.se if se else None)
        self.expand.set_active(in_chs, hidden)
        self.dw.set_active(hidden, hidden, kernel)
        if se:
            if not isinstance(self.se, ElasticSqueezeExcite):
                raise ValueError("this MBConv was built without squeeze-excite")
            self.se.set_active(hidden, se_width(hidden, se))
        self.project.set_active(hidden, out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dw(self.expand(x))
        if self._se is not None:
            out = self._se(out)
        out = self.project(out)
        return x + out if self.has_residual else out

    def active_leaves(self) -> Iterator[Elastic]:
        yield from self.expand.active_leaves()
        yield from self.dw.active_leaves()
        if self._se is not None:
            yield from self._se.active_leaves()
        yield from self.project.active_leaves()

    def static_twin(self) -> nn.Module:
        in_chs, out_chs, e, k, se = self.config
        return MBConv(in_chs, out_chs, e, k, self.stride, self.act_name, se)


class ElasticUIB(ElasticBlock):
    """Universal Inverted Bottleneck with elastic in/out width, expansion and both depthwise kernels
    (0 = the conv is skipped); mirrors `UIB`.

    Each optional depthwise conv is built at the largest kernel of its choices (when some choice is
    not 0); a smaller kernel uses the centre of the largest. The stride moves between the two convs
    with the active kernels (`autovit.blocks.uib.block_strides`), as in the static block.
    """

    def __init__(self, in_chs: int, out_chs: int, expansions: tuple[float, ...], start_kernels: tuple[int, ...],
                 mid_kernels: tuple[int, ...], stride: int, act: str) -> None:
        super().__init__()
        self.stride, self.act_name = stride, act
        hidden = max(expand_width(in_chs, e) for e in expansions)
        self.dw_start = (ElasticConvBNAct(in_chs, in_chs, max(start_kernels), stride, act=None, depthwise=True)
                         if max(start_kernels) else None)
        self.expand = ElasticConvBNAct(in_chs, hidden, 1, act=act)
        self.dw_mid = (ElasticConvBNAct(hidden, hidden, max(mid_kernels), stride, act=act, depthwise=True)
                       if max(mid_kernels) else None)
        self.project = ElasticConvBNAct(hidden, out_chs, 1, act=None)
        self.set_active(in_chs, out_chs, max(expansions), max(start_kernels), max(mid_kernels))

    def set_active(self, in_chs: int, out_chs: int, expansion: float, start_kernel: int, mid_kernel: int) -> None:
        if (start_kernel and self.dw_start is None) or (mid_kernel and self.dw_mid is None):
            raise ValueError("this UIB block was built without that depthwise conv")
        hidden = expand_width(in_chs, expansion)
        s_start, s_mid = block_strides(start_kernel, mid_kernel, self.stride)
        set_plain(self, config=(in_chs, out_chs, expansion, start_kernel, mid_kernel),
                  has_residual=self.stride == 1 and in_chs == out_chs,
                  _start=self.dw_start if start_kernel else None, _mid=self.dw_mid if mid_kernel else None)
        if start_kernel:
            self.dw_start.set_active(in_chs, in_chs, start_kernel)
            set_plain(self.dw_start.conv, stride=(s_start, s_start))
        self.expand.set_active(in_chs, hidden)
        if mid_kernel:
            self.dw_mid.set_active(hidden, hidden, mid_kernel)
            set_plain(self.dw_mid.conv, stride=(s_mid, s_mid))
        self.project.set_active(hidden, out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self._start is None else self._start(x)
        out = self.expand(out)
        if self._mid is not None:
            out = self._mid(out)
        out = self.project(out)
        return x + out if self.has_residual else out

    def active_leaves(self) -> Iterator[Elastic]:
        if self._start is not None:
            yield from self._start.active_leaves()
        yield from self.expand.active_leaves()
        if self._mid is not None:
            yield from self._mid.active_leaves()
        yield from self.project.active_leaves()

    def static_twin(self) -> nn.Module:
        in_chs, out_chs, e, a, k = self.config
        return UIB(in_chs, out_chs, e, a, k, self.stride, self.act_name)


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

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, layout: Layout) -> None:
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
                 layout: Layout) -> None:
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


class ElasticMultiQueryAttention2d(ElasticBlock):
    """Mobile MQA with elastic width and query heads (key dim fixed) and an optional key/value
    downsampling (built when some choice has kv_stride 2); mirrors `MultiQueryAttention2d`."""

    def __init__(self, dim: int, heads: int, key_dim: int, kv_down: bool) -> None:
        super().__init__()
        self.key_dim, self.scale = key_dim, key_dim ** -0.5
        self.kv_down = ElasticConvBNAct(dim, dim, KV_KERNEL, 2, act=None, depthwise=True) if kv_down else None
        self.q = ElasticConv2d(dim, heads * key_dim, 1)
        self.k = ElasticConv2d(dim, key_dim, 1)
        self.v = ElasticConv2d(dim, key_dim, 1)
        self.proj = ElasticConv2d(heads * key_dim, dim, 1)
        self.set_active(dim, heads, 2 if kv_down else 1)

    def set_active(self, dim: int, heads: int, kv_stride: int) -> None:
        if kv_stride > 1 and self.kv_down is None:
            raise ValueError("this MQA block was built without key/value downsampling")
        set_plain(self, config=(dim, heads, kv_stride), heads=heads, _down=self.kv_down if kv_stride > 1 else None)
        if kv_stride > 1:
            self.kv_down.set_active(dim, dim)
        inner = heads * self.key_dim
        self.q.set_active(dim, inner)
        self.k.set_active(dim, self.key_dim)
        self.v.set_active(dim, self.key_dim)
        self.proj.set_active(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kv = x if self._down is None else self._down(x)
        return self.proj(multi_query_attention(self.q(x), self.k(kv), self.v(kv), self.heads, self.key_dim,
                                               self.scale))

    def active_leaves(self) -> Iterator[Elastic]:
        if self._down is not None:
            yield from self._down.active_leaves()
        yield from (self.q, self.k, self.v, self.proj)

    def static_twin(self) -> nn.Module:
        dim, heads, kv_stride = self.config
        return MultiQueryAttention2d(dim, heads, self.key_dim, kv_stride)


class ElasticMQALayer(ElasticBlock):
    """MQA + FFN layer with elastic width, heads, kv stride and FFN ratio; mirrors `MQALayer`."""

    def __init__(self, dim: int, heads: int, key_dim: int, kv_down: bool, hidden: int, act: str) -> None:
        super().__init__()
        self.act_name = act
        self.norm = ElasticBatchNorm2d(dim)
        self.attn = ElasticMultiQueryAttention2d(dim, heads, key_dim, kv_down)
        self.ffn = nn.ModuleList([ElasticConvBNAct(dim, hidden, 1, act=act), ElasticConvBNAct(hidden, dim, 1, act=None)])

    def set_active(self, dim: int, heads: int, kv_stride: int, ffn_ratio: float) -> None:
        set_plain(self, config=(dim, heads, kv_stride, ffn_ratio))
        hidden = expand_width(dim, ffn_ratio)
        self.norm.set_active(dim)
        self.attn.set_active(dim, heads, kv_stride)
        self.ffn[0].set_active(dim, hidden)
        self.ffn[1].set_active(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.ffn[1](self.ffn[0](x))

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.norm
        yield from self.attn.active_leaves()
        yield from self.ffn[0].active_leaves()
        yield from self.ffn[1].active_leaves()

    def static_twin(self) -> nn.Module:
        dim, heads, kv_stride, ratio = self.config
        return MQALayer(dim, heads, self.attn.key_dim, kv_stride, ratio, self.act_name)


class ElasticMQAStage(ElasticBlock):
    """Downsampling MBConv transition + elastic MQA layers (trailing ones skipped at smaller depth);
    mirrors `MQAStageModule`."""

    def __init__(self, in_chs: int, dim: int, depth: int, heads: int, kv_strides: tuple[int, ...], hidden: int,
                 stride: int, layout: Layout) -> None:
        super().__init__()
        self.transition = ElasticMBConv(in_chs, dim, (layout.transition_expansion,), TRANSITION_KERNEL, stride,
                                        layout.activation)
        self.layers = nn.ModuleList([ElasticMQALayer(dim, heads, layout.head_dim, max(kv_strides) > 1, hidden,
                                                     layout.activation) for _ in range(depth)])
        self._transition_expansion = layout.transition_expansion

    def set_active(self, in_chs: int, dim: int, depth: int, heads: int, kv_stride: int, ffn_ratio: float) -> None:
        self.transition.set_active(in_chs, dim, self._transition_expansion, TRANSITION_KERNEL)
        for layer in self.layers[:depth]:
            layer.set_active(dim, heads, kv_stride, ffn_ratio)
        set_plain(self, _active_layers=tuple(self.layers[:depth]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transition(x)
        for layer in self._active_layers:
            x = layer(x)
        return x

    def active_leaves(self) -> Iterator[Elastic]:
        yield from self.transition.active_leaves()
        for layer in self._active_layers:
            yield from layer.active_leaves()


class ElasticMBPoolHead(ElasticBlock):
    """MBPool head with elastic input width and head width; mirrors `MBPoolHead`."""

    def __init__(self, in_chs: int, width: int, expansion: float, num_classes: int, act: str,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        self.expansion, self.act_name, self.num_classes, self.drop_rate = expansion, act, num_classes, drop_rate
        pooled = expand_width(in_chs, expansion) if expansion else in_chs
        self.expand = ElasticConvBNAct(in_chs, pooled, 1, act=act) if expansion else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mix = ElasticLinear(pooled, width)
        self.act = make_activation(act)
        self.drop = nn.Dropout(drop_rate)
        self.fc = ElasticLinear(width, num_classes) if num_classes > 0 else nn.Identity()

    def set_active(self, in_chs: int, width: int) -> None:
        set_plain(self, config=(in_chs, width))
        pooled = in_chs
        if self.expansion:
            pooled = expand_width(in_chs, self.expansion)
            self.expand.set_active(in_chs, pooled)
        self.mix.set_active(pooled, width)
        if self.num_classes > 0:
            self.fc.set_active(width, self.num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.act(self.mix(self.pool(self.expand(x)).flatten(1))))
        return x if pre_logits else self.fc(x)

    def active_leaves(self) -> Iterator[Elastic]:
        if self.expansion:
            yield from self.expand.active_leaves()
        yield self.mix
        if self.num_classes > 0:
            yield self.fc

    def static_twin(self) -> nn.Module:
        in_chs, width = self.config
        return MBPoolHead(in_chs, width, self.expansion, self.num_classes, self.act_name, self.drop_rate)

