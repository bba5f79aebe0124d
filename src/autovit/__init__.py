"""autovit: latency-aware NAS for hybrid CNN + ViT models (the AutoViT paper)."""

from autovit.arch import Arch, Layout, MBConvStage, TransformerStage
from autovit.costs import count_macs, count_params, stage_costs
from autovit.errors import ArchError, AutovitError, SpaceError
from autovit.model import AutoViT, build_model
from autovit.space import SearchSpace

__version__ = "0.1.0"

__all__ = [
    "Arch", "ArchError", "AutoViT", "AutovitError", "Layout", "MBConvStage", "SearchSpace", "SpaceError",
    "TransformerStage", "build_model", "count_macs", "count_params", "stage_costs",
]

from autovit import registry as _registry  # noqa: E402,F401  (registers autovit_* with timm)
from autovit.registry import paper_arch, resolve_arch  # noqa: E402

__all__ += ["paper_arch", "resolve_arch"]
