"""Deployment export: PyTorch vs reloaded safetensors vs TorchScript vs ONNX."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from autovit.errors import AutovitError
from autovit.export import export_subnet, parse_formats
from autovit.model import AutoViT
from autovit.subnet_io import load_subnet
from search_toys import tiny_space


@pytest.fixture(scope="module")
def model() -> AutoViT:
    torch.manual_seed(0)
    net = AutoViT(tiny_space().largest(), num_classes=10)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong BN export would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_round_trip_pytorch_reloaded_torchscript_onnx(model, tmp_path) -> None:
    import onnxruntime as ort

    report = export_subnet(model, tmp_path, ["safetensors", "torchscript", "onnx"], meta={"note": "test"})
    assert [r.status for r in report.results] == ["ok", "ok", "ok"]
    assert report.result("safetensors").max_abs_diff == 0.0
    assert report.result("onnx").max_abs_diff <= 1e-4 and report.result("torchscript").max_abs_diff <= 1e-4
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x)
        reloaded = load_subnet(tmp_path)(x)
        scripted = torch.jit.load(str(tmp_path / "model.torchscript.pt"))(x)
    assert torch.equal(ref, reloaded)
    assert torch.allclose(ref, scripted, atol=1e-5)
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for i in range(2):  # the ONNX graph has a static batch of 1
        out = sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1].numpy()})[0]
        assert np.abs(out - ref[i:i + 1].numpy()).max() <= 1e-4
    assert load_subnet(tmp_path).arch == model.arch
    assert (tmp_path / "export.json").is_file()


def test_exported_files_follow_the_umask(model, tmp_path) -> None:
    """safetensors replaces the temp file with its own 0600 one: every file must still get the mode
    the umask gives (0644 under the usual 022), like the other files."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    export_subnet(model, tmp_path, ["safetensors", "onnx"])
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert set(modes) == {"model.safetensors", "arch.json", "meta.json", "model.onnx", "export.json"}
    assert set(modes.values()) == {0o666 & ~mask}, modes


def test_large_logits_pass_the_relative_check(model, tmp_path) -> None:
    """Logits of ~1e5 carry float32 rounding above 1e-4 absolute; the check is relative to the
    output's scale, so the export passes and reports both differences."""
    import copy

    big = copy.deepcopy(model)
    with torch.no_grad():
        big.head.fc.weight.mul_(1e6)
        big.head.fc.bias.mul_(1e6)
    report = export_subnet(big, tmp_path, ["onnx", "torchscript"])
    for r in report.results:
        assert r.status == "ok" and r.max_rel_diff <= 1e-4
        with torch.no_grad():
            scale = float(big(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))).abs().max())
        assert r.max_rel_diff == pytest.approx(r.max_abs_diff / scale)
    assert report.result("onnx").max_abs_diff > 1e-4  # the old absolute bound would have refused it
    assert report.to_dict()["rtol"] == 1e-4


@pytest.mark.parametrize("fmt, package", [("tflite", "litert_torch"), ("coreml", "coremltools")])
def test_optional_formats_export_where_their_package_installs(fmt: str, package: str, model, tmp_path) -> None:
    """TFLite runs in LiteRT here and is checked against PyTorch; Core ML converts here but runs
    only on macOS. TFLite needs the optional `tflite` extra (skipped in CI)."""
    pytest.importorskip(package)
    res = export_subnet(model, tmp_path, [fmt]).result(fmt)
    assert res.status == "ok", res.message
    if fmt == "tflite":
        assert (tmp_path / "model.tflite").stat().st_size > 10_000 and res.max_abs_diff <= 1e-3
    else:
        assert (tmp_path / "model.mlpackage" / "Manifest.json").is_file()
        assert sys.platform == "darwin" or "only on macOS" in res.message


def test_missing_optional_converter_is_skipped_with_a_message(model, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    monkeypatch.setitem(sys.modules, "ai_edge_torch", None)
    report = export_subnet(model, tmp_path, ["tflite"])
    res = report.result("tflite")
    assert res.status == "skipped" and "pip install litert-torch" in res.message
    assert (tmp_path / "arch.json").is_file()  # the arch always travels with the export


def test_bad_formats_and_models_are_refused(tmp_path) -> None:
    assert parse_formats("onnx, ts,litert") == ("onnx", "torchscript", "tflite")
    with pytest.raises(AutovitError, match="unknown export format 'tensorrt'"):
        parse_formats("onnx,tensorrt")
    with pytest.raises(AutovitError, match="static AutoViT"):
        export_subnet(torch.nn.Linear(2, 2), tmp_path)
