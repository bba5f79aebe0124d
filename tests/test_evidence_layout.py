"""The layout-matched timm baselines of the evidence studies (benchmarks/vs_handdesigned.py):
a timm model put in the CIFAR proxy layout downsamples exactly 4x less, changes every parallel
branch of a block alike, and fails with a clear error when it cannot."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from autovit.errors import AutovitError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _evidence as ev  # noqa: E402
import vs_handdesigned as vh  # noqa: E402

timm = pytest.importorskip("timm")


def total_downsampling(module: nn.Module, resolution: int) -> int:
    mods = dict(module.named_modules())
    return math.prod(vh._stride(mods[names[0]]) for _, names in vh.downsampling_steps(module, resolution))


def test_mobilenetv3_downsamples_4x_less_and_keeps_its_weights():
    original = timm.create_model("mobilenetv3_small_100", num_classes=10).eval()
    assert total_downsampling(original, 32) == 32
    model = vh.timm_in_cifar_layout("mobilenetv3_small_100")
    assert model.training  # returned in the training form, ready to train
    model.eval()
    assert total_downsampling(model, 32) == 8
    with torch.no_grad():
        assert original.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (1, 1)
        assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # only strides change: the same parameters, shape for shape
    assert [p.shape for p in model.parameters()] == [p.shape for p in original.parameters()]


def test_parallel_branches_of_a_block_change_together():
    model = timm.create_model("mobileone_s0", num_classes=10).eval()
    changed = vh.to_cifar_layout(model, 32)
    # the stem block's kxk branch and its 1x1 scale branch both went to stride 1
    assert any(n.startswith("stem.") and "conv_kxk" in n for n in changed)
    assert any(n.startswith("stem.") and "conv_scale" in n for n in changed)
    mods = dict(model.named_modules())
    assert all(vh._stride(mods[n]) == 1 for n in changed)
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_a_model_tied_to_its_build_resolution_is_built_for_4x():
    model = vh.timm_in_cifar_layout("efficientformerv2_s0").eval()
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_too_little_downsampling_is_a_clear_error():
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    with pytest.raises(AutovitError, match="downsamples only 2x"):
        vh.to_cifar_layout(tiny, 32)


def test_model_names_with_the_layout_suffix():
    assert vh.base_model("mobilevit_xxs_cifar") == "mobilevit_xxs" and vh.base_model("shvit_s1") == "shvit_s1"
    assert vh.is_trainable("fastvit_t8_cifar") and vh.is_trainable(vh.SEARCHED)
    assert not vh.is_trainable("resnet50_cifar") and not vh.is_trainable("searched_cifar")


def test_the_gpu_study_schedules_every_layout_matched_unit():
    import gpu_study
    import pareto_front as pf

    commands = [" ".join(c) for phase in gpu_study.jobs(ev.get_profile("smoke"), "data", "sandwich_kd", [0, 1, 2])
                for c in phase]
    for m in vh.TIMM_MODELS:
        assert any(f"--models {m}_cifar " in c and c.endswith("--seeds 0 1 2") for c in commands)
    for m in pf.TIMM:
        if m not in vh.TIMM_MODELS:
            assert any(c.endswith(f"--units train_{m}_cifar_s0") for c in commands)
    # both trained ground truths of the ranking study, every planned subnet
    for row in ev.study_plan(ev.get_profile("smoke")):
        assert sum(c.endswith(f"--only {row['name']}") and "ranking_study.py" in c for c in commands) == 2
        assert any(c.endswith(f"--truth lr5e-4 --only {row['name']}") for c in commands)

