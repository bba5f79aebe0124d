"""timm's model contract for the registered autovit models.

Reproduces the checks of timm's own `tests/test_models.py` (default cfgs, TorchScript, FX forward /
backward / FX + TorchScript, forward_intermediates, features_only with the hook and getter wrappers)
for every registered autovit model, at reduced input sizes as timm's suite does, plus a hub-style
config round trip of a searched architecture.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from timm.models import FeatureListNet, get_notrace_functions, get_notrace_modules, group_parameters, save_for_hf
from timm.models._features import FeatureGetterNet
from timm.models._features_fx import FeatureGraphNet
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names, NodePathTracer

import autovit  # noqa: F401  (registers autovit_* with timm)
from autovit.data import eval_transform
from autovit.errors import AutovitError
from autovit.registry import MODEL_NAMES, paper_arch, timm_model_name
from autovit.space import SearchSpace
from autovit.subnet_io import load_subnet, save_subnet

SMALL = 64  # reduced input side (timm's suite reduces to 96-128); 64 ends the 4-stage models at 1x1
ODD = 72  # not a multiple of the patch size at every stage: exercises the resize in unfold/fold


def _create(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


def _x(side: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))


def test_every_autovit_model_is_registered() -> None:
    assert sorted(timm.list_models("autovit_*")) == sorted(MODEL_NAMES)


# ------------------------------------------------------------------------------ default cfg (test_model_default_cfgs)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_cfg_matches_the_model(name: str) -> None:
    model = _create(name)
    cfg = model.default_cfg
    x = torch.randn(1, *cfg["input_size"])  # the full default size: pool_size is stated for it
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert feats.shape[2:] == cfg["pool_size"] == (4, 4)
        assert feats.shape[1] == model.num_features == model.arch.transformer[-1].width
        assert pre.shape == (1, model.head_hidden_size) == (1, model.arch.head_width)
        assert model.feature_info[-1]["num_chs"] == model.num_features

        model.reset_classifier(0)
        assert model.num_classes == 0 and model.get_classifier().__class__ is torch.nn.Identity
        assert torch.equal(model(x), pre)

        model.reset_classifier(0, "")  # no classifier, no pooling: the head runs at every position
        out = model(x)
        assert out.shape == (1, model.head_hidden_size, *cfg["pool_size"])

    unpooled = _create(name, num_classes=0, global_pool="")
    with torch.no_grad():
        assert unpooled(x).shape == (1, model.head_hidden_size, *cfg["pool_size"])
    state = model.state_dict()
    assert cfg["classifier"] + ".weight" in _create(name).state_dict()
    assert cfg["first_conv"] + ".weight" in state
    json.dumps(model.pretrained_cfg)  # a hub config must be writable


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cfg_preprocessing_is_autovits_own_eval_pipeline(name: str) -> None:
    """The cfg's mean/std/crop/interpolation build exactly the eval transform autovit trains with."""
    model = _create(name)
    data_cfg = timm.data.resolve_data_config(model=model)
    assert data_cfg["crop_pct"] == 1.0 and data_cfg["interpolation"] == "bicubic"
    ours = eval_transform(SimpleNamespace(dataset="imagefolder", resolution=256, mean=None, std=None))
    assert repr(timm.data.create_transform(**data_cfg)) == repr(ours)


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_unpooled_head_equals_the_pooled_head_on_a_1x1_map(pool: str) -> None:
    """global_pool='' keeps every head layer (MobileNetV3-style dense head), only the pooling goes."""
    pooled = _create("autovit_xxs", num_classes=7, global_pool=pool)
    dense = _create("autovit_xxs", num_classes=7, global_pool="")
    dense.load_state_dict(pooled.state_dict())
    x = _x(SMALL, batch=2)
    with torch.no_grad():
        assert pooled.forward_features(x).shape[2:] == (1, 1)
        torch.testing.assert_close(dense(x).flatten(1), pooled(x), rtol=0, atol=1e-6)
        big = _x(128)  # 2x2 map: the dense logits are per position, their mean is not the pooled logits
        assert dense(big).shape == (1, 7, 2, 2)


def test_unknown_global_pool_is_a_clear_error() -> None:
    with pytest.raises(AutovitError, match="global_pool 'catavgmax' is not supported"):
        timm.create_model("autovit_xxs", global_pool="catavgmax")
    model = _create("autovit_xxs")
    with pytest.raises(AutovitError, match="global_pool 'fast'"):
        model.reset_classifier(0, "fast")


# ------------------------------------------------------------------------------ forward / backward
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_backward_reaches_every_parameter_and_grad_checkpointing_matches(name: str) -> None:
    model = _create(name, num_classes=42).train()
    x = _x(SMALL, batch=2)
    torch.manual_seed(0)
    out = model(x)
    out.mean().backward()
    assert out.shape == (2, 42)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.eval()
    with torch.no_grad():
        ref = model(x)
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


def test_group_matcher_covers_every_parameter_once() -> None:
    model = _create("autovit_xxs")
    groups = group_parameters(model, model.group_matcher())
    names = [n for group in groups.values() for n in group]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(groups) == 1 + len(model.stages) + 1  # stem, one per stage, the head (timm's "rest" group)


# ------------------------------------------------------------------------------ TorchScript
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torchscript_matches_eager(name: str) -> None:
    with timm.set_scriptable(True):
        model = _create(name)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        for side in (SMALL, ODD):
            x = _x(side)
            torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ FX (timm's _create_fx_model)
def _fx_model(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                         param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    train_return = [train_nodes[-1]]
    if train:
        graph = NodePathTracer(**tracer_kwargs).trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_names = [n.name for n in graph_nodes[0]._input_nodes.keys()]
        node_names = [n.name for n in graph_nodes]
        train_return = [train_nodes[-node_names.index(n)] for n in output_names]
    return create_feature_extractor(model, train_return_nodes=train_return, eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=tracer_kwargs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fx_forward_equals_eager(name: str) -> None:
    model = _create(name)
    x = _x(ODD)
    with torch.inference_mode():
        out = model(x)
        fx_out = torch.cat(tuple(_fx_model(model)(x).values()))
    assert torch.equal(fx_out, out)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fx_backward_reaches_every_parameter(name: str) -> None:
    model = _create(name, num_classes=42).train()
    fx = _fx_model(model, train=True)
    out = torch.cat(tuple(fx(_x(SMALL, batch=2)).values()))
    out.mean().backward()
    assert out.shape == (2, 42)
    assert [n for n, p in fx.named_parameters() if p.grad is None] == []
    assert sum(p.numel() for p in fx.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fx_then_torchscript_matches_eager(name: str) -> None:
    with timm.set_scriptable(True):
        model = _create(name)
    scripted = torch.jit.script(_fx_model(model))
    x = _x(SMALL)
    with torch.inference_mode():
        torch.testing.assert_close(torch.cat(tuple(scripted(x).values())), model(x), rtol=1e-5, atol=1e-5)


def test_fx_feature_extractor_scripts_and_matches_hook_features() -> None:
    with timm.set_scriptable(True):
        fx = _create("autovit_xxs", features_only=True, feature_cls="fx", out_indices=(1, 4, 6))
    assert fx.feature_info.channels() == [24, 64, 96]
    base = _create("autovit_xxs")
    hooks = FeatureListNet(base, out_indices=(1, 4, 6), flatten_sequential=True)
    scripted = torch.jit.script(FeatureGraphNet(copy.deepcopy(base), out_indices=(1, 4, 6)))
    x = _x(SMALL)
    with torch.inference_mode():
        got, want = scripted(x), hooks(x)
    assert isinstance(got, list) and len(got) == 3
    for g, w in zip(got, want):
        assert torch.equal(g, w)


# ------------------------------------------------------------------------------ features_only / forward_intermediates
@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("feature_cls", ["list", "getter"])
def test_features_only_shapes_follow_feature_info(name: str, feature_cls: str) -> None:
    model = _create(name, features_only=True, feature_cls=feature_cls)
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) == 5  # timm's default out_indices (0..4)
    with torch.no_grad():
        outs = model(_x(96))
    assert [o.shape[1] for o in outs] == channels
    for o, r in zip(outs, reductions):
        assert o.shape[-2:] == (math.ceil(96 / r),) * 2 and not torch.isnan(o).any()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_intermediates_contract(name: str) -> None:
    model = _create(name)
    n = len(model.feature_info)
    x = _x(SMALL)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [t.shape[1] for t in inter] == [f["num_chs"] for f in model.feature_info]
        assert [t.shape[-1] for t in inter] == [math.ceil(SMALL / f["reduction"]) for f in model.feature_info]
        last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
        picked = model.forward_intermediates(x, indices=[1, -1], intermediates_only=True, norm=True)
        early = model.forward_intermediates(x, indices=[0, 2], stop_early=True, intermediates_only=True)
    assert len(inter) == n and all(torch.equal(a, b) for a, b in zip(last2, inter[-2:]))
    assert torch.equal(picked[0], inter[1]) and torch.equal(picked[1], inter[-1])
    assert torch.equal(early[0], inter[0]) and torch.equal(early[1], inter[2])
    model.set_grad_checkpointing()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_intermediates(x)[0], final, rtol=1e-4, atol=1e-5)


def test_forward_intermediates_bad_arguments_are_clear_errors() -> None:
    model = _create("autovit_xxs")
    x = _x(SMALL)
    with pytest.raises(AutovitError, match="feature index 7 is out of range for a model with 7 stages"):
        model.forward_intermediates(x, indices=[0, 7])
    with pytest.raises(AutovitError, match="feature index 8 is out of range"):
        model.forward_intermediates(x, indices=8)
    with pytest.raises(AutovitError, match="stop_early needs intermediates_only=True"):
        model.forward_intermediates(x, stop_early=True)
    with pytest.raises(AutovitError, match="output_fmt 'NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(AutovitError, match="the head needs the last stage"):
        model.prune_intermediate_layers([1, 2], prune_head=False)
    assert len(model.stages) == 7  # nothing was pruned


def test_feature_getter_prunes_the_model_and_matches_the_hook_wrapper() -> None:
    base = _create("autovit_xs")
    getter = FeatureGetterNet(copy.deepcopy(base), out_indices=(1, 3))
    hooks = FeatureListNet(copy.deepcopy(base), out_indices=(1, 3), flatten_sequential=True)
    pruned = getter.model
    assert len(pruned.stages) == 4 and pruned.num_features == 96 and pruned.num_classes == 0
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in base.parameters())
    x = _x(SMALL)
    with torch.no_grad():
        got, want = getter(x), hooks(x)
        assert torch.equal(pruned(x), pruned.forward_features(x))  # the pruned head passes features through
    assert getter.feature_info.channels() == [24, 96]
    assert len(got) == 2 and all(torch.equal(g, w) for g, w in zip(got, want))


# ------------------------------------------------------------------------------ hub-style round trip
def test_searched_arch_survives_a_hub_config_round_trip(tmp_path: Path) -> None:
    arch = SearchSpace.builtin("xxs").smallest().replace(resolution=160)
    path = tmp_path / "arch.json"
    arch.save(path)
    model = _create("autovit_xxs", arch=arch, num_classes=5)
    assert model.pretrained_cfg["input_size"] == (3, 160, 160)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 160, 160)).shape[2:] == model.pretrained_cfg["pool_size"]
    assert _create("autovit_xxs", arch=str(path), num_classes=5).arch == arch  # arch JSON path works too

    save_for_hf(model, str(tmp_path / "hub"), safe_serialization=True)
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["architecture"] == "autovit_xxs" and config["model_args"]["arch"] == arch.to_dict()
    assert config["num_features"] == model.num_features

    again = timm.create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True).eval()
    assert again.arch == arch and again.num_classes == 5
    assert again.pretrained_cfg["input_size"] == (3, 160, 160)
    x = _x(160)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_arch_of_the_wrong_type_is_a_clear_error() -> None:
    with pytest.raises(AutovitError, match="AutoViT needs an Arch or its dict form, got int"):
        autovit.AutoViT(3)
    with pytest.raises(AutovitError, match="unknown model 'autovit_m'"):
        timm.create_model("autovit_xxs", arch="autovit_m")


def test_a_loaded_subnet_carries_its_timm_cfg_and_round_trips_through_a_hub_config(tmp_path: Path) -> None:
    arch = SearchSpace.builtin("s").smallest().replace(resolution=96)
    assert timm_model_name(arch) == "autovit_s" and timm_model_name(paper_arch("xxs")) == "autovit_xxs"
    torch.manual_seed(0)
    save_subnet(autovit.build_model(arch, num_classes=3).eval(), tmp_path / "subnet")
    model = load_subnet(tmp_path / "subnet")
    assert model.pretrained_cfg["input_size"] == (3, 96, 96) and model.pretrained_cfg["pool_size"] == (3, 3)
    assert timm.data.resolve_data_config(model=model)["input_size"] == (3, 96, 96)
    x = _x(96)
    with torch.no_grad():
        assert model.forward_features(x).shape[2:] == (3, 3)  # 3 transformer stages: 96 / 32

    save_for_hf(model, str(tmp_path / "hub"), safe_serialization=True)
    again = timm.create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True).eval()
    with torch.no_grad():
        assert again.arch == arch and torch.equal(again(x), model(x))


def test_a_subnets_data_config_sets_its_timm_preprocessing(tmp_path: Path) -> None:
    cifar = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616], "crop_pct": 1.0}
    save_subnet(autovit.build_model(paper_arch("xxs", 32), num_classes=10), tmp_path / "a",
                extra_meta={"data_config": cifar})
    cfg = timm.data.resolve_data_config(model=load_subnet(tmp_path / "a"))
    assert cfg["mean"] == tuple(cifar["mean"]) and cfg["std"] == tuple(cifar["std"])
    assert cfg["input_size"] == (3, 32, 32) and cfg["interpolation"] == "bicubic"
    save_subnet(autovit.build_model(paper_arch("xxs", 32), num_classes=10), tmp_path / "b",
                extra_meta={"data_config": {"mean": [0.5, 0.5]}})
    with pytest.raises(AutovitError, match="data_config.mean .* must be 3 numbers"):
        load_subnet(tmp_path / "b")
