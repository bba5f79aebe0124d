"""The training recipe from timm (paper 4.1, DeiT-like): Mixup/CutMix, the loss (soft-target or
label-smoothing cross-entropy), the optimizer (AdamW by default) and the warm-up + cosine LR
schedule. Augmentations applied per image live in `autovit.data`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from autovit.errors import AutovitError


def build_mixup(cfg: Any, num_classes: int) -> Callable | None:
    """timm `Mixup` (also does CutMix and label smoothing of the mixed targets), or None when off."""
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def build_train_loss(cfg: Any, mixup_active: bool) -> nn.Module:
    """Soft-target CE after Mixup/CutMix, label-smoothing CE, or plain CE."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if mixup_active:
        return SoftTargetCrossEntropy()
    if cfg.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    return nn.CrossEntropyLoss()


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """timm `create_optimizer_v2` (no weight decay on biases and norms)."""
    from timm.optim import create_optimizer_v2

    try:
        return create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    except (ValueError, AssertionError) as err:
        raise AutovitError(f"cannot create optimizer '{cfg.opt}': {err}",
                           hint="use a timm optimizer name such as adamw, sgd, lamb") from None


def warmup_steps(cfg: Any, steps_per_epoch: int) -> int:
    return max(cfg.warmup_steps, int(math.ceil(cfg.warmup_epochs * steps_per_epoch)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, total_steps: int, steps_per_epoch: int) -> Any:
    """timm `CosineLRScheduler` over optimizer steps, with linear warm-up from `warmup_lr`."""
    from timm.scheduler import CosineLRScheduler

    warm = min(warmup_steps(cfg, steps_per_epoch), max(total_steps - 1, 0))
    return CosineLRScheduler(optimizer, t_initial=max(total_steps - warm, 1), lr_min=cfg.min_lr, warmup_t=warm,
                             warmup_lr_init=cfg.warmup_lr, warmup_prefix=True, t_in_epochs=False)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return max(group["lr"] for group in optimizer.param_groups)
