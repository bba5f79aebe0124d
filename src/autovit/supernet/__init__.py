"""Weight-sharing supernets (paper 3.3-3.4): elastic layers, the `Supernet`, weight-sharing
efficiency (Eq. 1), BN recalibration and subnet evaluation. See docs/supernet.md."""

import importlib
from typing import Any

from autovit.supernet.bn_calibration import calibration_batches, recalibrate_bn
from autovit.supernet.evaluate import SubnetEvaluator, evaluate

# The names below are imported on first use (PEP 562): the block kinds' torch modules
# (`autovit.blocks.<kind>.nn`) import `autovit.supernet.elastic`, and `autovit.model` imports them,
# so importing `Supernet` (which needs `autovit.model`) here eagerly would be an import cycle.
_LAZY = {
    "WeightSharingStats": "efficiency", "weight_sharing_efficiency": "efficiency", "weight_sharing_stats": "efficiency",
    "Supernet": "supernet", "load_supernet_state": "supernet", "supernet_state": "supernet",
}

__all__ = [
    "Supernet", "SubnetEvaluator", "WeightSharingStats", "calibration_batches", "evaluate", "load_supernet_state",
    "recalibrate_bn", "supernet_state", "weight_sharing_efficiency", "weight_sharing_stats",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"autovit.supernet.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autovit.supernet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
