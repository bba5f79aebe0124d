"""The stem kind's torch modules. The stem is one strided kxk conv + BN + activation, so its static
module is the generic `ConvBNAct` and its elastic one the generic `ElasticConvBNAct` (whose
`static_twin` extracts the active widths); both are shared by every kind and live with the generic
layers (`autovit.blocks.layers`, `autovit.blocks.elastic`)."""

from autovit.blocks.elastic import ElasticConvBNAct
from autovit.blocks.layers import ConvBNAct

__all__ = ["ConvBNAct", "ElasticConvBNAct"]
