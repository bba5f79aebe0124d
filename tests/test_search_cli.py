"""`autovit search` / `autovit export` end to end on a tiny untrained supernet, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from autovit.cli import main
from autovit.space import SearchSpace
from search_toys import tiny_space, write_toy_supernet, write_toy_table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("search_cli")
    space = tiny_space()
    return {"dir": d, "supernet": write_toy_supernet(d / "supernet.pt", space),
            "lut": write_toy_table(d / "lut.json", space),
            "foreign_lut": write_toy_table(d / "foreign.json", space, fingerprint={"cpu": "Apple M9", "cores": 8,
                                                                                 "backend": "ort", "threads": 1}),
            "other_space_lut": write_toy_table(d / "xxs.json", space, space_name="xxs")}


def _run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    return exit_info.value.code, text if text.lstrip().startswith("{") else " ".join(text.split())


SMALL = ["--population", "4", "--generations", "2", "--parents", "2", "--coarse-samples", "500",
         "--coarse-top-k", "4", "--calib-images", "32", "--val-images", "64", "--no-measure"]


def test_search_then_export_end_to_end(files, capsys) -> None:
    out = files["dir"] / "run"
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "2ms", "--params-budget", "0.3M", "--budgets", "1.8ms,2ms", "--compare",
                       "--out", str(out), "--json", *SMALL], capsys)
    assert code in (0, None), text
    summary = json.loads(text)
    assert [row["name"] for row in summary["comparison"]] == ["latency-aware search (ours)", "random search",
                                                              "FLOPs-constrained"]
    assert set(summary["best_per_budget"]) == {"1.8", "2"}
    assert "## Comparison" in (out / "report.md").read_text()
    best = json.loads((out / "best.json").read_text())
    assert best["latency_ms"]["predicted"] <= 2.0 and best["params"] <= 3e5
    assert best["accuracy"] == summary["accuracy"] and summary["evaluations"] == 8
    for name in ("pareto.json", "pareto.csv", "history.csv", "search.png", "coarse_cloud.png", "report.md",
                 "impact.json", "state.json"):
        assert (out / name).is_file(), name
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 8
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--params-budget", "0.3M", "--out", str(out),
                       *SMALL], capsys)
    assert code == 2 and "already holds a search" in text and "--resume" in text
    # resuming a finished run re-evaluates nothing and gives the same winner
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "2ms", "--params-budget", "0.3M", "--budgets", "1.8ms,2ms",
                       "--out", str(out), "--json", "--resume", "--no-impact", *SMALL], capsys)
    assert code in (0, None), text
    assert json.loads(text)["key"] == best["key"]

    exp = files["dir"] / "export"
    code, text = _run(["export", "--supernet", str(files["supernet"]), "--arch", str(out / "best.json"),
                       "--out", str(exp), "--formats", "safetensors,onnx", "--calib-images", "32", "--json"], capsys)
    assert code in (0, None), text
    report = json.loads(text)
    assert [f["status"] for f in report["formats"]] == ["ok", "ok"]
    assert report["formats"][1]["max_abs_diff"] <= 1e-4
    assert (exp / "model.safetensors").is_file() and (exp / "model.onnx").is_file()


def test_search_at_the_supernets_training_resolution(files, tmp_path, capsys) -> None:
    """The space file says 64 px, the supernet was trained at 32 px: a 32 px table is accepted
    (no --force-table), the winner is a 32 px arch; a 64 px table is refused naming both, and
    --force-table uses it, predicting at its 64 px."""
    from autovit.arch import Arch
    from autovit.latency.predictor import LatencyModel

    space = tiny_space()
    sup = write_toy_supernet(tmp_path / "s32.pt", space, config={"resolution": 32, "dataset": "digits"})
    lut32 = write_toy_table(tmp_path / "lut32.json", space.with_resolution(32))
    base = ["search", "--supernet", str(sup), "--latency-budget", "2ms", "--json", "--no-impact", *SMALL,
            "--generations", "1", "--val-images", "16"]
    code, text = _run([*base, "--lut", str(lut32), "--out", str(tmp_path / "a")], capsys)
    assert code in (0, None), text
    best = json.loads((tmp_path / "a" / "best.json").read_text())
    arch = Arch.from_dict(best["arch"])
    assert arch.resolution == 32
    assert best["latency_ms"]["predicted"] == pytest.approx(LatencyModel.load(lut32).predict_one(arch))
    from autovit.train.checkpoint import load_model_from_checkpoint

    assert load_model_from_checkpoint(sup, tmp_path / "a" / "best.json").arch == arch  # e.g. `supernet eval`
    code, text = _run([*base, "--lut", str(files["lut"]), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "built at 64px, not 32px" in text and "--resolution 32" in text, text
    with pytest.warns(UserWarning, match="built at 64px, not 32px"):
        code, text = _run([*base, "--lut", str(files["lut"]), "--force-table", "--out", str(tmp_path / "c")], capsys)
    assert code in (0, None), text
    best = json.loads((tmp_path / "c" / "best.json").read_text())
    arch = Arch.from_dict(best["arch"])
    assert arch.resolution == 32
    assert best["latency_ms"]["predicted"] == pytest.approx(
        LatencyModel.load(files["lut"]).predict_one(arch.replace(resolution=64)))


def test_export_recalibrates_bn_exactly_as_the_search_did(tmp_path, capsys) -> None:
    """Export of best.json repeats the search's BN recalibration (images, batching, seed): the
    exported BN buffers equal the search evaluator's for that arch, and the exported model scores
    the accuracy best.json reports. Other --calib-images give other statistics (and a warning)."""
    from autovit.arch import Arch
    from autovit.search.runner import validation_evaluator
    from autovit.train.checkpoint import load_supernet_checkpoint
    from autovit.subnet_io import load_subnet
    from autovit.supernet import recalibrate_bn
    from autovit.supernet.evaluate import evaluate

    sup = write_toy_supernet(tmp_path / "s.pt", tiny_space(), config={"resolution": 32, "dataset": "digits"})
    out = tmp_path / "run"
    code, text = _run(["search", "--supernet", str(sup), "--params-budget", "0.3M", "--out", str(out), "--json",
                       "--no-impact", *SMALL, "--generations", "1", "--calib-images", "40", "--batch-size", "16",
                       "--seed", "3"], capsys)
    assert code in (0, None), text
    best = json.loads((out / "best.json").read_text())
    assert best["data"]["calibration"] == {"dataset": "digits", "data_dir": None, "images": 40, "batch_size": 16,
                                           "seed": 3}
    code, text = _run(["export", "--supernet", str(sup), "--arch", str(out / "best.json"), "--out",
                       str(tmp_path / "e"), "--formats", "safetensors", "--json"], capsys)
    assert code in (0, None), text
    exported = load_subnet(tmp_path / "e")
    meta = json.loads((tmp_path / "e" / "meta.json").read_text())
    assert meta["bn_calibration"]["as_in_search"] is True
    from autovit.data import data_config, normalisation
    from autovit.train.config import TrainConfig

    digits_mean, digits_std = normalisation(TrainConfig(dataset="digits"))
    assert meta["data_config"] == {"mean": list(digits_mean), "std": list(digits_std), "crop_pct": 1.0,
                                   "interpolation": "bicubic"}
    assert exported.pretrained_cfg["mean"] == digits_mean

    loaded = load_supernet_checkpoint(sup)  # the search's own evaluator, rebuilt with its settings
    evaluator, _ = validation_evaluator(loaded, val_images=64, calib_images=40, batch_size=16, device="cpu", seed=3)
    arch = Arch.from_dict(best["arch"])
    loaded.supernet.set_active(arch)
    recalibrate_bn(loaded.supernet, evaluator.calib)
    reference = loaded.supernet.extract(arch).state_dict()
    got = exported.state_dict()
    bn_keys = [k for k in reference if k.endswith(("running_mean", "running_var"))]
    assert bn_keys and all(torch.equal(got[k], reference[k]) for k in bn_keys)
    assert evaluate(exported, evaluator.val_loader)["top1"] == best["accuracy"]

    code, text = _run(["export", "--supernet", str(sup), "--arch", str(out / "best.json"), "--out",
                       str(tmp_path / "e2"), "--formats", "safetensors", "--calib-images", "24"], capsys)
    assert code in (0, None) and "other settings than the search" in text, text
    other = load_subnet(tmp_path / "e2").state_dict()
    assert not all(torch.equal(other[k], reference[k]) for k in bn_keys)


@pytest.mark.parametrize("extra, words", [
    (["--latency-budget", "2M"], "is a time"),
    (["--params-budget", "12ms"], "is a count"),
    (["--latency-budget", "0.001ms"], "no subnet of the space 'tiny' at 64px can meet the latency budget"),
    (["--objective", "eq4"], "unknown objective"),
    (["--eval-dtype", "int8"], "unknown evaluation dtype 'int8'"),
])
def test_bad_budgets_exit_2(files, capsys, extra, words) -> None:
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--out", str(files["dir"] / "bad"), *SMALL, *extra], capsys)
    assert code == 2 and words in text, text
    assert "Traceback" not in text


def test_bf16_evaluation_is_recorded_and_a_resume_in_float32_is_refused(files, capsys) -> None:
    out = files["dir"] / "bf16"
    base = ["search", "--supernet", str(files["supernet"]), "--params-budget", "0.3M", "--out", str(out), "--json",
            *SMALL]
    code, text = _run([*base, "--eval-dtype", "bfloat16"], capsys)
    assert code in (0, None), text
    state = json.loads((out / "state.json").read_text())
    assert state["inputs"]["eval_dtype"] == "bfloat16"
    code, text = _run([*base, "--resume"], capsys)  # float32 now: its accuracies would not be comparable
    assert code == 2 and "eval dtype was 'bfloat16' and is now 'float32'" in text, text


def test_impossible_budget_names_the_minimum(files, capsys) -> None:
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--lut", str(files["lut"]),
                       "--latency-budget", "1ms", "--out", str(files["dir"] / "bad"), *SMALL], capsys)
    assert code == 2 and "fastest it reaches is predicted at 0.138x the reference network (1.380 ms at table time)" \
        in text and "raise the budget to '1.38ms' or more" in text, text


def test_table_of_another_device_or_space_is_refused(files, capsys) -> None:
    base = ["search", "--supernet", str(files["supernet"]), "--latency-budget", "2ms",
            "--out", str(files["dir"] / "bad"), *SMALL]
    code, text = _run([*base, "--lut", str(files["foreign_lut"])], capsys)
    assert code == 2 and "another device" in text and "--force-table" in text, text
    code, text = _run([*base, "--lut", str(files["other_space_lut"])], capsys)
    assert code == 2 and "built for the space 'xxs'" in text, text


def test_supernet_of_another_space_is_refused(files, capsys) -> None:
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--space", "xxs", "--params-budget", "2M",
                       "--out", str(files["dir"] / "bad"), *SMALL], capsys)
    assert code == 2 and "supernet of the space 'tiny', not of 'xxs'" in text, text


def test_latency_budget_without_a_table_is_refused(files, capsys) -> None:
    code, text = _run(["search", "--supernet", str(files["supernet"]), "--latency-budget", "2ms",
                       "--out", str(files["dir"] / "bad"), *SMALL], capsys)
    assert code == 2 and "needs a latency table" in text, text


def test_export_with_an_arch_of_another_space_is_refused(files, tmp_path, capsys) -> None:
    arch = tmp_path / "arch.json"
    SearchSpace.builtin("xxs").smallest().save(arch)
    code, text = _run(["export", "--supernet", str(files["supernet"]), "--arch", str(arch), "--out",
                       str(tmp_path / "e"), "--calib-images", "0"], capsys)
    assert code == 2 and "outside the search space 'tiny'" in text or "layout differs" in text, text
