"""A tiny search space and training config for the data/training/DDP tests (fast on one core)."""

from __future__ import annotations

from autovit.space import SearchSpace
from autovit.train.config import TrainConfig, preset

TRAIN_SPACE = """
name: train-tiny
resolution: [64]
stem_width: [8, 12]
mbconv:
  - {width: [8], depth: [1], expansion: [1, 2], kernel: [3]}
  - {width: [8, 12], depth: [1, 2], expansion: [1], kernel: [3, 5]}
  - {width: [16], depth: [1], expansion: [1, 2], kernel: [3]}
transformer:
  - {width: [16, 32], depth: [1, 2], heads: [1, 2], mlp_ratio: [1, 2]}
  - {width: [32], depth: [1], heads: [1, 2], mlp_ratio: [2]}
  - {width: [32, 48], depth: [1], heads: [2], mlp_ratio: [1, 2]}
num_transformer_stages: [2, 3]
head_width: [32, 48]
"""


def train_space() -> SearchSpace:
    return SearchSpace.from_yaml_text(TRAIN_SPACE)


def tiny_config(**changes) -> TrainConfig:
    """digits at 16 px, batch 16, everything that costs time switched off."""
    return preset("tiny").replace(**changes)
