"""Bad inputs end in one clear message and exit 2, before any work (issue 16).

The table below runs the CLI in-process on each bad input and checks the exit code, the message
and that no traceback is printed. Further tests cover the library paths (latency tables, suite
imports, image folders, teachers, pickled checkpoints) and the resumable latency measurements.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from autovit.cli import main
from autovit.errors import AutovitError
from autovit.latency import measure as measure_mod
from autovit.latency import profile as profile_mod
from autovit.latency import suite
from autovit.latency.blocks import space_blocks
from autovit.latency.lut import LatencyTable, LatencyTableError, synthetic_table
from autovit.space import SearchSpace

LUT = Path(__file__).resolve().parents[1] / "luts" / "xxs_ort_1t_256.json"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr with rich's line wrapping undone)."""
    try:
        main(argv)
        code = 0
    except SystemExit as err:
        code = int(err.code or 0)
    return code, " ".join(capsys.readouterr().err.split())


def _file(tmp: Path) -> str:
    (tmp / "README.md").write_text("not a folder\n")
    return str(tmp / "README.md")


def _folder(tmp: Path) -> str:
    (tmp / "adir").mkdir(exist_ok=True)
    return str(tmp / "adir")


def _under_file(tmp: Path) -> str:
    return str(Path(_file(tmp)) / "sub" / "x.json")


def _manifest(tmp: Path, data: Any = None) -> str:
    path = tmp / "manifest.json"
    path.write_text(json.dumps(data if data is not None else {
        "format": suite.SUITE_FORMAT, "space": "xxs", "resolution": 256, "layout": {}, "reference": "reference",
        "blocks": [{"signature": "x", "with": "blocks/b000_with", "context": "contexts/ctx000", "copies": 1}]}))
    return str(path)


def _csv(tmp: Path, text: str | bytes) -> str:
    path = tmp / "m.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def _lut_with(tmp: Path, change: Callable[[dict], None]) -> str:
    data = json.loads(LUT.read_text())
    change(data)
    path = tmp / "bad_lut.json"
    path.write_text(json.dumps(data))  # json writes NaN / Infinity literals, which json.loads reads back
    return str(path)


def _first_entry(data: dict) -> dict:
    return data["entries"][sorted(data["entries"])[0]]


TRAIN = ["supernet", "train", "--preset", "tiny", "--max-steps", "2"]
IMPORT = ["latency", "import", "--manifest"]

# (id, argv built from tmp_path, words the message must contain)
BAD_INPUTS: list[tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = [
    # --out: an existing file where a folder is expected, a folder where a file is, a path under a file
    ("supernet-train-out-file", lambda t: TRAIN + ["--out", _file(t)], ("is an existing file", "README.md")),
    ("supernet-train-out-under-file", lambda t: TRAIN + ["--out", _under_file(t)], ("is a file, not a folder",)),
    ("train-out-file", lambda t: ["train", "--arch", "autovit_xxs", "--max-steps", "2", "--out", _file(t)],
     ("is an existing file",)),
    ("export-out-file", lambda t: ["export", "--subnet", str(t / "none"), "--out", _file(t)],
     ("is an existing file",)),
    ("search-out-file", lambda t: ["search", "--supernet", str(t / "none.pt"), "--out", _file(t)],
     ("is an existing file",)),
    ("profile-out-folder", lambda t: ["latency", "profile", "--out", _folder(t)], ("is an existing folder",)),
    ("profile-out-under-file", lambda t: ["latency", "profile", "--out", _under_file(t)],
     ("cannot be created", "is a file, not a folder")),
    ("validate-out-folder", lambda t: ["latency", "validate", "--lut", str(LUT), "--out", _folder(t)],
     ("is an existing folder",)),
    ("validate-plot-folder", lambda t: ["latency", "validate", "--lut", str(LUT), "--plot", _folder(t)],
     ("--plot", "is an existing folder")),
    ("import-out-folder", lambda t: IMPORT + [_manifest(t), "--csv", "x.csv", "--out", _folder(t)],
     ("is an existing folder",)),
    ("export-suite-out-file", lambda t: ["latency", "export-suite", "--out", _file(t)], ("is an existing file",)),
    ("bench-out-folder", lambda t: ["bench", "autovit_xxs", "--no-latency", "--out", _folder(t)],
     ("is an existing folder",)),
    # step and time budgets that would train nothing
    ("max-steps-negative", lambda t: TRAIN[:-2] + ["--max-steps", "-5", "--out", str(t / "r")],
     ("max_steps must be >= 1, got -5",)),
    ("max-steps-zero", lambda t: TRAIN[:-2] + ["--max-steps", "0", "--out", str(t / "r")],
     ("max_steps must be >= 1, got 0",)),
    ("time-budget-negative", lambda t: TRAIN + ["--time-budget", "-10", "--out", str(t / "r")],
     ("time_budget_s must be > 0 seconds, got -10",)),
    ("epochs-zero", lambda t: ["train", "--arch", "autovit_xxs", "--epochs", "0", "--out", str(t / "r")],
     ("epochs must be >= 1",)),
    # latency tables that are not tables, or hold unusable costs
    ("lut-binary", lambda t: ["latency", "predict", "--lut", _csv(t, b"\x89PNG\r\n\x1a\n\xff\xfe\x00"),
                              "autovit_xxs"], ("binary file",)),
    ("lut-negative", lambda t: ["latency", "predict", "autovit_xxs", "--lut",
                                _lut_with(t, lambda d: _first_entry(d).update(ratio_to_ref=-0.01))],
     ("cost of block", "-0.01 is negative")),
    ("lut-nan", lambda t: ["latency", "show", _lut_with(t, lambda d: _first_entry(d).update(ratio_to_ref=math.nan))],
     ("nan is not finite",)),
    ("lut-huge", lambda t: ["latency", "show", _lut_with(t, lambda d: _first_entry(d).update(ratio_to_ref=1e308))],
     ("1e+308 is implausibly large",)),
    ("lut-inf-ms", lambda t: ["latency", "show", _lut_with(t, lambda d: _first_entry(d).update(median_ms=math.inf))],
     ("inf is not finite",)),
    ("lut-reference-zero", lambda t: ["latency", "show", _lut_with(t, lambda d: d["reference"].update(median_ms=0))],
     ("reference time is unusable",)),
    ("lut-reference-list", lambda t: ["latency", "show", _lut_with(t, lambda d: d.update(reference=[1]))],
     ("malformed latency table",)),
    ("lut-coef-nan", lambda t: ["latency", "show", _lut_with(t, lambda d: d["model"]["coef"].update(intercept=math.nan))],
     ("coefficient 'intercept' is unusable",)),
    # `latency import`: bad manifests and measurement CSVs
    ("import-manifest-list", lambda t: IMPORT + [_manifest(t, [1, 2]), "--csv", "x.csv", "--out", str(t / "o.json")],
     ("not an autovit latency suite manifest",)),
    ("import-manifest-missing-keys", lambda t: IMPORT + [_manifest(t, {"format": suite.SUITE_FORMAT}), "--csv",
                                                         "x.csv", "--out", str(t / "o.json")],
     ("incomplete suite manifest", "missing space, resolution, layout, reference, blocks")),
    ("import-manifest-block-keys", lambda t: IMPORT + [_manifest(t, {
        "format": suite.SUITE_FORMAT, "space": "xxs", "resolution": 256, "layout": {}, "reference": "r",
        "blocks": [{"signature": "x"}]}), "--csv", "x.csv", "--out", str(t / "o.json")],
     ("missing blocks[0].with",)),
    ("import-manifest-binary", lambda t: IMPORT + [_csv(t, b"\xff\xfe\x00\x01"), "--csv", "x.csv",
                                                   "--out", str(t / "o.json")], ("not JSON",)),
    ("import-csv-binary", lambda t: IMPORT + [_manifest(t), "--csv", _csv(t, b"\xff\xfe\x00\x01\x80"),
                                              "--out", str(t / "o.json")], ("not a CSV text file",)),
    ("import-iqr-na", lambda t: IMPORT + [_manifest(t), "--csv", _csv(t, "file,median_ms,iqr_ms\nreference,2.0,n/a\n"),
                                          "--out", str(t / "o.json")], ("line 2: iqr_ms 'n/a' is not a number",)),
    ("import-median-inf", lambda t: IMPORT + [_manifest(t), "--csv", _csv(t, "file,median_ms\nreference,inf\n"),
                                              "--out", str(t / "o.json")],
     ("line 2: median_ms 'inf' is not a finite number",)),
    ("import-count-fraction", lambda t: IMPORT + [_manifest(t), "--csv", _csv(t, "file,median_ms,count\nreference,1,2.5\n"),
                                                  "--out", str(t / "o.json")], ("count must be a whole number",)),
]


@pytest.mark.parametrize("build,words", [(b, w) for _, b, w in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_error(build: Callable[[Path], list[str]], words: tuple[str, ...], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(build(tmp_path), capsys)
    assert code == 2, err
    assert err.startswith("error:") and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "r").exists()  # nothing was trained or written


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_out_in_a_read_only_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = run(["latency", "profile", "--out", str(locked / "t.json")], capsys)
        assert code == 2 and "is not writable" in err
        code, err = run(TRAIN + ["--out", str(locked / "run")], capsys)
        assert code == 2 and "is not writable" in err
    finally:
        locked.chmod(0o755)


def test_writable_checks_accept_new_and_existing_paths(tmp_path: Path) -> None:
    from autovit.io_utils import ensure_writable_dir, ensure_writable_file

    assert ensure_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checks only, creates nothing
    assert ensure_writable_dir(tmp_path) == tmp_path
    (tmp_path / "t.json").write_text("{}")
    assert ensure_writable_file(tmp_path / "t.json") == tmp_path / "t.json"
    assert ensure_writable_file(tmp_path / "new" / "t.json") == tmp_path / "new" / "t.json"


# ------------------------------------------------------------------ latency import: negative block costs
def test_import_clamps_negative_block_costs_with_a_warning(tmp_path: Path, capsys) -> None:
    space = SearchSpace.builtin("xxs")
    sigs = [str(s) for s in space_blocks(space)]
    blocks = [{"signature": s, "with": f"w{i}", "context": "ctx", "copies": 1} for i, s in enumerate(sigs)]
    manifest = {"format": suite.SUITE_FORMAT, "space": "xxs", "resolution": 256, "num_classes": 1000,
                "layout": space.layout.to_dict(), "reference": "reference", "blocks": blocks, "imputed": []}
    rows = {"reference": 20.0, "ctx": 3.0}
    for i, _ in enumerate(sigs):
        rows[f"w{i}"] = 2.5 if i < 3 else 3.0 + 0.01 * (i + 1)  # three blocks "faster than their context"
    out = tmp_path / "phone.json"
    code, err = run(IMPORT + [_manifest(tmp_path, manifest), "--csv",
                              _csv(tmp_path, "file,median_ms\n" + "".join(f"{k},{v}\n" for k, v in rows.items())),
                              "--out", str(out)], capsys)
    assert code == 0, err
    assert f"warning: 3 of {len(sigs)} block costs came out negative and were set to 0" in err
    assert "faster than its context" in err
    table = LatencyTable.load(out)  # loads: nothing negative was written
    assert sorted(table.meta["clamped_negative"]) == sorted(sigs[:3])
    assert [table.entries[s]["ratio_to_ref"] for s in sigs[:3]] == [0.0, 0.0, 0.0]
    assert table.entries[sigs[0]]["negative_ratio"] == pytest.approx(-0.5 / 20.0)
    assert table.entries[sigs[0]]["median_ms"] == 0.0 and table.entries[sigs[0]]["negative_ms"] == pytest.approx(-0.5)
    assert table.entries[sigs[3]]["ratio_to_ref"] == pytest.approx(0.04 / 20.0)


def test_clamp_negative_costs_reports_only_negative_ratios() -> None:
    from autovit.latency.lut import clamp_negative_costs

    entries = {"a": {"ratio_to_ref": -0.01, "median_ms": -0.1}, "b": {"ratio_to_ref": 0.002, "median_ms": -0.01},
               "c": {"ratio_to_ref": 0.03, "median_ms": 0.3}}
    assert clamp_negative_costs(entries) == ["a"]
    assert entries["a"] == {"ratio_to_ref": 0.0, "median_ms": 0.0, "negative_ratio": -0.01, "negative_ms": -0.1}
    assert entries["b"] == {"ratio_to_ref": 0.002, "median_ms": 0.0, "negative_ms": -0.01}
    assert entries["c"] == {"ratio_to_ref": 0.03, "median_ms": 0.3}


def test_table_from_dict_refuses_negative_costs() -> None:
    data = synthetic_table(SearchSpace.builtin("xxs")).to_dict()
    LatencyTable.from_dict(json.loads(json.dumps(data)))
    _first_entry(data)["ratio_to_ref"] = -1e-4
    with pytest.raises(LatencyTableError, match="is negative"):
        LatencyTable.from_dict(data)


# ------------------------------------------------------------------ image folders
def _image_folder(root: Path, classes: tuple[str, ...]) -> None:
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / c / f"{i}.png")


def test_one_class_image_folder_is_refused(tmp_path: Path, capsys) -> None:
    _image_folder(tmp_path, ("cat",))
    code, err = run(TRAIN + ["--dataset", "imagefolder", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")],
                    capsys)
    assert code == 2 and "has 1 class folder (cat)" in err and "at least 2 classes" in err


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    from autovit.data import CorruptImageError, corrupt_images, load_imagefolder_splits

    _image_folder(tmp_path, ("cat", "dog"))
    no_header = tmp_path / "train" / "dog" / "1.png"
    no_header.write_bytes(no_header.read_bytes()[:30])
    no_pixels = tmp_path / "train" / "dog" / "2.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(no_pixels)
    no_pixels.write_bytes(no_pixels.read_bytes()[:1000])  # the header survives, most pixel data does not
    base = load_imagefolder_splits(tmp_path, val_size=0).train.base
    files = [p for p, _ in base.samples]
    assert base[files.index(str(tmp_path / "train" / "dog" / "0.png"))][0].size == (8, 8)
    for bad in (no_header, no_pixels):
        with pytest.raises(CorruptImageError, match=f"cannot read image {bad}: ") as err:
            base[files.index(str(bad))]
        assert "delete or replace this file" in err.value.hint
    assert [f for f, _ in corrupt_images(tmp_path)] == [str(no_header), str(no_pixels)]


def test_corrupt_image_error_from_a_loader_worker_keeps_its_message() -> None:
    from autovit.data import CorruptImageError

    original = CorruptImageError("cannot read image /d/x.png: truncated", hint="delete or replace this file")
    # what torch's ExceptionWrapper.reraise builds from a worker's exception
    wrapped = CorruptImageError("Caught CorruptImageError in DataLoader worker process 0.\nOriginal Traceback "
                                "(most recent call last):\n  File \"x.py\", line 1, in f\n"
                                f"autovit.data.CorruptImageError: {original}\n")
    assert wrapped.message == original.message and wrapped.hint == original.hint
    assert "Traceback" not in str(wrapped)


# ------------------------------------------------------------------ teachers and checkpoints
def test_corrupt_safetensors_teacher_is_a_clear_error(tmp_path: Path) -> None:
    from autovit.train.config import TrainConfig
    from autovit.train.distill import load_teacher

    bad = tmp_path / "teacher.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    cfg = TrainConfig(kd="soft", teacher_model="test_resnet", teacher_checkpoint=str(bad), resolution=32)
    with pytest.raises(AutovitError, match="corrupt teacher checkpoint .*not a readable .safetensors file"):
        load_teacher(cfg, 10)
    cfg = TrainConfig(kd="soft", teacher_checkpoint=str(bad), resolution=32)
    with pytest.raises(AutovitError, match="safetensors file without an architecture") as err:
        load_teacher(cfg, 10)
    assert "--teacher TIMM_NAME" in err.value.hint


class _Payload:
    """Unpickling this would create a file (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickled_object_checkpoint_is_refused_without_advising_weights_only_false(tmp_path: Path, capsys) -> None:
    from autovit.train.checkpoint import read_checkpoint
    from autovit.train.distill import _read_state

    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"format": "autovit-train-checkpoint", "model": _Payload(marker), "step": 1}, path)
    for load in (read_checkpoint, _read_state):
        with pytest.raises(AutovitError) as err:
            load(path)
        text = str(err.value)
        assert "not a plain-tensor checkpoint written by autovit: it holds a pickled Python object" in text
        assert "re-create the file with autovit, or convert it from a trusted source" in text
        assert "weights_only" not in text
    code, err_text = run(["supernet", "eval", "--ckpt", str(path)], capsys)
    assert code == 2 and "not a plain-tensor checkpoint" in err_text and "weights_only" not in err_text
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AutovitError, match="corrupt or unreadable checkpoint") as err:
        read_checkpoint(garbage)
    assert "weights_only" not in str(err.value)
    assert not marker.exists()


def test_dependency_floor_excludes_torch_with_known_weights_only_bypasses() -> None:
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"torch>=2.10,<=2.14.1"' in text and '"torchvision>=0.25,<=0.29.1"' in text


# ------------------------------------------------------------------ resumable latency measurements
class _FakeRunner:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> None:  # warm-up calls time nothing
        pass


class _FakeClock:
    """A deterministic `time_runner`: the k-th timing of a runner is a function of (name, k), so a
    resumed measurement equals an uninterrupted one only if every timing is taken exactly once."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.calls: list[str] = []
        self.stop_at: int | None = None
        self.on_stop: Callable[[], None] = lambda: None

    def __call__(self, run: _FakeRunner, runs: int) -> float:
        if self.stop_at is not None and sum(self.counts.values()) == self.stop_at:
            self.on_stop()
            raise KeyboardInterrupt
        k = self.counts[run.name]
        self.counts[run.name] += 1
        self.calls.append(run.name)
        base = 1.0 + (zlib.crc32(run.name.encode()) % 1000) / 100
        return base * (1 + 0.01 * (k % 7))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _FakeClock:
    fake = _FakeClock()
    monkeypatch.setattr(measure_mod, "time_runner", fake)
    monkeypatch.setattr(measure_mod.MeasureConfig, "runner",
                        lambda self, module, size, key=None: _FakeRunner(str(key)))
    monkeypatch.setattr(profile_mod, "seeded_model", lambda arch, num_classes: None)  # fake runners need no model
    # the stability precheck times the machine as it is now, on every (re)run: not part of what resumes
    monkeypatch.setattr(profile_mod, "reference_stability", lambda *args, **kwargs: (1.0, 0.0))
    return fake


def _build(log: Any = None) -> LatencyTable:
    from autovit.latency.measure import MeasureConfig
    from autovit.latency.profile import build_table

    space = SearchSpace.builtin("xxs")
    sigs = space_blocks(space, 64)[:6]
    return build_table(space, 64, MeasureConfig(rounds=3, warmup=1), sigs=sigs, log=log).table


def test_interrupted_profile_resumes_to_the_same_table_measuring_each_item_once(clock: _FakeClock,
                                                                               tmp_path: Path) -> None:
    from autovit.latency.measure import MeasureLog

    whole = _build()
    expected = Counter(clock.counts)
    # every timed group starts with a reference timing (the first one is the calibration)
    group_starts = [i for i, name in enumerate(clock.calls) if name.startswith("reference|")][1:]
    clock.counts.clear()
    partial = tmp_path / "t.json.partial.json"
    snapshot = tmp_path / "at_kill.json"
    # a kill -9 leaves what the last periodic save wrote: copy it when the "kill" comes
    clock.on_stop = lambda: shutil.copy(partial, snapshot)
    done_before_kill = len(group_starts) // 2
    assert done_before_kill >= 2
    clock.stop_at = group_starts[done_before_kill]
    with pytest.raises(KeyboardInterrupt):
        _build(MeasureLog(partial, {"run": 1}, save_every_s=0))
    shutil.copy(snapshot, partial)
    clock.stop_at = None
    log = MeasureLog(partial, {"run": 1})
    assert log.reused == done_before_kill
    resumed = _build(log)
    assert clock.counts == expected  # nothing measured twice, nothing skipped
    assert resumed.entries == whole.entries and resumed.reference == whole.reference
    assert MeasureLog(partial, {"run": 2}).reused == 0  # other settings: start over


def test_interrupted_subnet_timing_resumes_exactly(clock: _FakeClock, tmp_path: Path) -> None:
    from autovit.latency.measure import MeasureLog, measure_paired

    runners = {n: _FakeRunner(n) for n in ("net0", "net1", "net2")}
    ref = _FakeRunner("ref")
    whole = measure_paired(runners, ref, rounds=2)
    expected = Counter(clock.counts)
    clock.counts.clear()
    clock.stop_at = 3 + 2 * 20 * 2  # calibration, then two runner-rounds of 20 (ref, net) pairs
    with pytest.raises(KeyboardInterrupt):
        measure_paired(runners, ref, rounds=2, log=MeasureLog(tmp_path / "p.json", {"s": 1}, save_every_s=3600))
    clock.stop_at = None
    log = MeasureLog(tmp_path / "p.json", {"s": 1})
    assert log.reused == 2  # saved on the way out of the interrupted call
    resumed = measure_paired(runners, ref, rounds=2, log=log)
    assert resumed.paired_ratio == whole.paired_ratio and resumed.ms == whole.ms
    assert resumed.reference_ms == whole.reference_ms
    assert clock.counts == expected  # nothing measured twice, nothing skipped


def test_profile_cli_resumes_from_the_partial_file_and_deletes_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from autovit.latency.predictor import LatencyModel

    out = tmp_path / "t.json"
    seen: list[int] = []

    def fake_profile(space, resolution, config, *args, log=None, **kwargs):
        seen.append(log.reused)
        state = log.phase("blocks", {"plan": 1})
        state["units"].append({"ref": 1.0, "ms": [1.0]})
        log.save()
        if len(seen) == 1:
            raise KeyboardInterrupt
        table = synthetic_table(SearchSpace.builtin("xxs"))
        table.meta.update(modules_measured=1, modules_imputed=0, build_seconds=1.0)
        return LatencyModel(table)

    monkeypatch.setattr(profile_mod, "profile_space", fake_profile)
    argv = ["latency", "profile", "--space", "xxs", "--out", str(out), "--fit-subnets", "0", "--json"]
    code, _ = run(argv, capsys)
    assert code == 130 and (tmp_path / "t.json.partial.json").is_file() and not out.exists()
    code, err = run(argv, capsys)
    assert code == 0 and seen == [0, 1] and "resuming: 1 timings reused" in err
    assert out.is_file() and not (tmp_path / "t.json.partial.json").exists()
    code, _ = run(argv + ["--rounds", "3"], capsys)  # other settings do not reuse the old timings
    assert code == 0 and seen == [0, 1, 0]


def test_interrupted_validation_resumes_to_the_same_report(clock: _FakeClock, tmp_path: Path) -> None:
    from autovit.latency.measure import MeasureConfig
    from autovit.latency.predictor import LatencyModel
    from autovit.latency.validate import run_validation, validation_log

    space = SearchSpace.builtin("xxs")
    model = LatencyModel(synthetic_table(space))
    config = MeasureConfig(rounds=2)
    whole = run_validation(model, space, samples=3, seed=1, config=config)
    expected = Counter(clock.counts)
    clock.counts.clear()
    pass_calls = 3 + 2 * 3 * 2 * 20  # calibration, then 2 rounds x 3 subnets x 20 (ref, net) pairs
    clock.stop_at = pass_calls + 3 + 2 * 20  # one subnet-round into the second pass
    path = tmp_path / "report.json.partial.json"
    with pytest.raises(KeyboardInterrupt):
        run_validation(model, space, 3, 1, config, log=validation_log(path, model, space, 3, 1, config))
    clock.stop_at = None
    log = validation_log(path, model, space, 3, 1, config)
    assert log.reused == 2 * 3 + 1
    assert validation_log(path, model, space, 3, 2, config).reused == 0  # another held-out sample
    resumed = run_validation(model, space, 3, 1, config, log=log)
    assert clock.counts == expected
    for key in ("first_pass_ratio", "second_pass_ratio", "measured_ms", "metrics", "retest_noise", "archs"):
        assert resumed[key] == whole[key], key
