"""Knowledge distillation: Eq. 10 / Eq. 11 on hand-computed tensors, teachers and their errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_toys import tiny_config, train_space

from autovit.data import build_datasets
from autovit.errors import AutovitError
from autovit.model import AutoViT
from autovit.train.distill import (
    DistillationLoss,
    hard_distillation_loss,
    load_teacher,
    soft_distillation_loss,
    soft_kd_term,
)
from autovit.train.trainer import Trainer

ZS = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]   # student logits
ZT = [[0.2, 1.5, 0.1], [1.0, -2.0, 0.5]]   # teacher logits (argmax 1 and 0)
Y = [0, 2]


def _softmax(z: list[float], tau: float = 1.0) -> list[float]:
    e = [math.exp(v / tau) for v in z]
    return [v / sum(e) for v in e]


def _ce(z: list[float], y: int) -> float:
    return -math.log(_softmax(z)[y])


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


@pytest.mark.parametrize("alpha,tau", [(0.5, 1.0), (0.3, 4.0), (1.0, 2.0), (0.0, 3.0)])
def test_soft_loss_is_eq10(alpha: float, tau: float) -> None:
    ce = sum(_ce(z, y) for z, y in zip(ZS, Y)) / 2
    # Hinton: KL(teacher || student) of the softened distributions, times tau^2.
    kl = sum(_kl(_softmax(t, tau), _softmax(s, tau)) for s, t in zip(ZS, ZT)) / 2
    want = (1 - alpha) * ce + alpha * tau * tau * kl
    got = soft_distillation_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), alpha, tau)
    assert got.item() == pytest.approx(want, rel=1e-6)
    reversed_kl = sum(_kl(_softmax(s, tau), _softmax(t, tau)) for s, t in zip(ZS, ZT)) / 2
    if alpha > 0:  # the other KL direction gives a different number: the direction is pinned down
        assert got.item() != pytest.approx((1 - alpha) * ce + alpha * tau * tau * reversed_kl, rel=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 0.25, 1.0])
def test_hard_loss_is_eq11(alpha: float) -> None:
    y_teacher = [1, 0]
    want = sum((1 - alpha) * _ce(z, y) + alpha * _ce(z, yt) for z, y, yt in zip(ZS, Y, y_teacher)) / 2
    got = hard_distillation_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), alpha)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_kd_term_zero_when_student_equals_teacher_and_teacher_gets_no_gradient() -> None:
    zs = torch.tensor(ZS, requires_grad=True)
    zt = torch.tensor(ZS, requires_grad=True)
    assert soft_kd_term(zs, zt.detach(), 2.0).item() == pytest.approx(0.0, abs=1e-7)
    soft_distillation_loss(zs, zt, torch.tensor(Y), 0.5, 2.0).backward()
    assert zt.grad is None and zs.grad is not None


def test_distillation_loss_module_uses_the_base_loss() -> None:
    from timm.loss import SoftTargetCrossEntropy

    soft_targets = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    loss = DistillationLoss(SoftTargetCrossEntropy(), "hard", 0.5, 1.0)
    zs, zt = torch.tensor(ZS), torch.tensor(ZT)
    want = 0.5 * SoftTargetCrossEntropy()(zs, soft_targets) + 0.5 * torch.nn.functional.cross_entropy(zs, zt.argmax(1))
    assert loss(zs, soft_targets, zt).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(AutovitError, match="unknown distillation mode"):
        DistillationLoss(SoftTargetCrossEntropy(), "medium", 0.5, 1.0)


# ------------------------------------------------------------------------------ teachers
@pytest.fixture(scope="module")
def subnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from autovit.subnet_io import save_subnet

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("teacher") / "subnet"
    save_subnet(AutoViT(train_space().largest(), num_classes=10), out)
    return out


def test_autovit_subnet_teacher_is_frozen(subnet_dir: Path) -> None:
    teacher = load_teacher(tiny_config(kd="soft", teacher_checkpoint=str(subnet_dir)), num_classes=10)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_teacher_with_other_classes_is_rejected(subnet_dir: Path) -> None:
    with pytest.raises(AutovitError, match="predicts 10 classes, the dataset has 5"):
        load_teacher(tiny_config(kd="hard", teacher_checkpoint=str(subnet_dir)), num_classes=5)


def test_timm_teacher_from_local_checkpoint(tmp_path: Path) -> None:
    import timm

    path = tmp_path / "t.pth"
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), path)
    cfg = tiny_config(kd="soft", teacher_model="test_resnet", teacher_checkpoint=str(path))
    assert load_teacher(cfg, num_classes=10)(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), path)
    with pytest.raises(AutovitError, match="does not fit timm 'test_resnet' with 10 classes"):
        load_teacher(cfg, num_classes=10)
    with pytest.raises(AutovitError, match="needs local weights"):
        load_teacher(tiny_config(kd="soft", teacher_model="test_resnet"), num_classes=10)
    with pytest.raises(AutovitError, match="not found"):
        load_teacher(cfg.replace(teacher_checkpoint=str(tmp_path / "nope.pth")), num_classes=10)


def test_kd_needs_a_teacher() -> None:
    with pytest.raises(AutovitError, match="needs a teacher"):
        tiny_config(kd="soft")


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_training_with_a_teacher_runs(mode: str, subnet_dir: Path) -> None:
    from autovit.supernet import Supernet

    cfg = tiny_config(kd=mode, teacher_checkpoint=str(subnet_dir), kd_tau=2.0, max_steps=2)
    logs = Trainer(cfg, Supernet(train_space(), num_classes=10), build_datasets(cfg)).fit()
    assert len(logs) == 2 and all(math.isfinite(log.loss) for log in logs)


def test_inplace_distillation_trains_four_subnets_per_step() -> None:
    from autovit.supernet import Supernet

    space = train_space()
    cfg = tiny_config(sampling="sandwich", sandwich_random=2, inplace_kd=True, max_steps=2)
    logs = Trainer(cfg, Supernet(space, num_classes=10), build_datasets(cfg)).fit()
    assert [len(log.archs) for log in logs] == [4, 4]
    assert all(log.archs[0] == space.largest().key() and log.archs[1] == space.smallest().key() for log in logs)
    with pytest.raises(AutovitError, match="inplace_kd needs sampling 'sandwich'"):
        tiny_config(inplace_kd=True)
