"""`autovit latency` CLI: predict, refusal paths, export-suite -> import round trip (no real timing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from latency_toys import linear_cost

from autovit.cli import main
from autovit.latency import suite
from autovit.latency.blocks import space_blocks
from autovit.latency.lut import LatencyTable, synthetic_table
from autovit.latency.predictor import LatencyModel
from autovit.registry import paper_arch
from autovit.space import SearchSpace


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as err:
        code = int(err.code or 0)
    out = capsys.readouterr()
    return code, out.out, " ".join(out.err.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def lut(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lut") / "xxs.json"
    synthetic_table(SearchSpace.builtin("xxs"), seed=0).save(path)
    return path


def test_predict_json_matches_model(lut: Path, capsys) -> None:
    code, out, _ = run(["latency", "predict", "--lut", str(lut), "autovit_xxs", "--json", "--breakdown"], capsys)
    assert code == 0
    data = json.loads(out)
    expected = LatencyModel.load(lut).predict_one(paper_arch("xxs"))
    assert data["predictions"][0]["latency_ms"] == pytest.approx(expected)
    assert sum(b["ms"] for b in data["predictions"][0]["blocks"]) == pytest.approx(expected)


def test_predict_arch_json_file(lut: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "a.json"
    paper_arch("xxs").save(path)
    code, out, _ = run(["latency", "predict", "--lut", str(lut), str(path)], capsys)
    assert code == 0 and "ms" in out


def test_predict_at_the_tables_resolution(tmp_path: Path, capsys) -> None:
    """A 32 px table predicts 32 px archs of its space (the space file's default is 256 px); a
    256 px arch is refused, naming the resolution, and --force predicts it at 32 px."""
    table = tmp_path / "xxs32.json"
    synthetic_table(SearchSpace.builtin("xxs"), seed=0, resolution=32).save(table)
    arch = tmp_path / "a32.json"
    paper_arch("xxs").replace(resolution=32).save(arch)
    code, out, err = run(["latency", "predict", "--lut", str(table), str(arch), "--json"], capsys)
    assert code == 0, err
    expected = LatencyModel.load(table).predict_one(paper_arch("xxs").replace(resolution=32))
    assert json.loads(out)["predictions"][0]["latency_ms"] == pytest.approx(expected)
    code, _, err = run(["latency", "predict", "--lut", str(table), "autovit_xxs"], capsys)
    assert code == 2 and "not in the space 'xxs'" in err and "resolution" in err
    code, out, _ = run(["latency", "predict", "--lut", str(table), "autovit_xxs", "--force", "--json"], capsys)
    assert code == 0 and json.loads(out)["predictions"][0]["latency_ms"] == pytest.approx(expected)


def test_arch_of_another_space_is_refused_then_forced(lut: Path, capsys) -> None:
    code, _, err = run(["latency", "predict", "--lut", str(lut), "autovit_s"], capsys)
    assert code == 2 and "not in the space 'xxs'" in err and "--force-arch" in err
    code, _, err = run(["latency", "predict", "--lut", str(lut), "autovit_s", "--force-arch"], capsys)
    assert code == 2 and "no entry for block" in err  # forced, but its blocks are not in the table


def test_missing_and_malformed_tables(tmp_path: Path, capsys) -> None:
    code, _, err = run(["latency", "predict", "--lut", str(tmp_path / "none.json"), "autovit_xxs"], capsys)
    assert code == 2 and "latency table not found" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    code, _, err = run(["latency", "predict", "--lut", str(bad), "autovit_xxs"], capsys)
    assert code == 2 and "not an autovit latency table" in err
    newer = synthetic_table(SearchSpace.builtin("xxs")).to_dict()
    newer["version"] = 99
    bad.write_text(json.dumps(newer))
    code, _, err = run(["latency", "predict", "--lut", str(bad), "autovit_xxs"], capsys)
    assert code == 2 and "newer than this autovit" in err
    newer["version"] = 1  # v1 timed MBConv blocks without the expand conv at expansion 1
    bad.write_text(json.dumps(newer))
    code, _, err = run(["latency", "predict", "--lut", str(bad), "autovit_xxs"], capsys)
    assert code == 2 and "older block definition" in err and "autovit latency profile" in err
    newer["version"] = "two"
    bad.write_text(json.dumps(newer))
    code, _, err = run(["latency", "predict", "--lut", str(bad), "autovit_xxs"], capsys)
    assert code == 2 and "unreadable table version 'two'" in err


def test_validate_refuses_a_table_from_another_device(lut: Path, capsys) -> None:
    code, _, err = run(["latency", "validate", "--lut", str(lut), "--samples", "2"], capsys)
    assert code == 2 and "another device/runtime" in err and "cpu: table has 'synthetic'" in err


def test_table_compatibility_checks_and_force_warns() -> None:
    from autovit.latency.lut import LatencyTableError

    t = synthetic_table(SearchSpace.builtin("xxs"))
    with pytest.raises(LatencyTableError, match="space 'xxs', not 's'.*at 256px, not 224px"):
        t.check_compatible(space="s", resolution=224)
    with pytest.warns(UserWarning, match="another device"):
        problems = t.check_compatible(fingerprint={**t.fingerprint, "threads": 4}, force=True)
    assert problems and "threads" in problems[0]
    assert t.check_compatible(space="xxs", resolution=256, fingerprint=t.fingerprint) == []


def test_table_round_trip(tmp_path: Path) -> None:
    t = synthetic_table(SearchSpace.builtin("xxs"), seed=1)
    t.model = {"coef": {"table": 1.0, "intercept": 0.1}}
    path = t.save(tmp_path / "t.json")
    back = LatencyTable.load(path)
    assert back.to_dict() == t.to_dict()
    assert "pickle" not in path.read_text()


@pytest.mark.parametrize("measure, standalone", [("all", True), ("anchors", False)])
def test_export_suite_then_import_builds_the_same_table(measure: str, standalone: bool, tmp_path: Path, monkeypatch,
                                                        capsys) -> None:
    written: list[str] = []

    def fake_export(module, path, shape, *a, **k):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"onnx")
        written.append(str(path))
        return b"onnx"

    monkeypatch.setattr(suite, "export_onnx", fake_export)
    out = tmp_path / "suite"
    code, stdout, _ = run(["latency", "export-suite", "--space", "xxs", "--out", str(out), "--fit-subnets", "10",
                           "--formats", "onnx", "--blocks", measure,
                           "--standalone" if standalone else "--no-standalone", "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    n_all = len(space_blocks(SearchSpace.builtin("xxs")))
    n_blocks = n_all if measure == "all" else 66
    assert summary["blocks"] == len(manifest["blocks"]) == n_blocks and summary["subnets"] == 10
    assert summary["imputed"] == len(manifest["imputed"]) == n_all - n_blocks
    assert len(written) == 1 + (2 if standalone else 1) * n_blocks + summary["contexts"] + 10
    assert all(("standalone" in b) == standalone for b in manifest["blocks"])
    # a device "measures" the exported blocks: costs linear in operator counts (so imputation is exact)
    ref_ms = 20.0
    rows = {manifest["reference"]: ref_ms}
    for b in manifest["blocks"]:
        rows.setdefault(b["context"], 3.0)
        rows[b["with"]] = 3.0 + b["copies"] * linear_cost(b["signature"]) * ref_ms
    truth = synthetic_table(SearchSpace.builtin("xxs"))
    for key, e in truth.entries.items():
        e["ratio_to_ref"] = linear_cost(key)
    model = LatencyModel(truth, {"table": 1.1, "intercept": 0.05})
    from autovit.arch import Arch

    for s in manifest["subnets"]:
        rows[s["file"]] = float(model.predict_ratio([Arch.from_dict(s["arch"])])[0]) * ref_ms
    csv = tmp_path / "m.csv"
    csv.write_text("file,median_ms,iqr_ms,count\n" + "".join(f"{k}.tflite,{v},0.1,50\n" for k, v in rows.items()))
    table_path = tmp_path / "phone.json"
    code, stdout, _ = run(["latency", "import", "--manifest", str(out / "manifest.json"), "--csv", str(csv),
                           "--out", str(table_path), "--device", "Pixel 8", "--runtime", "litert 2.3", "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["fitted"] and summary["modules"] == n_all and summary["modules_imputed"] == n_all - n_blocks
    phone = LatencyModel.load(table_path)
    for key, e in truth.entries.items():
        assert phone.table.entries[key]["ratio_to_ref"] == pytest.approx(e["ratio_to_ref"], rel=1e-6)
    archs = [SearchSpace.builtin("xxs").sample(__import__("random").Random(i)) for i in range(20)]
    np.testing.assert_allclose(phone.predict(archs), model.predict_ratio(archs) * ref_ms, rtol=1e-6)
    assert phone.fingerprint["cpu"] == "Pixel 8"
    code, stdout, _ = run(["latency", "show", str(table_path), "--json"], capsys)
    shown = json.loads(stdout)
    assert code == 0 and shown["modules_measured"] == n_blocks and shown["modules_imputed"] == n_all - n_blocks


def test_import_errors_name_the_problem(tmp_path: Path, capsys) -> None:
    code, _, err = run(["latency", "import", "--manifest", str(tmp_path / "no.json"), "--csv", "x.csv", "--out",
                        str(tmp_path / "t.json")], capsys)
    assert code == 2 and "suite manifest not found" in err
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": suite.SUITE_FORMAT, "reference": "reference", "blocks": [],
                                    "resolution": 256, "space": "xxs", "layout": {}}))
    csv = tmp_path / "m.csv"
    csv.write_text("file,median_ms\nblocks/b000_with,abc\n")
    code, _, err = run(["latency", "import", "--manifest", str(manifest), "--csv", str(csv), "--out",
                        str(tmp_path / "t.json")], capsys)
    assert code == 2 and "line 2: median_ms 'abc' is not a number" in err
    csv.write_text("file,median_ms\nblocks/b000_with,1.5\n")
    code, _, err = run(["latency", "import", "--manifest", str(manifest), "--csv", str(csv), "--out",
                        str(tmp_path / "t.json")], capsys)
    assert code == 2 and "no timing of the reference network" in err


def test_unknown_backend_and_export_format(tmp_path: Path, capsys) -> None:
    code, _, err = run(["latency", "profile", "--space", "xxs", "--backend", "tvm", "--out", str(tmp_path / "x.json")],
                       capsys)
    assert code == 2 and "unknown latency backend 'tvm'" in err
    code, _, err = run(["latency", "export-suite", "--space", "xxs", "--out", str(tmp_path), "--formats", "ncnn"],
                       capsys)
    assert code == 2 and "unknown export format" in err


def test_predict_with_a_fresh_reference_time(lut: Path, capsys) -> None:
    code, out, _ = run(["latency", "predict", "--lut", str(lut), "autovit_xxs", "--reference-ms", "20", "--json"], capsys)
    assert code == 0
    ratio = LatencyModel.load(lut).predict_ratio([paper_arch("xxs")])[0]
    assert json.loads(out)["predictions"][0]["latency_ms"] == pytest.approx(ratio * 20)


def _export_small_suite(fmt: str, out: Path, monkeypatch) -> tuple[dict, list[Path]]:
    """A suite of one MBConv and one attention block at 64 px in ONNX and `fmt`; returns the
    summary and the `fmt` files, after checking they match the ONNX files one to one."""
    blocks = space_blocks(SearchSpace.builtin("xxs"), 64)
    sigs = [next(s for s in blocks if s.kind == kind) for kind in ("mbconv", "attn")]
    monkeypatch.setattr(suite, "space_blocks", lambda *a, **k: sigs)
    monkeypatch.setattr(suite, "reference_arch", lambda res: SearchSpace.builtin("xxs").smallest().replace(resolution=res))
    summary = suite.export_suite(SearchSpace.builtin("xxs"), out, resolution=64, fit_subnets=0,
                                 formats=("onnx", fmt), measure="all")
    assert summary["formats"] == ["onnx", fmt] and summary["conversion_failures"] == []
    files = sorted(out.rglob("*.mlpackage" if fmt == "coreml" else f"*.{fmt}"))
    # reference + per block: with-network, standalone block; + the shared context networks
    assert len(files) == len(list(out.rglob("*.onnx"))) == 1 + 2 * len(sigs) + summary["contexts"]
    return summary, files


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # coremltools' own internals
def test_export_suite_converts_blocks_to_core_ml(tmp_path: Path, monkeypatch) -> None:
    """Core ML conversion of the suite's networks works on Linux (running them needs macOS/iOS)."""
    ct = pytest.importorskip("coremltools")
    summary, _ = _export_small_suite("coreml", tmp_path / "suite", monkeypatch)
    assert any("cannot run on Linux" in n for n in summary["notes"])
    spec = ct.utils.load_spec(str(tmp_path / "suite" / "blocks" / "b000_with.mlpackage"))
    assert [d for d in spec.description.input[0].type.multiArrayType.shape] == [1, 3, 64, 64]


def test_export_suite_converts_blocks_to_tflite_that_run_in_litert(tmp_path: Path, monkeypatch) -> None:
    """TFLite export (litert-torch) of the suite, each file invoked in LiteRT's interpreter on this CPU.

    Needs the optional `tflite` extra (litert-torch pulls jax, so it is not in the test extra);
    run with `pip install -e ".[tflite,test]"`."""
    pytest.importorskip("litert_torch")
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    out = tmp_path / "suite"
    _, files = _export_small_suite("tflite", out, monkeypatch)
    manifest = json.loads((out / "manifest.json").read_text())
    standalone = {out / f"{b['standalone']}.tflite" for b in manifest["blocks"]}
    for f in files:
        it = interpreter.Interpreter(model_path=str(f))
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], np.random.rand(*inp["shape"]).astype(np.float32))
        it.invoke()
        out_shape = list(it.get_output_details()[0]["shape"])
        if f in standalone:  # both blocks keep their input's shape
            assert out_shape == list(inp["shape"])
        else:  # whole networks end in pooled features or logits
            assert out_shape[0] == 1 and len(out_shape) == 2
