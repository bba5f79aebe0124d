"""Supernet and standalone training (paper 3.4, 4.1, 5.1): config, recipe, distillation, the
`Trainer`, checkpoints and multi-process helpers. See docs/training.md."""

from autovit.train.config import TrainConfig, preset
from autovit.train.trainer import Trainer, step_archs

__all__ = ["TrainConfig", "Trainer", "preset", "step_archs"]
