"""The MBConv kind's torch modules: the static `MBConv` and the elastic `ElasticMBConv` (with its
elastic squeeze-excite); `static_twin` extracts the static block of the active choice."""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
from typing import Iterator

import torch
from timm.layers import SEModule
from torch import nn

from autovit.blocks.base import expand_width
from autovit.blocks.elastic import Elastic, ElasticBlock, ElasticConv2d, ElasticConvBNAct, set_plain
from autovit.blocks.layers import ConvBNAct
from autovit.blocks.mbconv import se_width


class MBConv(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand -> kxk depthwise -> [squeeze-excite] -> 1x1 linear
    projection (`autovit.blocks.mbconv`).

    The 1x1 expand conv is kept at expansion 1 too (as timm's MobileViT does), so that in the
    supernet the depthwise conv always sees the output of the same expand conv. `se` > 0 adds
    timm's `SEModule` with `se_width(hidden, se)` reduced channels.
    """

    def __init__(self, in_chs: int, out_chs: int, expansion: float, kernel: int, stride: int, act: str,
                 se: float = 0) -> None:
        super().__init__()
        hidden = expand_width(in_chs, expansion)
        self.expand = ConvBNAct(in_chs, hidden, 1, act=act)
        self.dw = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SEModule(hidden, rd_channels=se_width(hidden, se)) if se else nn.Identity()
        self.project = ConvBNAct(hidden, out_chs, 1, act=None)
        self.has_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + out if self.has_residual else out



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

