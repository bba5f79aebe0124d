"""Toy latency models, accuracy functions and a tiny space for the search tests."""

from __future__ import annotations

import numpy as np

from autovit.arch import Arch
from autovit.costs import count_macs, count_params
from autovit.space import SearchSpace

TINY_SPACE = """
name: tiny
resolution: [64]
stem_width: [8, 16]
mbconv:
  - {width: [8, 16], depth: [1], expansion: [1, 2], kernel: [3]}
  - {width: [16], depth: [1, 2], expansion: [1], kernel: [3]}
  - {width: [16, 24], depth: [1], expansion: [1], kernel: [3, 5]}
transformer:
  - {width: [32, 48], depth: [1, 2], heads: [2], mlp_ratio: [1, 2]}
  - {width: [48, 64], depth: [1], heads: [2, 3], mlp_ratio: [2]}
  - {width: [64], depth: [1, 2], heads: [2], mlp_ratio: [2]}
num_transformer_stages: [2, 3]
head_width: [64, 96]
"""


def tiny_space() -> SearchSpace:
    return SearchSpace.from_yaml_text(TINY_SPACE)


class MacsLatency:
    """Synthetic latency model: 1 ms + 0.05 ms per MMAC (any arch, batched)."""

    space_name = "any"

    def predict(self, archs) -> np.ndarray:
        return np.array([1.0 + count_macs(a) / 1e6 * 0.05 for a in archs])

    def predict_one(self, arch: Arch) -> float:
        return float(self.predict([arch])[0])


def params_accuracy(arch: Arch) -> float:
    """Toy fitness: bigger is better, with a small penalty for depth (a known, unique optimum)."""
    depth = sum(s.depth for s in arch.mbconv) + sum(s.depth for s in arch.transformer)
    return count_params(arch) / 1e4 - 0.01 * depth + 1e-3 * arch.stem_width


def write_toy_table(path, space: SearchSpace, fingerprint: dict | None = None, num_classes: int = 10,
                    space_name: str | None = None):
    """A synthetic latency table for `space` (made-up block costs, this machine's fingerprint)."""
    from autovit.latency.blocks import space_blocks
    from autovit.latency.lut import LatencyTable
    from autovit.latency.measure import device_fingerprint

    res = space.resolution[0]
    sigs = space_blocks(space, res, num_classes)
    entries = {str(s): {"ratio_to_ref": 0.01 + 0.001 * (len(str(s)) % 5)} for s in sigs}
    fp = fingerprint or device_fingerprint("ort", 1, "all", res)
    table = LatencyTable(space=space_name or space.name, resolution=res, fingerprint=fp, entries=entries,
                         reference={"median_ms": 10.0}, num_classes=num_classes,
                         meta={"layout": space.layout.to_dict()})
    table.save(path)
    return path


def write_toy_supernet(path, space: SearchSpace, num_classes: int = 10, seed: int = 0, config: dict | None = None):
    """An untrained supernet checkpoint of `space` (bare `supernet_state` file, with the training
    `config` recorded as `supernet.pt` records it when given)."""
    import torch

    from autovit.supernet import Supernet, supernet_state

    torch.manual_seed(seed)
    state = supernet_state(Supernet(space, num_classes=num_classes))
    torch.save({**state, "config": config} if config is not None else state, path)
    return path
