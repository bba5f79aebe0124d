"""`autovit space show`, `autovit model info`, `autovit bench`: output, --json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autovit.bench import BenchReport, BenchRow, bench_models, markdown_table
from autovit.cli import main
from autovit.costs import count_macs, count_params
from autovit.registry import paper_arch


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Runs the CLI entry point in-process; returns (exit code, stdout, stderr with rich's line
    wrapping undone)."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, " ".join(out.err.split())


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ space show
def test_space_show_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "space", "show", "xs")
    assert code == 0
    for words in ("search space 'xs'", "Transformer-4", "{112,128,168}", "710,903,070,720", "~10^16",
                  "1.6-2.6M", "head_dim=16"):
        assert words in out, words


def test_space_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "space", "show", "s")
    assert data["cardinality"]["constrained"] == 710903070720
    assert data["cardinality"]["unconstrained"] == 1506655862784
    assert data["paper_log10_cardinality"] == {"unconstrained": 16, "constrained": 10}
    assert data["param_range"]["min"] < 4.0e6 < 7.2e6 < data["param_range"]["max"]
    assert data["paper_param_range"] == [4.0e6, 7.2e6]
    assert data["choices"]["transformer"][0]["heads"] == [7, 8, 9]
    assert data["layout"]["head_dim"] == 16


def test_space_show_yaml_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from autovit.space import SearchSpace

    path = tmp_path / "mine.yaml"
    path.write_text(SearchSpace.builtin("xxs").to_yaml().replace("name: xxs", "name: mine"))
    assert run_json(capsys, "space", "show", str(path))["name"] == "mine"


@pytest.mark.parametrize("arg,message", [("xss", "unknown search space 'xss'"),
                                         ("missing.yaml", "search space file not found")])
def test_space_show_bad_input_exits_2(capsys: pytest.CaptureFixture[str], arg: str, message: str) -> None:
    code, out, err = run(capsys, "space", "show", arg)
    assert code == 2 and message in err and "Traceback" not in err + out


def test_space_show_malformed_yaml_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    code, _, err = run(capsys, "space", "show", str(path))
    assert code == 2 and "malformed YAML" in err


# ------------------------------------------------------------------ model info
def test_model_info_json_matches_cost_model(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "model", "info", "autovit_xxs", "--num-classes", "10", "--resolution", "128")
    arch = paper_arch("xxs").replace(resolution=128)
    assert (data["params"], data["macs"]) == (count_params(arch, 10), count_macs(arch, 10))
    assert sum(s["params"] for s in data["stages"]) == data["params"]
    assert [s["name"] for s in data["stages"]][-1] == "head" and data["key"] == arch.key()


def test_model_info_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "model", "info", "autovit_xxs")
    assert code == 0 and "1,807,920" in out and "transformer4" in out and "0.305 GMACs" in out


def test_model_info_arch_json_with_space(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = paper_arch("xs").to_dict()
    del d["layout"]
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(d))
    data = run_json(capsys, "model", "info", str(path), "--space", "xs")
    assert data["params"] == count_params(paper_arch("xs"))
    code, _, err = run(capsys, "model", "info", str(path), "--space", "xxs")
    assert code == 2 and "transformer[0].width = 96 is outside the search space 'xxs'" in err
    assert "allowed values: 48, 64" in err


@pytest.mark.parametrize("content,message", [
    ('{"resolution": 256,', "arch JSON is malformed"),
    ('{"resolution": 256}', "missing the field 'stem_width'"),
    ('{"arch": 1}', "unknown field 'arch'"),
    ('[256]', "must be a JSON object"),
])
def test_model_info_bad_arch_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str,
                                          message: str) -> None:
    path = tmp_path / "arch.json"
    path.write_text(content)
    code, out, err = run(capsys, "model", "info", str(path))
    assert code == 2 and message in err and "Traceback" not in err + out


def test_model_info_unknown_model_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "model", "info", "autovit_m")
    assert code == 2 and "unknown model 'autovit_m'" in err and "hint" in err


# ------------------------------------------------------------------ bench
def test_bench_costs_only_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "bench", "autovit_xxs", "mobilevit_xxs", "--no-latency", "--resolution", "64")
    xxs, mvit = data["models"]
    assert (xxs["name"], xxs["source"], mvit["source"]) == ("autovit_xxs", "autovit", "timm")
    arch = paper_arch("xxs").replace(resolution=64)
    assert (xxs["params"], xxs["macs"]) == (count_params(arch), count_macs(arch))
    assert mvit["params"] == 1272024 and mvit["median_ms"] is None
    assert data["settings"]["resolution"] == 64 and data["versions"]["onnxruntime"]


def test_bench_measures_latency_and_writes_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code, text, err = run(capsys, "bench", "autovit_xxs", "--resolution", "64", "--rounds", "2", "--runs", "2",
                          "--warmup", "1", "--no-pin", "--out", str(out))
    assert code == 0, err
    assert "autovit_xxs" in text and "median ms" in text
    data = json.loads(out.read_text())
    row = data["models"][0]
    assert row["median_ms"] > 0 and row["iqr_ms"] >= 0 and row["ratio_to_ref"] == 1.0
    assert len(row["rounds_ms"]) == 2 and data["machine"]["threads"] == 1


def test_bench_times_on_the_torch_backend_and_restores_threads(capsys: pytest.CaptureFixture[str]) -> None:
    """One timing path for tables and bench: the backend is a parameter; torch's thread count (which
    the torch backend sets) is back afterwards."""
    import torch

    torch.set_num_threads(2)
    data = run_json(capsys, "bench", "autovit_xxs", "--resolution", "32", "--rounds", "2", "--runs", "2",
                    "--warmup", "1", "--no-pin", "--backend", "torch", "--threads", "1")
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)  # as tests/conftest.py sets it
    assert data["settings"]["backend"] == "torch" and data["machine"]["backend"] == "torch"
    assert data["models"][0]["median_ms"] > 0


@pytest.mark.parametrize("args,message", [
    (("autovit_xxx",), "unknown model 'autovit_xxx'"),
    (("not_a_model_at_all",), "unknown model 'not_a_model_at_all'"),
    (("autovit_xxs", "--reference", "mobilevit_xxs"), "reference 'mobilevit_xxs' is not among"),
    (("autovit_xxs", "--threads", "0"), "threads must be >= 1"),
    (("autovit_xxs", "--rounds", "0"), "need rounds >= 1"),
    (("autovit_xxs", "--resolution", "16"), "resolution must be >= 32"),
    (("autovit_xxs", "--backend", "tvm"), "unknown latency backend 'tvm'"),
])
def test_bench_bad_input_exits_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, out, err = run(capsys, "bench", *args, "--no-latency")
    assert code == 2 and message in err and "Traceback" not in err + out


def test_unknown_model_suggests_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "bench", "mobilevit_xxz", "--no-latency")
    assert "did you mean mobilevit_xxs" in err


def test_bench_python_api_and_markdown() -> None:
    report = bench_models(["autovit_xxs", "autovit_xxs"], resolution=64, latency=False)
    assert len(report.rows) == 1  # repeats are dropped
    md = markdown_table(report)
    assert "| autovit_xxs | autovit |" in md and "- | - | -" in md
    assert BenchReport.from_dict(report.to_dict()).to_dict() == report.to_dict()


def test_bench_report_round_wins() -> None:
    rows = [BenchRow("a", "timm", 1, 1, rounds_ms=[1.0, 3.0, 2.0]),
            BenchRow("b", "timm", 1, 1, rounds_ms=[2.0, 2.0, 3.0])]
    report = BenchReport(rows, {}, {}, {})
    assert report.wins("a", "b") == 2 and report.wins("b", "a") == 1
