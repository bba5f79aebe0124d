"""The Mobile MQA kind's torch modules: the static `MQAStageModule` (MBConv transition + `MQALayer`s)
and the elastic `ElasticMQAStage`; `static_twin` extracts the static layer of the active choice."""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
from typing import Any, Iterator

import torch
from torch import nn

from autovit.blocks.base import expand_width
from autovit.blocks.elastic import Elastic, ElasticBatchNorm2d, ElasticBlock, ElasticConv2d, ElasticConvBNAct, set_plain
from autovit.blocks.layers import ConvBNAct
from autovit.blocks.mbconv.nn import ElasticMBConv, MBConv
from autovit.blocks.mobilevit import TRANSITION_KERNEL
from autovit.blocks.mqa import KV_KERNEL, MQAStage


def multi_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, key_dim: int,
                          scale: float) -> torch.Tensor:
    """Multi-query attention on maps: q [B, heads * key_dim, H, W] attends over one shared key and
    value head k, v [B, key_dim, h, w]; returns [B, heads * key_dim, H, W]."""
    B, _, H, W = q.shape
    q = q.reshape(B, heads, key_dim, H * W).transpose(-2, -1)  # [B, heads, N, kd]
    k = k.flatten(2).unsqueeze(1)  # [B, 1, kd, M]
    v = v.flatten(2).transpose(-2, -1).unsqueeze(1)  # [B, 1, M, kd]
    attn = ((q * scale) @ k).softmax(dim=-1)  # [B, heads, N, M]
    return (attn @ v).transpose(-2, -1).reshape(B, heads * key_dim, H, W)


class MultiQueryAttention2d(nn.Module):
    """Mobile MQA (`autovit.blocks.mqa`): `heads` query heads over one key and one value head,
    optionally from a depthwise-strided (kv_stride 2) copy of the map; convs without bias. The query
    rows are head-major, so the first h heads of a larger block are a prefix slice."""

    def __init__(self, dim: int, heads: int, key_dim: int, kv_stride: int) -> None:
        super().__init__()
        self.heads, self.key_dim, self.scale = heads, key_dim, key_dim ** -0.5
        self.kv_down = (ConvBNAct(dim, dim, KV_KERNEL, kv_stride, groups=dim, act=None) if kv_stride > 1
                        else nn.Identity())
        self.q = nn.Conv2d(dim, heads * key_dim, 1, bias=False)
        self.k = nn.Conv2d(dim, key_dim, 1, bias=False)
        self.v = nn.Conv2d(dim, key_dim, 1, bias=False)
        self.proj = nn.Conv2d(heads * key_dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kv = self.kv_down(x)
        out = multi_query_attention(self.q(x), self.k(kv), self.v(kv), self.heads, self.key_dim, self.scale)
        return self.proj(out)


class MQALayer(nn.Module):
    """x + MQA(BN(x)), then x + FFN(x) (UIB's FFN variant: 1x1 expand + act, 1x1 projection)."""

    def __init__(self, dim: int, heads: int, key_dim: int, kv_stride: int, ffn_ratio: float, act: str) -> None:
        super().__init__()
        hidden = expand_width(dim, ffn_ratio)
        self.norm = nn.BatchNorm2d(dim)
        self.attn = MultiQueryAttention2d(dim, heads, key_dim, kv_stride)
        self.ffn = nn.Sequential(ConvBNAct(dim, hidden, 1, act=act), ConvBNAct(hidden, dim, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.ffn(x)


class MQAStageModule(nn.Module):
    """Downsampling MBConv (the stage transition) followed by `depth` MQA layers."""

    def __init__(self, in_chs: int, stage: MQAStage, stride: int, arch: Any) -> None:
        super().__init__()
        lay = arch.layout
        self.transition = MBConv(in_chs, stage.width, lay.transition_expansion, TRANSITION_KERNEL, stride,
                                 lay.activation)
        self.layers = nn.Sequential(*[MQALayer(stage.width, stage.heads, lay.head_dim, stage.kv_stride,
                                               stage.ffn_ratio, lay.activation) for _ in range(stage.depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.transition(x))



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
                 stride: int, layout: Any) -> None:
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

