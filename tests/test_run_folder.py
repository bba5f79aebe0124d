"""Run folders (issue 16): `--fresh` deletes only what autovit created, one run per folder (lock),
orphan temp files are cleaned, stages are keyed by their settings, configs are checked up front."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from autovit.cli import main
from autovit.errors import AutovitError
from autovit.pipeline import Pipeline, PipelineConfig
from autovit.pipeline.stages import MARKER, Stage, run_stages
from autovit.run_folder import (
    LOCK_FILE,
    MARKER_FILE,
    delete_run_folder,
    open_run_folder,
    prepare,
    remove_orphan_tmp_files,
)

def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """(exit code, stderr without rich's line wrapping) of the CLI run in-process."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return int(exc.value.code or 0), " ".join(capsys.readouterr().err.split())


def _marked(folder: Path) -> Path:
    prepare(folder, "pipeline")
    (folder / "keep.txt").write_text("work")
    return folder


# ------------------------------------------------------------------ --fresh
@pytest.mark.parametrize("out, why", [("../victim", "has no .autovit-run marker"),
                                      (".", "working directory"),
                                      ("..", "working directory")])
def test_fresh_never_deletes_a_foreign_folder_the_cwd_or_a_parent(tmp_path: Path, out: str, why: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    victim = tmp_path / "victim"
    project.mkdir()
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    (project / "code.py").write_text("print(1)")
    for folder in (project, tmp_path):  # even a marker does not make the cwd or a parent deletable
        (folder / MARKER_FILE).write_text("{}")
    cfg = project / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "out": out}))
    monkeypatch.chdir(project)
    code, err = cli(capsys, "run", str(cfg), "--fresh")
    assert code == 2 and "refusing to delete" in err and why in err, err
    assert (victim / "thesis.tex").read_text() == "years of work" and (project / "code.py").is_file()


def test_fresh_deletes_a_marked_run_folder_but_not_one_in_use(tmp_path: Path) -> None:
    run = _marked(tmp_path / "runs" / "a")
    with open_run_folder(run, "pipeline"):
        with pytest.raises(AutovitError, match="another autovit run holds"):
            delete_run_folder(run)
    assert (run / "keep.txt").is_file()
    assert delete_run_folder(run) and not run.exists()
    assert not delete_run_folder(run)  # nothing there: nothing to do
    (tmp_path / "file").write_text("x")
    with pytest.raises(AutovitError, match="it is a file"):
        delete_run_folder(tmp_path / "file")
    run = _marked(tmp_path / "runs" / "b")
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(AutovitError, match="symbolic link"):
        delete_run_folder(tmp_path / "link")
    with pytest.raises(AutovitError, match="the config reads .*keep.txt from it"):
        delete_run_folder(run, keep=[run / "keep.txt"])
    assert (run / "keep.txt").is_file()


def test_marker_only_in_folders_autovit_creates(tmp_path: Path) -> None:
    assert prepare(tmp_path / "new", "train") and (tmp_path / "new" / MARKER_FILE).is_file()
    (tmp_path / "empty").mkdir()
    assert prepare(tmp_path / "empty", "train")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("1")
    assert not prepare(tmp_path / "mine", "train") and not (tmp_path / "mine" / MARKER_FILE).exists()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(AutovitError, match="is an existing file"):
        prepare(tmp_path / "a_file", "train")


# ------------------------------------------------------------------ lock
def test_second_process_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ready, held = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first run: holds the folder until killed
        try:
            with open_run_folder(run, "search"):
                os.write(held, b"1")
                time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(ready, 1) == b"1"
        with pytest.raises(AutovitError, match=f"another autovit run holds {run} \\(pid {pid}\\)"):
            with open_run_folder(run, "search"):
                pass
    finally:
        os.kill(pid, signal.SIGKILL)  # like kill -9: no cleanup code runs
        os.waitpid(pid, 0)
    with open_run_folder(run, "search"):  # the kernel released the dead process's lock
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())


@pytest.mark.parametrize("command", [["search", "--supernet", "x.pt"], ["supernet", "train", "--preset", "tiny"],
                                     ["train", "--arch", "autovit_xxs", "--preset", "tiny"]])
def test_cli_commands_refuse_a_held_out_folder(tmp_path: Path, command: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with open_run_folder(tmp_path / "out", "search"):
        code, err = cli(capsys, *command, "--out", str(tmp_path / "out"))
    assert code == 2 and f"another autovit run holds {tmp_path / 'out'} (pid {os.getpid()})" in err, err


def test_pipeline_refuses_a_held_run_folder(tmp_path: Path) -> None:
    cfg = PipelineConfig.from_dict({"name": "x", "out": str(tmp_path / "run")})
    with open_run_folder(tmp_path / "run", "pipeline"):
        with pytest.raises(AutovitError, match="another autovit run holds"):
            Pipeline(cfg, log=lambda m: None).run()


def test_ranks_other_than_0_do_not_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_run_folder(tmp_path / "run", "train"):
        monkeypatch.setenv("RANK", "1")
        with open_run_folder(tmp_path / "run", "train") as folder:
            assert folder == tmp_path / "run"


# ------------------------------------------------------------------ orphan temp files
def test_orphan_temp_files_of_killed_writes_are_removed_only_in_run_folders(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare(run, "train")
    (run / "checkpoints").mkdir()
    orphans = [run / "checkpoints" / ".last.pt.k2j_9xq1.tmp", run / ".state.json.abcdEFGH.tmp"]
    kept = [run / "notes.tmp", run / ".x.tmp", run / "checkpoints" / "last.pt"]
    for path in orphans + kept:
        path.write_text("x")
    logs: list[str] = []
    with open_run_folder(run, "train", logs.append):
        pass
    assert not any(p.exists() for p in orphans) and all(p.exists() for p in kept)
    assert logs == [f"removed 2 temp file(s) left by an interrupted write in {run}"]
    user = tmp_path / "user"  # not autovit's folder: nothing is touched
    user.mkdir()
    (user / ".thesis.tex.abcd1234.tmp").write_text("x")
    with open_run_folder(user, "train"):
        pass
    assert (user / ".thesis.tex.abcd1234.tmp").exists()
    assert remove_orphan_tmp_files(user) == [user / ".thesis.tex.abcd1234.tmp"]  # the pattern does match it


def test_atomic_write_temp_names_match_the_orphan_pattern(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autovit import io_utils

    seen: list[str] = []

    def kill(path: Path) -> None:
        seen.append(path.name)
        path.write_text("half")
        raise KeyboardInterrupt  # like a kill; atomic_write removes its temp file on exceptions ...

    with pytest.raises(KeyboardInterrupt):
        io_utils.atomic_write(tmp_path / "last.pt", kill)
    (tmp_path / seen[0]).write_text("half")  # ... but not on SIGKILL: recreate what a kill -9 leaves
    assert remove_orphan_tmp_files(tmp_path) == [tmp_path / seen[0]]


# ------------------------------------------------------------------ stage keys
def _stage(name: str, settings: dict, calls: list[str], after: tuple[str, ...] = ()) -> Stage:
    def run(d: Path) -> dict:
        calls.append(name)
        (d / "out.txt").write_text(json.dumps(settings) + ("+resumed" if (d / "partial").exists() else ""))
        return {}

    return Stage(name, settings, run, ("out.txt",), after)


def test_changed_settings_redo_the_stage_and_the_stages_after_it(tmp_path: Path) -> None:
    def stages(lr: float, calls: list[str]) -> list[Stage]:
        return [_stage("latency", {"rounds": 7}, calls), _stage("supernet", {"train": {"lr": lr}}, calls),
                _stage("search", {"population": 6}, calls, after=("supernet",)),
                _stage("bench", {"rounds": 1}, calls, after=("latency",))]

    calls: list[str] = []
    run_stages(tmp_path, stages(0.001, calls), log=lambda m: None)
    assert calls == ["latency", "supernet", "search", "bench"]
    calls.clear()
    logs: list[str] = []
    run_stages(tmp_path, stages(0.001, calls), log=logs.append)
    assert calls == [] and "[supernet] up to date, skipped" in logs
    calls.clear()
    logs.clear()
    run_stages(tmp_path, stages(0.01, calls), log=logs.append)
    assert calls == ["supernet", "search"]
    assert ("[supernet] settings changed: train.lr 0.001 -> 0.01; the old outputs are in supernet.previous/, "
            "this stage runs from scratch") in logs
    assert any(m.startswith("[search] settings changed: the supernet stage was redone") for m in logs)
    assert json.loads((tmp_path / "supernet.previous" / "out.txt").read_text()) == {"train": {"lr": 0.001}}
    assert json.loads((tmp_path / "supernet" / "out.txt").read_text()) == {"train": {"lr": 0.01}}


def test_unfinished_stage_resumes_in_place_and_tampered_state_is_not_trusted(tmp_path: Path) -> None:
    calls: list[str] = []
    stage = _stage("search", {"population": 6}, calls)

    def crash(d: Path) -> dict:
        (d / "partial").write_text("generation 1")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages(tmp_path, [Stage("search", {"population": 6}, crash, ("out.txt",))], log=lambda m: None)
    assert json.loads((tmp_path / "search" / MARKER).read_text())["status"] == "running"
    run_stages(tmp_path, [stage], log=lambda m: None)
    assert (tmp_path / "search" / "out.txt").read_text().endswith("+resumed")  # same key: resumed in place
    for tampered in ("[1, 2]", "{\"config_hash\": 5}", "\x00\xff not json"):
        (tmp_path / "search" / MARKER).write_text(tampered)
        logs: list[str] = []
        run_stages(tmp_path, [stage], log=logs.append)
        assert logs[0].startswith("[search] made by another autovit version or its stage.json is unreadable")
        assert json.loads((tmp_path / "search" / MARKER).read_text())["status"] == "done"


def test_stage_folder_holding_a_configured_input_is_not_moved(tmp_path: Path) -> None:
    calls: list[str] = []
    run_stages(tmp_path, [_stage("supernet", {"lr": 1}, calls)], log=lambda m: None)
    ckpt = tmp_path / "supernet" / "out.txt"
    with pytest.raises(AutovitError, match="the config points at .*out.txt inside its folder"):
        run_stages(tmp_path, [_stage("supernet", {"lr": 2}, calls)], log=lambda m: None, protected=[ckpt])
    assert ckpt.is_file()


# ------------------------------------------------------------------ the pipeline's supernet stage
def _pipeline_config(tmp_path: Path, **train: object) -> PipelineConfig:
    from autovit.latency.lut import synthetic_table
    from autovit.latency.measure import device_fingerprint
    from autovit.space import SearchSpace

    tiny = Path(__file__).parent / "data" / "tiny_space.yaml"
    table = tmp_path / "table.json"
    if not table.exists():
        synthetic_table(SearchSpace.from_yaml(tiny), seed=0, resolution=32,
                        fingerprint=device_fingerprint("ort", 1, "all", 32)).save(table)
    return PipelineConfig.from_dict({"name": "t", "out": str(tmp_path / "run"), "space": str(tiny),
                                     "latency": {"table": str(table), "validate_samples": 0},
                                     "supernet": {"train": {"max_steps": 4, **train}}, "baselines": []})


def test_pipeline_retrains_the_supernet_when_lr_or_seed_change(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug: with a new lr the supernet stage resumed the finished checkpoint (`--resume auto`)."""
    from autovit import api

    calls: list = []

    def fake_train(cfg: "api.TrainSupernetConfig", console: object = None) -> None:  # leaves a checkpoint
        calls.append(cfg)
        (cfg.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (cfg.out / "checkpoints" / "last.pt").write_text(yaml.safe_dump(cfg.train.to_dict()))
        (cfg.out / "supernet.pt").write_text("weights")

    monkeypatch.setattr(api, "train_supernet", fake_train)

    def run(cfg: PipelineConfig) -> "api.TrainSupernetConfig":
        pipe = Pipeline(cfg, log=lambda m: None)
        with open_run_folder(pipe.root, "pipeline"):
            run_stages(pipe.root, [s for s in pipe.stages() if s.name in ("latency", "supernet")], pipe.log)
        return calls[-1]

    first = run(_pipeline_config(tmp_path, lr=0.001))
    assert first.resume is None
    (tmp_path / "run" / "supernet" / MARKER).write_text(  # as if killed mid-training: resumes
        (tmp_path / "run" / "supernet" / MARKER).read_text().replace('"done"', '"running"'))
    assert run(_pipeline_config(tmp_path, lr=0.001)).resume == "auto"
    for seed in (0, 1):
        cfg = PipelineConfig.from_dict({**_pipeline_config(tmp_path, lr=0.01).to_dict(), "seed": seed})
        assert run(cfg).resume is None  # trained from scratch with the new settings
        trained = yaml.safe_load((tmp_path / "run" / "supernet" / "checkpoints" / "last.pt").read_text())
        assert (trained["lr"], trained["seed"]) == (0.01, cfg.seed)


# ------------------------------------------------------------------ training --resume
def test_supernet_resume_with_other_weight_settings_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    space = Path(__file__).parent / "data" / "tiny_space.yaml"
    run = tmp_path / "sn"
    base = ["supernet", "train", "--space", str(space), "--preset", "tiny", "--out", str(run),
            "--set", "ckpt_every_steps=1", "--set", "resolution=32"]
    assert cli(capsys, *base, "--max-steps", "1")[0] == 0
    config = (run / "config.yaml").read_text()
    for change, words in ((["--lr", "0.01"], "lr 0.001 -> 0.01"), (["--seed", "3"], "seed 0 -> 3"),
                          (["--set", "mixup=0.5"], "mixup 0.0 -> 0.5")):
        code, err = cli(capsys, *base, "--max-steps", "2", "--resume", "auto", *change)
        assert code == 2 and "cannot resume" in err and words in err, err
        assert (run / "config.yaml").read_text() == config  # not rewritten with settings it was not trained with
    assert cli(capsys, *base, "--max-steps", "2", "--resume", "auto")[0] == 0  # training longer is fine


# ------------------------------------------------------------------ config checked before the first stage
@pytest.mark.parametrize("section, message, hint", [
    ({"supernet": {"train": {"lrr": 0.1}}}, "unknown key 'lrr' in supernet.train", "did you mean 'lr'?"),
    ({"supernet": {"train": {"lr": "fast"}}}, "supernet.train: option 'lr' expects float", None),
    ({"search": {"args": {"populaton": 8}}}, "unknown key 'populaton' in search.args", "did you mean 'population'?"),
    ({"search": {"args": {"population": "many"}}}, "search.args: Invalid value for '--population'", None),
    ({"search": {"args": {"population": 4, "parents": 8}}}, "parents (8) cannot exceed the population (4)", None),
    ({"search": {"args": {"seed": 3}}}, "search.args sets 'seed', which the pipeline sets itself",
     "the top-level seed"),
    ({"serach": {}}, "unknown key 'serach' in config", "did you mean 'search'?"),
    ({"latency": {"force_table": True}}, "latency.force_table is set but latency.table is not", None),
])
def test_bad_pipeline_settings_fail_at_load(tmp_path: Path, section: dict, message: str, hint: str | None) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "out": "y", **section}))
    with pytest.raises(AutovitError) as err:
        PipelineConfig.load(path)
    assert message in err.value.message and (hint is None or hint in err.value.hint), str(err.value)


def test_missing_or_foreign_input_files_fail_before_the_first_stage(tmp_path: Path) -> None:
    cfg = _pipeline_config(tmp_path)
    missing = cfg.to_dict()
    missing["latency"]["table"] = str(tmp_path / "nope.json")
    with pytest.raises(AutovitError, match="latency.table not found"):
        Pipeline(PipelineConfig.from_dict(missing))
    other = cfg.to_dict()
    other["space"] = "xxs"  # the table is of the tiny space
    with pytest.raises(AutovitError, match="table.json"):
        Pipeline(PipelineConfig.from_dict(other))
    ckpt = cfg.to_dict()
    ckpt["supernet"]["checkpoint"] = str(tmp_path / "nope.pt")
    with pytest.raises(AutovitError, match="supernet checkpoint not found"):
        Pipeline(PipelineConfig.from_dict(ckpt))
    assert not (tmp_path / "run").exists()  # nothing was started


def test_pipeline_refuses_a_non_empty_foreign_out_folder(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("x")
    with pytest.raises(AutovitError, match="not empty and is not an autovit run folder"):
        Pipeline(_pipeline_config(tmp_path), log=lambda m: None).run()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["mine.txt"]


# ------------------------------------------------------------------ search --resume
def test_search_resume_with_another_supernet_or_evaluation_settings_is_refused(tmp_path: Path) -> None:
    from search_toys import MacsLatency, params_accuracy, tiny_space, write_toy_supernet, write_toy_table

    from autovit.search import SearchConfig
    from autovit.search.evolution import EvolutionarySearch
    from autovit.search.runner import search_inputs
    from autovit.train.checkpoint import load_supernet_checkpoint

    space = tiny_space()
    lut = write_toy_table(tmp_path / "lut.json", space)
    a = search_inputs(load_supernet_checkpoint(write_toy_supernet(tmp_path / "a.pt", space)), lut, val_images=32)
    b = search_inputs(load_supernet_checkpoint(write_toy_supernet(tmp_path / "b.pt", space, seed=1)), lut,
                      val_images=32)
    assert a == search_inputs(load_supernet_checkpoint(tmp_path / "a.pt"), lut, val_images=32)  # stable
    assert a["supernet_weights"] != b["supernet_weights"] and a["latency_table"] == b["latency_table"]
    cfg = SearchConfig(latency_budget_ms=1.3, population=4, generations=1, parents=2, coarse_samples=200,
                       coarse_top_k=4)

    def engine(inputs: dict) -> EvolutionarySearch:
        return EvolutionarySearch(space, params_accuracy, MacsLatency(), cfg, tmp_path / "s", inputs=inputs)

    engine(a).run()
    for inputs, words in (({**a, "val_images": 16}, "its val images was 32 and is now 16"),
                          (b, "its supernet weights was")):
        with pytest.raises(AutovitError, match=words):
            engine(inputs).run(resume=True)
    assert engine(a).run(resume=True).best is not None


@pytest.mark.parametrize("text", ["[]", "\"state\"", "{\"version\": 1, \"space\": \"tiny\", \"rng_state\": [3, [1, 2], null]}",
                                  "{\"version\": 1, \"space\": \"tiny\", \"rng_state\": 5}", "{trunc", "\udcff"])
def test_tampered_search_state_is_one_clear_error(tmp_path: Path, text: str) -> None:
    from search_toys import tiny_space

    from autovit.search.state import SearchState

    (tmp_path / "state.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(AutovitError, match="state.json is corrupt"):
        SearchState.load(tmp_path, tiny_space())


def test_a_search_setting_of_the_wrong_type_is_one_clear_error() -> None:
    from autovit.search.session import SearchRunConfig, search_options

    with pytest.raises(AutovitError, match="Invalid value for '--population': 'many' is not a valid integer"):
        search_options({"population": "many"})
    with pytest.raises(AutovitError, match="parents \\(8\\) cannot exceed the population \\(4\\)"):
        SearchRunConfig(supernet="x.pt", **search_options({"population": 4, "parents": 8}))
    cfg = SearchRunConfig(supernet="x.pt", **search_options({"lambda": 2, "macs_budget": "300M", "budgets": "8ms,10ms"}))
    assert (cfg.cost_lambda, cfg.macs_budget, cfg.budgets_ms) == (2, 300e6, (8.0, 10.0))
