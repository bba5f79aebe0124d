"""Knowledge distillation (paper 5.1): soft (Eq. 10) and hard (Eq. 11) losses and teacher loading.

Soft KD follows Hinton et al.: the KL divergence of the student's temperature-softened
distribution from the teacher's, KL(p_t || p_s) = sum_c p_t(c) log(p_t(c) / p_s(c)), scaled by
tau^2 so its gradients keep their size across temperatures. (The paper writes
L_KL(psi(Zs/tau), psi(Zt/tau)) with the student first, as an argument list, not as KL(p_s || p_t).)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from autovit.errors import AutovitError
from autovit.io_utils import torch_load_tensors

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_kd_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * KL(softmax(Zt/tau) || softmax(Zs/tau)), averaged over the batch."""
    log_ps = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_pt = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * (tau * tau)


def soft_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                           alpha: float, tau: float, base_loss: LossFn | None = None) -> torch.Tensor:
    """Eq. 10: (1 - alpha) CE(Zs, y) + alpha tau^2 KL(softmax(Zt/tau) || softmax(Zs/tau))."""
    base = (base_loss or F.cross_entropy)(student_logits, target)
    return (1 - alpha) * base + alpha * soft_kd_term(student_logits, teacher_logits.detach(), tau)


def hard_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                           alpha: float, base_loss: LossFn | None = None) -> torch.Tensor:
    """Eq. 11: (1 - alpha) CE(Zs, y) + alpha CE(Zs, argmax_c Zt(c))."""
    base = (base_loss or F.cross_entropy)(student_logits, target)
    return (1 - alpha) * base + alpha * F.cross_entropy(student_logits, teacher_logits.detach().argmax(dim=-1))


class DistillationLoss(nn.Module):
    """Wraps the task loss with a teacher: `loss(student_logits, target, teacher_logits)`."""

    def __init__(self, base_loss: LossFn, mode: str, alpha: float, tau: float) -> None:
        super().__init__()
        if mode not in ("soft", "hard"):
            raise AutovitError(f"unknown distillation mode '{mode}'", hint="use 'soft' or 'hard'")
        self.base_loss, self.mode, self.alpha, self.tau = base_loss, mode, alpha, tau

    def forward(self, student_logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        if self.mode == "soft":
            return soft_distillation_loss(student_logits, teacher_logits, target, self.alpha, self.tau, self.base_loss)
        return hard_distillation_loss(student_logits, teacher_logits, target, self.alpha, self.base_loss)


# ---------------------------------------------------------------------------------- teachers
def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _read_state(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise AutovitError(f"corrupt teacher checkpoint {path}: not a readable .safetensors file ({err})",
                               hint="re-create or re-download the teacher weights") from None
    return torch_load_tensors(path, "teacher checkpoint")


def _timm_teacher(name: str, checkpoint: str | None, num_classes: int) -> nn.Module:
    import timm

    import autovit.registry  # noqa: F401  (autovit_* teachers; the CLI imports the package lazily)

    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    except RuntimeError as err:
        raise AutovitError(f"unknown timm teacher model '{name}': {err}",
                           hint="see timm.list_models() for names") from None
    if checkpoint is None:
        raise AutovitError(f"teacher '{name}' needs local weights (no downloads)",
                           hint="pass --teacher-checkpoint PATH with the model's state dict")
    path = Path(checkpoint)
    if not path.is_file():
        raise AutovitError(f"teacher checkpoint not found: {path}")
    state = _read_state(path)
    if path.suffix != ".safetensors":
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
                break
    own = model.state_dict()
    for key, value in state.items():
        if key in own and hasattr(value, "shape") and value.shape != own[key].shape:
            raise AutovitError(f"teacher checkpoint {path} does not fit timm '{name}' with {num_classes} classes: "
                               f"'{key}' is {list(value.shape)}, expected {list(own[key].shape)}",
                               hint="the teacher must be trained on the same classes as the student")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AutovitError(f"teacher checkpoint {path} does not match timm '{name}': "
                           f"{len(missing)} missing, {len(unexpected)} unexpected tensors "
                           f"(e.g. {(list(missing) + list(unexpected))[0]})")
    return model


def _autovit_teacher(checkpoint: str, arch: str | None) -> nn.Module:
    path = Path(checkpoint)
    if path.is_dir():
        from autovit.subnet_io import load_subnet

        return load_subnet(path)
    if not path.is_file():
        raise AutovitError(f"teacher checkpoint not found: {path}")
    if path.suffix == ".safetensors":  # weights without an architecture: a subnet folder's, or a timm model's
        from autovit.subnet_io import ARCH, load_subnet

        if (path.parent / ARCH).is_file():
            return load_subnet(path.parent)
        raise AutovitError(f"teacher checkpoint {path} is a .safetensors file without an architecture",
                           hint="pass --teacher TIMM_NAME with it, or the autovit subnet folder that holds it "
                                "(model.safetensors + arch.json)")
    from autovit.train.checkpoint import load_model_from_checkpoint

    return load_model_from_checkpoint(path, arch)


def load_teacher(cfg: Any, num_classes: int, in_chans: int = 3, device: str | torch.device = "cpu") -> nn.Module:
    """The frozen teacher of `cfg`: timm `teacher_model` + `teacher_checkpoint`, an autovit subnet
    directory, or an autovit checkpoint (+ `teacher_arch` for a supernet). Raises if its number of
    output classes differs from `num_classes`."""
    if cfg.teacher_model:
        model = _timm_teacher(cfg.teacher_model, cfg.teacher_checkpoint, num_classes)
        where = f"timm '{cfg.teacher_model}'"
    elif cfg.teacher_checkpoint:
        model = _autovit_teacher(cfg.teacher_checkpoint, cfg.teacher_arch)
        where = f"autovit checkpoint {cfg.teacher_checkpoint}"
    else:
        raise AutovitError("distillation needs a teacher", hint="set teacher_model and/or teacher_checkpoint")
    model = _freeze(model).to(device)
    with torch.no_grad():
        out = model(torch.zeros(1, in_chans, cfg.resolution, cfg.resolution, device=device))
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise AutovitError(f"the teacher ({where}) predicts {out.shape[-1]} classes, the dataset has {num_classes}",
                           hint="use a teacher trained (or fine-tuned) on the same classes")
    return model

