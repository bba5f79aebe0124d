"""Elastic versions of the blocks of `autovit.model`, with the same module names, so that a
supernet's active slices load into the static network by name (`copy_active_weights`).

Each block kind's elastic module lives in its kind package (`autovit.blocks.<kind>.nn`), next to
its static module; they are re-exported here so that `autovit.supernet.blocks.ElasticMBConv` etc.
keep working.
"""

from autovit.blocks.head.nn import ElasticMBPoolHead
from autovit.blocks.mbconv.nn import ElasticMBConv, ElasticSqueezeExcite
from autovit.blocks.mobilevit.nn import ElasticMobileViTBlock, ElasticTransformerLayer, ElasticTransformerStage
from autovit.blocks.mqa.nn import ElasticMQALayer, ElasticMQAStage, ElasticMultiQueryAttention2d
from autovit.blocks.uib.nn import ElasticUIB
from autovit.supernet.elastic import ElasticConvBNAct

__all__ = [
    "ElasticConvBNAct", "ElasticMBConv", "ElasticMBPoolHead", "ElasticMQALayer", "ElasticMQAStage",
    "ElasticMobileViTBlock", "ElasticMultiQueryAttention2d", "ElasticSqueezeExcite", "ElasticTransformerLayer",
    "ElasticTransformerStage", "ElasticUIB",
]
