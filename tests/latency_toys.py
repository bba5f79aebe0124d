"""Synthetic block costs that are exactly linear in the operator counts of
`autovit.latency.imputation` (so imputation must recover them exactly)."""

from __future__ import annotations

import numpy as np

from autovit.latency.blocks import BlockSig
from autovit.latency.imputation import FEATURES, block_features

# Per kind: the cost (in reference ratios) of one unit of each feature.
UNIT_COST = {kind: np.array([(0.5 + j) * 1e-9 if name != "one" else 1e-3 for j, name in enumerate(names)])
             for kind, names in FEATURES.items()}


def linear_cost(sig: BlockSig | str) -> float:
    sig = BlockSig.parse(sig) if isinstance(sig, str) else sig
    return float(np.dot(block_features(sig), UNIT_COST[sig.kind]))
