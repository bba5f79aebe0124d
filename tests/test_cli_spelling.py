"""The command line: fast start (no torch for --help), --version, one option name per concept with the
old spellings still accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from autovit.cli import app, main, package_version
from autovit.cli.aliases import RENAMED, rewrite_args

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _fresh_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_the_cli_leaves_torch_and_timm_unimported() -> None:
    code = ("import sys, autovit.cli; print(sorted(m for m in ('torch', 'timm', 'onnx', 'onnxruntime') "
            "if m in sys.modules))")
    assert _fresh_python(code) == "[]"


def test_help_of_every_command_leaves_torch_unimported() -> None:
    commands = ["", "space show", "model info", "bench", "supernet train", "supernet eval", "train", "latency profile",
                "latency validate", "latency export-suite", "search", "export", "run"]
    code = ("import sys\nfrom autovit.cli import main\n"
            f"for c in {commands!r}:\n"
            "    try:\n        main((c + ' --help').split())\n    except SystemExit as e:\n        assert not e.code, c\n"
            "print(sorted(m for m in ('torch', 'timm', 'onnx') if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "[]"


def test_python_m_autovit_cli_version_leaves_torch_unimported() -> None:
    """`python -m autovit.cli` (and torchrun -m) imports the package through runpy, not `import`."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "autovit.cli", "--version"], capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.startswith("autovit "), out.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "autovit.cli" in imported and not imported & {"torch", "timm", "onnx"}


@pytest.mark.slow  # a fresh interpreter imports torch and timm (seconds)
def test_import_autovit_still_registers_the_paper_models_with_timm() -> None:
    code = "import autovit, timm; print(timm.is_model('autovit_xxs'), autovit.SearchSpace.__name__)"
    assert _fresh_python(code) == "True SearchSpace"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"autovit {package_version()}"
    assert package_version().count(".") >= 2


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = typer.main.get_command(app)
    for word in path:
        cmd = cmd.commands[word]  # type: ignore[attr-defined]
    return cmd


def _parsed(args: list[str]) -> dict:
    """The parameters click hands to the command `args` names, after the old spellings are rewritten."""
    args = rewrite_args(args)
    path = next(p for p in RENAMED if tuple(args[:len(p)]) == p)
    ctx = _command(path).make_context("autovit", args[len(path):])
    return ctx.params


# (command, old argv tail, new argv tail): both must parse to the same parameters.
REQUIRED = {("supernet", "eval"): ["--supernet", "sn.pt"], ("latency", "validate"): ["--lut", "t.json"],
            ("latency", "profile"): ["--out", "t.json"], ("latency", "export-suite"): ["--out", "suite"],
            ("latency", "predict"): ["--lut", "t.json", "autovit_xxs"], ("search",): ["--supernet", "sn.pt"],
            ("export",): ["--out", "m"], ("train",): ["--arch", "autovit_xxs"], ("supernet", "train"): []}
VALUES = {"--force": None, "--measure": "all"}


def _option_names(path: tuple[str, ...]) -> set[str]:
    """Every option name `--help` of the command lists."""
    return {name for p in _command(path).params if not getattr(p, "hidden", False)
            for name in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("path,old,new", [(p, o, n) for p, names in RENAMED.items() for o, n in names.items()])
def test_old_spelling_parses_like_the_new_one(path: tuple[str, ...], old: str, new: str) -> None:
    value = VALUES.get(old, "x.pt")
    tail = list(REQUIRED[path])
    if new in tail:  # the renamed option is itself required: give it only once, under test
        i = tail.index(new)
        del tail[i:i + 2]
    given = [] if value is None else [value]
    new_params = _parsed([*path, *tail, new, *given])
    assert _parsed([*path, *tail, old, *given]) == new_params
    assert (True if value is None else value) in [v if isinstance(v, (bool, type(None))) else str(v)
                                                   for v in new_params.values()]
    assert new in _option_names(path) and old not in _option_names(path)


@pytest.mark.parametrize("command", [["train", "--arch", "autovit_xxs"], ["supernet", "train"]])
def test_resume_with_a_value_maps_to_the_flag_or_resume_from(command: list[str]) -> None:
    assert _parsed([*command, "--resume", "auto"]) == _parsed([*command, "--resume"])
    assert _parsed([*command, "--resume"])["resume"] is True
    old = _parsed([*command, "--resume", "runs/x/last.pt"])
    assert old == _parsed([*command, "--resume-from", "runs/x/last.pt"])
    assert old["resume_from"] == "runs/x/last.pt" and old["resume"] is False
    assert _parsed([*command, "--resume=auto"])["resume"] is True


def test_rewrite_notes_each_old_spelling_once() -> None:
    notes: list[str] = []
    args = rewrite_args(["latency", "profile", "--force", "--measure=all", "--out", "t.json"], notes.append)
    assert args == ["latency", "profile", "--force-unstable", "--blocks=all", "--out", "t.json"]
    assert len(notes) == 2 and "--force-unstable" in notes[0] and "--blocks" in notes[1]
    # Other commands keep their own options: `search --measure` is the winner measurement flag.
    assert rewrite_args(["search", "--no-measure", "--resume"]) == ["search", "--no-measure", "--resume"]


def test_deprecated_spelling_runs_end_to_end_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["supernet", "eval", "--ckpt", "/nonexistent/sn.pt"])
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.code == 2
    assert "`autovit supernet eval --ckpt` is now `--supernet`" in err and "checkpoint not found" in err
