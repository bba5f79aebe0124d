"""The head kind's torch modules: the static `MBPoolHead` (with timm's `global_pool` choices) and
the elastic `ElasticMBPoolHead`; `static_twin` extracts the static head of the active widths."""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
from typing import Iterator

import torch
from torch import nn

from autovit.blocks.base import expand_width
from autovit.blocks.elastic import Elastic, ElasticBlock, ElasticConvBNAct, ElasticLinear, set_plain
from autovit.blocks.layers import ConvBNAct, make_activation
from autovit.errors import AutovitError


POOL_TYPES = ("avg", "max", "")  # timm `global_pool` values the MBPool head supports ('': no pooling)


def make_global_pool(pool_type: str) -> nn.Module:
    """The MBPool head's global pooling for a timm `global_pool` value."""
    if pool_type not in POOL_TYPES:
        raise AutovitError(f"global_pool '{pool_type}' is not supported by the AutoViT head",
                           hint="use 'avg' (the default), 'max', or '' (no pooling: the head runs at every position)")
    return {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}[pool_type](1) if pool_type else nn.Identity()


class MBPoolHead(nn.Module):
    """MBPool: [1x1 expand conv] -> global pool -> Linear feature-mix to `width` -> act -> classifier.

    With `pool_type=''` nothing is pooled: the mix, activation and classifier run at every position
    (as timm's MobileNetV3 head does with `global_pool=''`) and the output stays [B, C, H, W].
    """

    def __init__(self, in_chs: int, width: int, expansion: float, num_classes: int, act: str,
                 drop_rate: float = 0.0, pool_type: str = "avg") -> None:
        super().__init__()
        pooled = expand_width(in_chs, expansion) if expansion else in_chs
        self.expand = ConvBNAct(in_chs, pooled, 1, act=act) if expansion else nn.Identity()
        self.pool = make_global_pool(pool_type)
        self.pool_type = pool_type
        self.mix = nn.Linear(pooled, width)
        self.act = make_activation(act)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def set_pool(self, pool_type: str) -> None:
        self.pool = make_global_pool(pool_type)
        self.pool_type = pool_type

    def make_passthrough(self) -> None:
        """Drops every layer and the pooling: the head then returns its input unchanged."""
        self.expand, self.mix, self.act, self.drop, self.fc = (nn.Identity() for _ in range(5))
        self.set_pool("")

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.expand(x)
        if self.pool_type == "":
            x = x.permute(0, 2, 3, 1)  # channels-last, so that the Linear layers act at each position
        else:
            x = self.pool(x).flatten(1)
        x = self.drop(self.act(self.mix(x)))
        if not pre_logits:
            x = self.fc(x)
        if self.pool_type == "":
            x = x.permute(0, 3, 1, 2)
        return x



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

