"""The head kind (MBPool): [1x1 expand conv] -> global pool -> Linear mix to `head_width` -> act
-> classifier.

Its gene is the arch's `head_width` (the expansion is a layout value); its static module is
`autovit.blocks.head.nn.MBPoolHead`, its elastic one `autovit.blocks.head.nn.ElasticMBPoolHead`.
"""

from __future__ import annotations

from typing import Any

from autovit.blocks.base import BlockSig, StageCost, conv_bn_params, conv_macs, expand_width, register_table_kinds

register_table_kinds("head")


def head_cost(layout: Any, cin: int, width: int, size: int, num_classes: int) -> StageCost:
    params = macs = 0
    pooled = cin
    if layout.head_expansion:
        pooled = expand_width(cin, layout.head_expansion)
        params += conv_bn_params(cin, pooled, 1)
        macs += conv_macs(cin, pooled, 1, size * size)
    params += pooled * width + width
    macs += pooled * width
    if num_classes > 0:
        params += width * num_classes + num_classes
        macs += width * num_classes
    return StageCost("head", params, macs, width, 1)


def head_sig(lay: Any, cin: int, width: int, h: int, num_classes: int) -> BlockSig:
    return BlockSig.make("head", cin=cin, w=width, he=lay.head_expansion, n=num_classes, act=lay.activation, h=h)
