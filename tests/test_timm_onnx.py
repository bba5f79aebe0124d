"""timm registration (create_model, features_only) and ONNX export equality."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import pytest
import timm
import torch

import autovit  # noqa: F401  (registers autovit_* with timm)
from autovit.costs import count_params, stage_costs
from autovit.errors import AutovitError
from autovit.onnx_export import check_onnx, export_onnx, onnx_max_abs_diff
from autovit.registry import MODEL_NAMES, paper_arch, resolve_arch


def test_models_are_registered_with_timm() -> None:
    assert set(MODEL_NAMES) <= set(timm.list_models("autovit_*"))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_create_model_with_num_classes(name: str) -> None:
    model = timm.create_model(name, num_classes=10).eval()
    assert sum(p.numel() for p in model.parameters()) == count_params(paper_arch(name.split("_")[1]), 10)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.pretrained_cfg["classifier"] == "head.fc" and model.default_cfg["input_size"] == (3, 256, 256)


def test_features_only_shapes_channels_reductions() -> None:
    model = timm.create_model("autovit_xxs", features_only=True).eval()
    info = model.feature_info
    # Default out_indices (0..4): the three MBConv stages and the first two transformer stages.
    assert info.channels() == [16, 24, 32, 48, 64]
    assert info.reduction() == [2, 4, 8, 8, 16]
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 128, 128))
    assert [tuple(f.shape) for f in feats] == [(2, c, 128 // r, 128 // r) for c, r in zip(info.channels(),
                                                                                         info.reduction())]


def test_features_only_out_indices_match_stage_costs() -> None:
    model = timm.create_model("autovit_xs", features_only=True, out_indices=(2, 4, 5, 6)).eval()
    costs = {c.name: c for c in stage_costs(paper_arch("xs").replace(resolution=256))}
    wanted = [costs[n] for n in ("mbconv3", "transformer2", "transformer3", "transformer4")]
    assert model.feature_info.channels() == [c.out_channels for c in wanted] == [32, 120, 144, 168]
    assert model.feature_info.reduction() == [8, 16, 32, 64]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 256, 256))
    assert [f.shape[-1] for f in feats] == [c.out_size for c in wanted]


def test_resolve_arch_names_and_files(tmp_path: Path) -> None:
    assert resolve_arch("autovit_xs") == resolve_arch("xs") == paper_arch("xs")
    path = tmp_path / "arch.json"
    paper_arch("s").save(path)
    assert resolve_arch(str(path)) == paper_arch("s")
    with pytest.raises(AutovitError, match="unknown model 'autovit_m'"):
        resolve_arch("autovit_m")


def _opset(data: bytes) -> int:
    return max(o.version for o in onnx.load_from_string(data).opset_import if o.domain in ("", "ai.onnx"))


@pytest.fixture(scope="module")
def xxs_onnx() -> tuple[torch.nn.Module, bytes]:
    torch.manual_seed(0)
    model = timm.create_model("autovit_xxs", num_classes=10).eval()
    return model, export_onnx(model, None, (1, 3, 64, 64))


def _check_export(model: torch.nn.Module, data: bytes, side: int) -> None:
    assert _opset(data) >= 17
    onnx.checker.check_model(onnx.load_from_string(data))
    diff, rel = check_onnx(model, data, (1, 3, side, side))  # raises beyond rtol of the output's scale
    assert rel <= 1e-4 and diff <= 1e-4


def test_onnx_export_matches_pytorch_xxs(xxs_onnx: tuple[torch.nn.Module, bytes]) -> None:
    _check_export(*xxs_onnx, side=64)


@pytest.mark.parametrize("name,side", [("autovit_xs", 40), ("autovit_s", 32), ("autovit_xxs", 256)])
def test_onnx_export_matches_pytorch(name: str, side: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    path = tmp_path / "model.onnx"
    data = export_onnx(model, path, (1, 3, side, side))
    assert path.read_bytes() == data
    _check_export(model, data, side)


def test_check_onnx_reports_a_mismatch(xxs_onnx: tuple[torch.nn.Module, bytes]) -> None:
    model, data = copy.deepcopy(xxs_onnx[0]), xxs_onnx[1]
    with torch.no_grad():
        model.head.fc.bias.add_(1.0)  # the exported graph no longer matches
    assert abs(onnx_max_abs_diff(model, data, torch.randn(1, 3, 64, 64)) - 1.0) < 1e-4
    with pytest.raises(AutovitError, match="ONNX output differs from PyTorch"):
        check_onnx(model, data, (1, 3, 64, 64))


def test_onnx_check_is_relative_to_the_output_scale(xxs_onnx: tuple[torch.nn.Module, bytes]) -> None:
    """Large logits carry float32 rounding above any fixed absolute bound: a model scaled x1000
    still passes (its error scales with it), a shifted bias of 1% of the scale does not."""
    model, data = copy.deepcopy(xxs_onnx[0]), xxs_onnx[1]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    class Scaled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module, k: float) -> None:
            super().__init__()
            self.inner, self.k = inner, k

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.inner(t) * self.k

    big = Scaled(model, 1000.0).eval()
    big_data = export_onnx(big, None, (1, 3, 64, 64))
    diff, rel = check_onnx(big, big_data, x)
    with torch.no_grad():
        assert rel <= 1e-4 and diff == pytest.approx(rel * float(big(x).abs().max()), rel=1e-6)
        model.head.fc.bias.add_(0.01 * float(xxs_onnx[0](x).abs().max()))
    with pytest.raises(AutovitError, match=r"of the largest output"):
        check_onnx(model, data, x)


def test_invalid_onnx_graph_is_refused_by_the_checker() -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["input"], ["output"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])])  # wrong shape
    bad = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(AutovitError, match="ONNX graph is invalid"):
        check_onnx(torch.nn.ReLU(), bad.SerializeToString(), (1, 2))
