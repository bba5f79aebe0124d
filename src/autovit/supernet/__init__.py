"""Weight-sharing supernets (paper 3.3-3.4): elastic layers, the `Supernet`, weight-sharing
efficiency (Eq. 1), BN recalibration and subnet evaluation. See docs/supernet.md."""

from autovit.supernet.bn_calibration import calibration_batches, recalibrate_bn
from autovit.supernet.efficiency import WeightSharingStats, weight_sharing_efficiency, weight_sharing_stats
from autovit.supernet.evaluate import SubnetEvaluator, evaluate
from autovit.supernet.supernet import Supernet, load_supernet_state, supernet_state

__all__ = [
    "Supernet", "SubnetEvaluator", "WeightSharingStats", "calibration_batches", "evaluate", "load_supernet_state",
    "recalibrate_bn", "supernet_state", "weight_sharing_efficiency", "weight_sharing_stats",
]
