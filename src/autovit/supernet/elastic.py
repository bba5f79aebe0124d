"""The generic elastic layers (`autovit.blocks.elastic`), re-exported here so that
`autovit.supernet.elastic.ElasticConv2d` etc. keep working. They live with the block kinds because
each kind's elastic module (`autovit.blocks.<kind>.nn`) is built from them."""

from autovit.blocks.elastic import (  # noqa: F401
    Elastic,
    ElasticAttention,
    ElasticBatchNorm2d,
    ElasticBlock,
    ElasticConv2d,
    ElasticConvBNAct,
    ElasticDepthwiseConv2d,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticMlp,
    SlicePlan,
    copy_active_weights,
    make_plan,
    set_plain,
)

__all__ = ["Elastic", "ElasticAttention", "ElasticBatchNorm2d", "ElasticBlock", "ElasticConv2d", "ElasticConvBNAct", "ElasticDepthwiseConv2d", "ElasticLayerNorm", "ElasticLinear", "ElasticMlp", "SlicePlan", "copy_active_weights", "make_plan", "set_plain"]
