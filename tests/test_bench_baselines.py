"""Fair baselines in `autovit bench`: timm models reparameterized as deployed, fixed-size models built
for the asked resolution, and a model that cannot run there skipped with one line while the rest run."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch
from timm.models import register_model
from torch import nn

from autovit.bench import BenchReport, ModelCannotRun, bench_models, markdown_table, reparameterize, resolve_model
from autovit.cli import main
from autovit.onnx_export import relative_diff


class _NoOnnx(nn.Module):
    """A model that runs in PyTorch; `_export_onnx_except_no_onnx` fails on it as the exporter does on an
    unsupported op."""

    def __init__(self, num_classes: int = 1000, **_: object) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


@register_model  # not autovit_*: tests/test_timm_contract.py checks that timm lists exactly ours
def benchtest_no_onnx(pretrained: bool = False, **kwargs: object) -> nn.Module:
    return _NoOnnx(**kwargs)


@register_model
def benchtest_tiny(pretrained: bool = False, num_classes: int = 1000, **_: object) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, " ".join(out.err.split())


def _randomize_batchnorm(module: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms, so that fusing them into the convs is tested."""
    gen = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("name,changed,params", [("mobileone_s0", 43, (5293272, 2078504)),   # reparameterize()
                                                 ("repvit_m0_9", 84, (5489328, 5067056))])  # fuse()
def test_reparameterized_model_computes_the_same_function(name: str, changed: int, params: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    _randomize_batchnorm(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        fused, count = reparameterize(copy.deepcopy(model))
        after = fused(x)
    assert count == changed
    assert (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in fused.parameters())) == params
    assert relative_diff(before, after)[1] < 1e-4  # float32 rounding only; a wrong fusion is off by O(1)


def test_training_form_keeps_the_branches_and_the_deploy_form_fuses_them() -> None:
    """A baseline trained for the Pareto benchmark is the training form (MobileOne's 5.3M params with
    their branches); the deployed form is what latency is measured on."""
    train = resolve_model("mobileone_s0", num_classes=10, resolution=32, deploy=False)
    deployed = resolve_model("mobileone_s0", num_classes=10, resolution=32)
    n = lambda m: sum(p.numel() for p in m.module.parameters())  # noqa: E731
    assert (train.reparameterized, deployed.reparameterized) == (0, 43)
    assert n(train) > n(deployed)
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        deployed.module.load_state_dict(reparameterize(copy.deepcopy(train.module))[0].state_dict())
        assert relative_diff(train.module.eval()(x), deployed.module(x))[1] < 1e-4


def test_reparameterize_is_a_noop_without_fusable_modules() -> None:
    model = timm.create_model("mobilenetv3_small_100", pretrained=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = [type(m) for m in model.modules()]
    same, count = reparameterize(model)
    assert count == 0 and [type(m) for m in same.modules()] == types
    after = same.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], v) for k, v in after.items())


def test_bench_row_records_reparameterization(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "bench", "mobileone_s0", "autovit_xxs", "--resolution", "64", "--no-latency", "--json")
    assert code == 0, err
    mobileone, ours = json.loads(out)["models"]
    # MobileOne-S0 as deployed: 2.1M params (paper), not the 5.3M of its training-time branches
    assert (mobileone["reparameterized"], mobileone["params"], mobileone["skipped"]) == (43, 2078504, None)
    assert ours["reparameterized"] == 0


def test_fixed_size_timm_model_is_built_for_the_resolution() -> None:
    """efficientformerv2_s0 sizes its attention for 224 px; at 256 it is built with img_size=256."""
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        resolve_model("efficientformerv2_s0").module(torch.zeros(1, 3, 256, 256))
    report = bench_models(["efficientformerv2_s0"], resolution=256, latency=False)
    (row,) = report.rows
    assert (row.img_size, row.params, row.skipped) == (256, 3601216, None)
    assert "| efficientformerv2_s0 | timm (built for 256 px) | 3.601 |" in markdown_table(report)


def test_model_that_cannot_run_is_skipped_and_the_rest_measured(capsys: pytest.CaptureFixture[str]) -> None:
    """levit_128s cannot run at 72 px, not even built for it (img_size=72)."""
    code, out, err = run(capsys, "bench", "levit_128s", "benchtest_tiny", "--resolution", "72", "--no-latency",
                         "--json")
    assert code == 0, err
    assert ("warning: levit_128s: cannot run at 72 px (RuntimeError: The size of tensor a (25) must match the size "
            "of tensor b (196) at non-singleton dimension 3); skipped") in err
    assert "Traceback" not in err
    data = json.loads(out)
    levit, tiny = data["models"]
    assert levit["skipped"].startswith("cannot run at 72 px (RuntimeError: ") and levit["params"] is None
    assert tiny["skipped"] is None and tiny["params"] == 3 * 4 * 9 + 4 + 4 * 1000 + 1000
    assert data["settings"]["skipped"] == ["levit_128s"]
    assert data["settings"]["reference"] == "benchtest_tiny"  # the first model measured
    report = BenchReport.from_dict(data)
    assert report.to_dict() == data and report.row("levit_128s").skipped == levit["skipped"]
    assert "| levit_128s | timm | - | - | skipped: cannot run at 72 px (RuntimeError: " in markdown_table(report)


def test_export_failure_is_skipped_while_the_others_are_timed(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import autovit.onnx_export

    real_export = autovit.onnx_export.export_onnx

    def export(model: nn.Module, *args: object, **kwargs: object) -> bytes:
        if isinstance(model, _NoOnnx):
            raise RuntimeError("Exporting the operator 'aten::made_up' to ONNX opset version 17 is not supported.\n"
                               "Please feel free to request support")
        return real_export(model, *args, **kwargs)

    monkeypatch.setattr(autovit.onnx_export, "export_onnx", export)
    code, out, err = run(capsys, "bench", "benchtest_tiny", "benchtest_no_onnx", "--resolution", "32",
                         "--rounds", "1", "--runs", "1", "--warmup", "0", "--no-pin", "--json")
    assert code == 0, err
    assert ("benchtest_no_onnx: cannot be exported to ONNX at 32 px (RuntimeError: Exporting the operator "
            "'aten::made_up' to ONNX opset version 17 is not supported.); skipped") in err
    tiny, broken = json.loads(out)["models"]
    assert tiny["median_ms"] > 0 and tiny["ratio_to_ref"] == 1.0
    assert broken["median_ms"] is None and broken["skipped"].startswith("cannot be exported to ONNX at 32 px")


@pytest.mark.parametrize("args,message", [
    (("levit_128s",), "no model could be measured at 72 px: levit_128s: RuntimeError:"),
    (("levit_128s", "benchtest_tiny", "--reference", "levit_128s"),
     "the reference 'levit_128s' could not be measured"),
])
def test_nothing_measurable_or_skipped_reference_exits_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                                        message: str) -> None:
    code, out, err = run(capsys, "bench", *args, "--resolution", "72", "--no-latency")
    assert code == 2 and message in err and "Traceback" not in err + out


def test_resolve_model_raises_model_cannot_run() -> None:
    with pytest.raises(ModelCannotRun, match="levit_128s: cannot run at 40 px") as exc:
        resolve_model("levit_128s", resolution=40)
    assert exc.value.hint and "--resolution" in exc.value.hint


def test_budget_contract_is_not_claimed_when_the_budget_model_was_skipped() -> None:
    from autovit.search.budget import bench_contract

    bench = {"models": [{"name": "mine.json", "median_ms": 2.0, "rounds_ms": [2.0, 2.0]},
                        {"name": "levit_128s", "median_ms": None, "rounds_ms": [], "skipped": "cannot run at 72 px"}]}
    budget = {"spec": {"model": "levit_128s", "factor": 1.0}, "budget": "levit_128s"}
    assert bench_contract(bench, budget, "mine.json") is None
