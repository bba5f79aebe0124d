"""The UIB kind's torch modules: the static `UIB` and the elastic `ElasticUIB`; `static_twin`
extracts the static block of the active choice."""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
from typing import Iterator

import torch
from torch import nn

from autovit.blocks.base import expand_width
from autovit.blocks.elastic import Elastic, ElasticBlock, ElasticConvBNAct, set_plain
from autovit.blocks.layers import ConvBNAct
from autovit.blocks.uib import block_strides


class UIB(nn.Module):
    """MobileNetV4's Universal Inverted Bottleneck (`autovit.blocks.uib`): [kxk depthwise start conv,
    BN, no act] -> 1x1 expand -> [kxk depthwise mid conv] -> 1x1 linear projection. A kernel of 0
    leaves that depthwise conv out (IB: mid only, ConvNext: start only, ExtraDW: both, FFN: none)."""

    def __init__(self, in_chs: int, out_chs: int, expansion: float, start_kernel: int, mid_kernel: int,
                 stride: int, act: str) -> None:
        super().__init__()
        hidden = expand_width(in_chs, expansion)
        s_start, s_mid = block_strides(start_kernel, mid_kernel, stride)
        self.dw_start = (ConvBNAct(in_chs, in_chs, start_kernel, s_start, groups=in_chs, act=None)
                         if start_kernel else nn.Identity())
        self.expand = ConvBNAct(in_chs, hidden, 1, act=act)
        self.dw_mid = (ConvBNAct(hidden, hidden, mid_kernel, s_mid, groups=hidden, act=act)
                       if mid_kernel else nn.Identity())
        self.project = ConvBNAct(hidden, out_chs, 1, act=None)
        self.has_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw_mid(self.expand(self.dw_start(x))))
        return x + out if self.has_residual else out



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

