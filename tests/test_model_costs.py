"""The static network and the closed-form cost model: exact equality with the built network."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import autovit.model as model_module
from autovit.arch import Arch, Layout
from autovit.costs import count_macs, count_params, stage_costs
from autovit.model import AutoViT, build_model, expand_width
from autovit.registry import paper_arch
from autovit.space import SearchSpace
from cost_toys import counted

# Small input sides keep the real forward cheap; the closed form is evaluated at the same side.
# 40, 56 and 72 give maps whose sides are not multiples of the patch (the resize path).
SMALL_SIDES = (32, 40, 56, 72)


@pytest.fixture
def fast_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skips all weight initialisation: params and MACs do not depend on values (3x faster builds)."""
    monkeypatch.setattr(model_module, "init_weights", lambda m: None)
    for cls in (nn.Linear, nn.Conv2d, nn.LayerNorm, nn.BatchNorm2d):
        monkeypatch.setattr(cls, "reset_parameters", lambda self: None)


def test_registry_counter_equals_flop_counter_mode(fast_build: None) -> None:
    rng = random.Random(0)
    for name in ("xxs", "s"):
        arch = SearchSpace.builtin(name).sample(rng).replace(resolution=40)
        model = build_model(arch, 10)
        assert counted(model, 40, fast=True) == counted(model, 40)


def test_closed_form_equals_built_network_for_50_random_archs(space: SearchSpace, fast_build: None) -> None:
    rng = random.Random(f"costs-{space.name}")
    for _ in range(50):
        arch = space.sample(rng).replace(resolution=rng.choice(SMALL_SIDES))
        num_classes = rng.choice((10, 1000))
        assert counted(build_model(arch, num_classes), arch.resolution, fast=True) == \
            (count_params(arch, num_classes), count_macs(arch, num_classes)), arch.key()


@pytest.mark.parametrize("size", ["xxs", "xs", "s"])
def test_closed_form_equals_built_network_at_256(size: str, fast_build: None) -> None:
    arch = paper_arch(size)
    assert counted(build_model(arch), 256) == (count_params(arch), count_macs(arch))


def test_largest_s_arch_at_256(fast_build: None) -> None:
    arch = SearchSpace.builtin("s").largest()
    assert counted(build_model(arch, 10), 256) == (count_params(arch, 10), count_macs(arch, 10))


def test_paper_model_costs() -> None:
    """Our reading of Table 5 (docs/architecture.md): XXS matches the paper's 1.8M / 0.3G."""
    got = {s: (count_params(paper_arch(s)), count_macs(paper_arch(s))) for s in ("xxs", "xs", "s")}
    assert got == {"xxs": (1807920, 305255232), "xs": (4173944, 749251072), "s": (9029000, 1843143488)}
    assert round(got["xxs"][0] / 1e6, 1) == 1.8 and round(got["xxs"][1] / 1e9, 1) == 0.3


@pytest.mark.parametrize("layout", [Layout(fusion_kernel=3, head_expansion=6, activation="hardswish"),
                                    Layout(head_dim=8, patch_size=4, transition_expansion=4, local_kernel=5,
                                           stem_kernel=5, stem_stride=4, activation="relu")])
def test_closed_form_follows_layout_options(layout: Layout, fast_build: None) -> None:
    rng = random.Random(1)
    space = SearchSpace.builtin("xxs")
    for side in (64, 72):
        arch = Arch.from_dict({**space.sample(rng).to_dict(), "layout": layout.to_dict(), "resolution": side})
        assert counted(build_model(arch, 10), side) == (count_params(arch, 10), count_macs(arch, 10))


def test_stage_costs_match_modules_and_shapes() -> None:
    arch = paper_arch("xxs").replace(resolution=72)
    model = build_model(arch, 10).eval()
    stages = stage_costs(arch, 10)
    modules = [model.stem, *model.stages, model.head]
    assert [s.name for s in stages] == ["stem", "mbconv1", "mbconv2", "mbconv3", "transformer1", "transformer2",
                                        "transformer3", "transformer4", "head"]
    assert [s.params for s in stages] == [sum(p.numel() for p in m.parameters()) for m in modules]
    x = model.stem(torch.zeros(1, 3, 72, 72))
    assert (x.shape[1], x.shape[2]) == (stages[0].out_channels, stages[0].out_size)
    with torch.no_grad():
        for stage, cost in zip(model.stages, stages[1:-1]):
            x = stage(x)
            assert tuple(x.shape[1:]) == (cost.out_channels, cost.out_size, cost.out_size)


def test_num_classes_zero_drops_the_classifier() -> None:
    arch = paper_arch("xxs")
    assert count_params(arch, 0) == count_params(arch, 1000) - (1000 * 1000 + 1000)
    model = build_model(arch, 0).eval()
    assert sum(p.numel() for p in model.parameters()) == count_params(arch, 0)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)  # pre-logits: MBPool width


def test_forward_shapes_and_timm_style_api() -> None:
    model = AutoViT(paper_arch("xxs"), num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 96, 1, 1)
        assert model(x).shape == (2, 7)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size) == (2, 1000)
        assert model.num_features == 96  # timm: the width of forward_features' output
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3


def test_train_step_runs_and_is_finite() -> None:
    torch.manual_seed(0)
    arch = SearchSpace.builtin("xxs").smallest().replace(resolution=40)
    model = build_model(arch, 5)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 40, 40)), torch.tensor([0, 4]))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_expand_width() -> None:
    assert [expand_width(48, r) for r in (1, 1.5, 2)] == [48, 72, 96]
    assert expand_width(3, 0.1) == 1
