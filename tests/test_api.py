"""The library API (autovit.api): typed configs in, result objects out, no CLI in between."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest
import yaml

import autovit
from autovit.errors import AutovitError


def test_export_fine_tunes_in_process_with_the_supernets_recipe(tmp_path: Path, monkeypatch) -> None:
    """`--finetune-steps` trains the subnet alone from its inherited weights in this process (it used
    to spawn `autovit train` as a subprocess), with the supernet's recorded recipe plus the overrides."""
    from search_toys import tiny_space, write_toy_supernet

    from autovit.train.checkpoint import read_checkpoint

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("export spawned a process")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    space = tiny_space()
    recipe = {"dataset": "digits", "resolution": 32, "batch_size": 16, "lr": 0.002, "time_budget_s": 600.0,
              "progress": False}
    supernet = write_toy_supernet(tmp_path / "supernet.pt", space, config=recipe)
    arch = tmp_path / "arch.json"
    space.smallest().save(arch)
    report = autovit.export_model(autovit.ExportConfig(
        out=tmp_path / "model", supernet=supernet, arch=str(arch), formats=("safetensors",), calib_images=0,
        finetune_steps=2, finetune={"lr": 1e-4}))
    assert [(r.format, r.status) for r in report.results] == [("safetensors", "ok")]
    used = yaml.safe_load((tmp_path / "model" / "finetune" / "finetune_config.yaml").read_text())
    assert (used["dataset"], used["batch_size"], used["lr"], used["max_steps"]) == ("digits", 16, 1e-4, 2)
    assert used["time_budget_s"] is None and used["init_from"] == str(supernet)
    assert read_checkpoint(tmp_path / "model" / "finetune")["step"] == 2
    assert (tmp_path / "model" / "finetune" / "subnet" / "arch.json").is_file()


def test_finetune_args_are_parsed_by_the_train_commands_options() -> None:
    from autovit.cli.search import finetune_settings

    assert finetune_settings("--lr 5e-4 --set mixup=0 --dataset cifar10 --no-download") == {
        "lr": 5e-4, "mixup": 0.0, "dataset": "cifar10", "download": False}
    assert finetune_settings(None) == {}
    with pytest.raises(AutovitError, match="--finetune-args: No such option: --lrr"):
        finetune_settings("--lrr 1")


def test_export_config_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(AutovitError, match="exactly one of --supernet"):
        autovit.export_model(autovit.ExportConfig(out=tmp_path / "m"))
    with pytest.raises(AutovitError, match="--finetune-steps needs --supernet"):
        autovit.export_model(autovit.ExportConfig(out=tmp_path / "m", subnet=tmp_path / "s", finetune_steps=5))


def test_search_config_holds_typed_budgets() -> None:
    cfg = autovit.SearchRunConfig(supernet="s.pt", latency_budget="0.8x:mobilevit_xxs", params_budget="2M")
    assert isinstance(cfg.latency_budget, autovit.LatencyBudget) and cfg.latency_budget.model == "mobilevit_xxs"
    assert cfg.params_budget == 2e6 and cfg.supernet == Path("s.pt")
    assert cfg.search_config(num_classes=10).latency_budget_ms is None  # a model budget: timed when the run starts
    assert autovit.SearchRunConfig(supernet="s.pt", latency_budget="12ms").search_config().latency_budget_ms == 12.0
    with pytest.raises(AutovitError, match="the latency budget must be positive, got '0ms'"):
        autovit.SearchRunConfig(supernet="s.pt", latency_budget="0ms")


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """`import autovit.bench` sets the attribute `autovit.bench` to the module: a lazily exported
    function of that name would turn into a module once any code imports the submodule."""
    package = Path(autovit.__file__).parent
    clashes = [name for name in autovit.__all__ if (package / f"{name}.py").exists() or (package / name).is_dir()]
    assert clashes == []
    importlib.import_module("autovit.bench")
    assert callable(autovit.run_bench) and autovit.run_bench.__module__ == "autovit.api"
