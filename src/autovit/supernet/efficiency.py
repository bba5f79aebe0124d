"""Weight-sharing efficiency E (paper Eq. 1), computed on the supernet's actual slicing.

    E = 1/N * sum_n  w_shared,n / w_total,n

* a *layer* is one slot of the supernet (see `Supernet.layer_candidates`), a *candidate block* is
  one distinct configuration a subnet can give that slot (e.g. for a transformer layer: width x
  heads x MLP ratio); N counts candidate blocks over all layers that have at least two;
* ``w_total,n`` = trainable parameters of candidate n;
* ``w_shared,n`` = parameters of candidate n that it shares with another candidate of the same
  layer, averaged over the other candidates: ``mean_{m != n} |W_n ∩ W_m|``, where W_n is the set of
  stored parameters candidate n reads.

Read literally ("fraction of a candidate's parameters inherited from the largest block") Eq. 1 is
1 by construction with prefix slicing. The definition above is informative: E is the expected
fraction of a candidate's weights that are also trained when another candidate of its layer is
sampled (0 for separate per-candidate weights, 1 only if all candidates were identical). We also
report the parameters separate per-candidate weights would need, against the supernet's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from autovit.space import SearchSpace
from autovit.supernet.supernet import Supernet


@dataclass(frozen=True)
class WeightSharingStats:
    space: str
    efficiency: float  # E of Eq. 1 (definition above)
    num_layers: int
    num_candidates: int  # N
    supernet_params: int  # what the supernet stores
    separate_params: int  # what separate weights for every candidate block would need

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidate_masks(module: Any, configs: list[tuple[Any, ...]]) -> torch.Tensor:
    """[K, P] 0/1 matrix: which of the layer's P stored parameters each of its K candidates reads."""
    params = dict(module.named_parameters())
    offsets, total = {}, 0
    for name, p in params.items():
        offsets[name] = total
        total += p.numel()
    owner = {id(leaf): prefix for prefix, leaf in module.named_modules()}
    masks = torch.zeros(len(configs), total, dtype=torch.float64)
    for row, cfg in enumerate(configs):
        module.set_active(*cfg)
        for leaf in module.active_leaves():
            prefix = owner[id(leaf)]
            for tname, plan in leaf._plans.items():
                name = f"{prefix}.{tname}" if prefix else tname
                if name not in params:  # a BN buffer, not a parameter
                    continue
                p = params[name]
                flat = masks[row, offsets[name]:offsets[name] + p.numel()].view(p.shape)
                plan.view(flat).fill_(1.0)
    return masks


def layer_sharing_ratios(module: Any, configs: list[tuple[Any, ...]]) -> list[float]:
    """``w_shared,n / w_total,n`` for each candidate n of one layer (empty for a single candidate)."""
    masks = _candidate_masks(module, configs)
    k = len(configs)
    if k < 2:
        return []
    overlap = masks @ masks.T  # |W_n ∩ W_m|
    shared = (overlap.sum(dim=1) - overlap.diagonal()) / (k - 1)
    return (shared / masks.sum(dim=1)).tolist()


def weight_sharing_stats(space: SearchSpace | str, num_classes: int = 1000) -> WeightSharingStats:
    """E and the related counts for the supernet of `space` (see the module docstring)."""
    space = SearchSpace.load(space) if not isinstance(space, SearchSpace) else space
    with torch.device("meta"):
        supernet = Supernet(space, num_classes=num_classes)  # only shapes and slices are needed
    ratios: list[float] = []
    separate = layers = 0
    for _, module, configs in supernet.layer_candidates():
        for cfg in configs:
            module.set_active(*cfg)
            separate += module.active_params()
        layer = layer_sharing_ratios(module, configs)
        layers += bool(layer)
        ratios += layer
    return WeightSharingStats(
        space=space.name,
        efficiency=sum(ratios) / len(ratios) if ratios else 1.0,
        num_layers=layers,
        num_candidates=len(ratios),
        supernet_params=supernet.num_params(),
        separate_params=separate,
    )


def weight_sharing_efficiency(space: SearchSpace | str, num_classes: int = 1000) -> float:
    """E of paper Eq. 1 for the supernet of `space` (definition in this module's docstring)."""
    return weight_sharing_stats(space, num_classes).efficiency
