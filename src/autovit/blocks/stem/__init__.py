"""The stem kind: one strided kxk conv (+ BN + activation) from the image to `stem_width` channels.

Its gene is the arch's `stem_width` (kernel and stride are layout values); its static module is a
`autovit.blocks.layers.ConvBNAct`, its elastic one `autovit.blocks.elastic.ElasticConvBNAct` (both named by `autovit.blocks.stem.nn`).
"""

from __future__ import annotations

from typing import Any

from autovit.blocks.base import BlockSig, StageCost, conv_bn_params, conv_macs, down, register_table_kinds

register_table_kinds("stem")


def stem_cost(layout: Any, resolution: int, width: int, in_chans: int = 3) -> StageCost:
    size = down(resolution, layout.stem_stride)
    return StageCost("stem", conv_bn_params(in_chans, width, layout.stem_kernel),
                     conv_macs(in_chans, width, layout.stem_kernel, size * size), width, size)


def stem_sig(lay: Any, res: int, width: int) -> BlockSig:
    return BlockSig.make("stem", cout=width, k=lay.stem_kernel, s=lay.stem_stride, act=lay.activation, h=res)
