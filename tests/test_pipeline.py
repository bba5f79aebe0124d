"""`autovit run` end to end on a tiny config, including a crash in the middle of the search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autovit.errors import AutovitError
from autovit.latency.lut import synthetic_table
from autovit.latency.measure import device_fingerprint
from autovit.pipeline import PipelineConfig, run_pipeline
from autovit.pipeline.stages import MARKER
from autovit.space import SearchSpace

TINY = Path(__file__).parent / "data" / "tiny_space.yaml"


def _config(tmp: Path, out: str) -> PipelineConfig:
    space = SearchSpace.from_yaml(TINY)
    table = synthetic_table(space, seed=0, resolution=32,
                            fingerprint=device_fingerprint("ort", 1, "all", 32))
    table_path = tmp / "table.json"
    table.save(table_path)
    return PipelineConfig.from_dict({
        "name": "tiny", "out": str(tmp / out), "space": str(TINY), "seed": 0,
        "latency": {"table": str(table_path), "validate_samples": 0, "bench_rounds": 1},
        "supernet": {"train": {"dataset": "digits", "resolution": 32, "max_steps": 6, "batch_size": 32,
                               "mixup": 0.0, "cutmix": 0.0, "rand_augment": None, "random_erasing": 0.0,
                               "calib_images": 64, "progress": False, "tensorboard": False,
                               "ckpt_every_steps": 3}},
        "search": {"latency_budget": "1000ms",
                   "args": {"population": 6, "generations": 3, "parents": 3, "coarse_samples": 300,
                            "coarse_top_k": 6, "calib_images": 64, "val_images": 64, "measure": False,
                            "impact": False}},
        "export": {"formats": ["safetensors", "onnx"]},
        "baselines": [],
    })


def _status(run: Path, stage: str) -> str:
    return json.loads((run / stage / MARKER).read_text())["status"]


def _best_arch(run: Path) -> dict:
    return json.loads((run / "search" / "best.json").read_text())["arch"]


def test_pipeline_end_to_end_and_resume_after_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = run_pipeline(_config(tmp_path, "uninterrupted"), log=lambda m: None)
    run = reference.parent
    assert reference.name == "report.md" and "## The chosen model" in reference.read_text()
    # the budget names its units; the final benchmark shows the searched model against it
    assert "latency budget 1000 ms = " in reference.read_text() and "not timed here" in reference.read_text()
    assert "Latency budget contract: met -- the searched model measured 0.0" in reference.read_text()
    for stage in ("latency", "supernet", "search", "export", "final_bench"):
        assert (run / stage / MARKER).is_file(), stage
    export = json.loads((run / "export" / "export.json").read_text())
    assert 0.0 <= export["test"]["top1"] <= 100.0
    assert (run / "export" / "model" / "model.onnx").is_file()

    # Crash in the middle of the search (after the first generation's evaluations) ...
    from autovit.supernet import SubnetEvaluator

    calls = {"n": 0}
    original = SubnetEvaluator.__call__

    def crashing(self, arch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 8:
            raise KeyboardInterrupt("simulated crash")
        return original(self, arch)

    monkeypatch.setattr(SubnetEvaluator, "__call__", crashing)
    cfg = _config(tmp_path, "crashed")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, log=lambda m: None)
    crashed = Path(cfg.out)
    assert _status(crashed, "supernet") == "done" and _status(crashed, "search") == "running"
    assert (crashed / "search" / "state.json").is_file()

    # ... then rerun: finished stages are skipped, the search resumes, the result is the same.
    monkeypatch.setattr(SubnetEvaluator, "__call__", original)
    logs: list[str] = []
    run_pipeline(cfg, log=logs.append)
    assert "[supernet] up to date, skipped" in logs and "[latency] up to date, skipped" in logs
    assert _best_arch(crashed) == _best_arch(run)


def test_bad_pipeline_configs(tmp_path: Path) -> None:
    with pytest.raises(AutovitError, match="not found"):
        PipelineConfig.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "out": "y", "searhc": {}}))
    with pytest.raises(AutovitError, match="unknown key 'searhc'"):
        PipelineConfig.load(bad)
    bad.write_text(yaml.safe_dump({"name": "x", "out": "y", "latency": {"measure": "some"}}))
    with pytest.raises(AutovitError, match="bad.yaml: latency.measure is 'some'") as err:
        PipelineConfig.load(bad)
    assert "anchors, all" in err.value.hint
    bad.write_text("name: [unclosed")
    with pytest.raises(AutovitError, match="malformed YAML"):
        PipelineConfig.load(bad)


def test_shipped_configs_parse() -> None:
    root = Path(__file__).parent.parent / "configs"
    for path in ("quickstart.yaml", "cifar10.yaml", "imagenet.yaml"):
        cfg = PipelineConfig.load(root / path)
        assert cfg.name and cfg.out


def test_timing_process_restores_cpu_pinning_and_threads() -> None:
    """Latency timing pins the process and sets torch's thread count; both come back afterwards (also
    on an error), or the next pipeline stage (training) runs 1 thread on 1 CPU, ~10x slower."""
    import os

    import torch

    from autovit.latency.measure import timing_process, torch_runner

    if not hasattr(os, "sched_getaffinity") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs CPU affinity and 2 CPUs")
    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # earlier tests in this worker may have pinned it
    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    with pytest.raises(RuntimeError, match="timing failed"):
        with timing_process() as cpu:
            assert os.sched_getaffinity(0) == {cpu} == {max(before)}
            torch_runner(torch.nn.Identity(), (1, 3), threads=threads + 1)
            assert torch.get_num_threads() == threads + 1
            raise RuntimeError("timing failed")
    assert os.sched_getaffinity(0) == before and torch.get_num_threads() == threads


def test_report_tables_for_latency_validation_and_exported_files(tmp_path: Path) -> None:
    """report.md shows the latency validation as a table with units (not a JSON dict) and lists
    the exported files with their absolute and relative differences."""
    from types import SimpleNamespace

    from autovit.pipeline.report import validation_markdown, write_report

    validation = {"samples": 12, "metrics": {"mape": 2.9, "rmspe": 3.79, "max_error": 7.17, "bias": -2.51,
                                             "within_5": 75.0, "within_10": 100.0, "kendall_tau": 0.7879,
                                             "spearman_rho": 0.8881},
                  "retest_noise": {"mape": 2.0, "within_5": 91.67, "kendall_tau": 0.7879}}
    table = validation_markdown(validation).splitlines()
    assert table[0] == "| metric | unit | latency model | re-test noise (measured twice) |"
    assert "| mean absolute error (MAPE) | % | 2.90 | 2.00 |" in table
    assert "| subnets predicted within 5 % | % of subnets | 75 | 92 |" in table
    assert "| root-mean-square error (RMSPE) | % | 3.79 | - |" in table
    assert "| Kendall tau (rank agreement, 1 = same order) | - | 0.788 | 0.788 |" in table

    (tmp_path / "latency_validation").mkdir()
    (tmp_path / "latency_validation" / "validation.json").write_text(json.dumps(validation))
    model_dir = tmp_path / "export" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "export.json").write_text(json.dumps({"formats": [
        {"format": "onnx", "status": "ok", "path": str(model_dir / "model.onnx"), "max_abs_diff": 1.45e-4,
         "max_rel_diff": 1.9e-6, "message": "onnx.checker passed"}]}))
    pipe = SimpleNamespace(root=tmp_path, resolution=32, space=SimpleNamespace(name="xxs"),
                           cfg=SimpleNamespace(name="t", search=SimpleNamespace(latency_budget="10ms")))
    report = write_report(pipe, {}).read_text()
    assert "{" not in report.split("## Latency model")[1].split("##")[0]  # no raw JSON
    assert "| mean absolute error (MAPE) | % | 2.90 | 2.00 |" in report
    assert "| onnx | ok | `export/model/model.onnx` | 1.45e-04 | 1.9e-06 | onnx.checker passed |" in report
