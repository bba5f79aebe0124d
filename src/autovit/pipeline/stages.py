"""Resumable stage runner: each stage is keyed by the settings that determine it (and by the keys of
the stages it reads), so a crashed `autovit run` resumes where it stopped, and a changed setting
redoes exactly the stages it affects.

`<stage>/stage.json` is written when the stage starts (status "running", its key and settings)
and rewritten when it ends (status "done", its summary). On the next run:

- same key, done, outputs present: skipped;
- same key, not done: run again in the same folder, so a long stage resumes from its own
  checkpoint (supernet `checkpoints/last.pt`, search `state.json`);
- another key, or no readable `stage.json`: the old folder is moved aside to `<stage>.previous`
  (replacing an older one), the changed settings are logged, and the stage runs from scratch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from autovit.errors import AutovitError
from autovit.io_utils import save_json

MARKER = "stage.json"
PREVIOUS_SUFFIX = ".previous"


def config_hash(obj: Any) -> str:
    """Stable hash of a JSON-able object (the part of the config a stage depends on)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One pipeline step: `run(stage_dir)` makes outputs (paths relative to stage_dir) and
    returns a JSON-able summary. `after` names the earlier stages whose outputs it reads."""

    name: str
    depends_on: Any
    run: Callable[[Path], dict[str, Any]]
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def stage_key(stage: Stage, upstream: Mapping[str, str]) -> dict[str, Any]:
    """What determines `stage`: its settings and the keys of the stages it reads."""
    return {"settings": _jsonable(stage.depends_on), "after": {name: upstream[name] for name in stage.after}}


def read_stage_state(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's `stage.json`, or None when missing or unreadable (a tampered file is not trusted)."""
    try:
        data = json.loads((stage_dir / MARKER).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("config_hash"), str) else None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): obj}


def describe_change(old: Mapping[str, Any] | None, new: Mapping[str, Any], limit: int = 6) -> str:
    """'train.lr 0.001 -> 0.01, seed 0 -> 1' between two stage keys (or why they cannot be compared)."""
    if old is None or "settings" not in old:
        return "made by another autovit version or its stage.json is unreadable"
    before = _flatten({"": old.get("settings"), **{f"stage {k}": v for k, v in (old.get("after") or {}).items()}})
    after = _flatten({"": new["settings"], **{f"stage {k}": v for k, v in new["after"].items()}})
    parts = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            label = name.lstrip(".")
            if label.startswith("stage "):
                parts.append(f"the {label[6:]} stage was redone")
            else:
                parts.append(f"{label} {before.get(name)!r} -> {after.get(name)!r}")
    more = f" (+{len(parts) - limit} more)" if len(parts) > limit else ""
    return "settings changed: " + ", ".join(parts[:limit]) + more if parts else "settings changed"


def stage_is_done(stage_dir: Path, stage: Stage, key_hash: str | None = None) -> dict[str, Any] | None:
    """The stored summary if `stage` already completed with the same key and its outputs exist."""
    state = read_stage_state(stage_dir)
    if state is None or state.get("status", "done") != "done":
        return None
    if state["config_hash"] != (key_hash or config_hash(stage_key(stage, {}))):
        return None
    if not all((stage_dir / out).exists() for out in stage.outputs):
        return None
    summary = state.get("summary", {})
    return summary if isinstance(summary, dict) else {}


def _set_aside(stage_dir: Path, protected: Iterable[Path]) -> Path:
    """Moves a stale stage folder to `<stage>.previous` (replacing an older one) and returns it."""
    inside = [p for p in protected if p.resolve().is_relative_to(stage_dir.resolve())]
    if inside:
        raise AutovitError(f"the {stage_dir.name} stage must be redone, but the config points at {inside[0]} "
                           "inside its folder",
                           hint=f"copy that file out of {stage_dir} and point the config at the copy")
    previous = stage_dir.with_name(stage_dir.name + PREVIOUS_SUFFIX)
    if previous.exists():
        shutil.rmtree(previous)
    stage_dir.rename(previous)
    return previous


def run_stage(root: Path, stage: Stage, log: Callable[[str], None] = print,
              upstream: Mapping[str, str] | None = None, protected: Iterable[Path] = ()) -> tuple[dict[str, Any], str]:
    """Runs `stage` under root/<name> unless it is done for the same key; returns (summary, key hash).

    `upstream` maps earlier stages' names to their key hashes; a stale folder is set aside first
    (never one holding a `protected` path)."""
    stage_dir = root / stage.name
    key = stage_key(stage, upstream or {})
    key_hash = config_hash(key)
    done = stage_is_done(stage_dir, stage, key_hash)
    if done is not None:
        log(f"[{stage.name}] up to date, skipped")
        return done, key_hash
    state = read_stage_state(stage_dir)
    if stage_dir.exists() and any(stage_dir.iterdir()) and (state is None or state["config_hash"] != key_hash):
        previous = _set_aside(stage_dir, protected)
        log(f"[{stage.name}] {describe_change(state, key)}; the old outputs are in {previous.name}/, "
            "this stage runs from scratch")
    stage_dir.mkdir(parents=True, exist_ok=True)
    save_json(stage_dir / MARKER, {"config_hash": key_hash, "status": "running", **key})
    log(f"[{stage.name}] running")
    t0 = time.time()
    summary = stage.run(stage_dir)
    missing = [out for out in stage.outputs if not (stage_dir / out).exists()]
    if missing:
        raise RuntimeError(f"stage {stage.name} did not write {missing}")
    summary = {**summary, "wall_s": round(time.time() - t0, 1)}
    save_json(stage_dir / MARKER, {"config_hash": key_hash, "status": "done", **key, "summary": summary})
    log(f"[{stage.name}] done in {summary['wall_s']} s")
    return summary, key_hash


def run_stages(root: Path, stages: Iterable[Stage], log: Callable[[str], None] = print,
               protected: Iterable[Path] = ()) -> dict[str, dict[str, Any]]:
    """Runs `stages` in order, each keyed by its settings and its upstream stages' keys."""
    keys: dict[str, str] = {}
    summaries: dict[str, dict[str, Any]] = {}
    protected = list(protected)
    for stage in stages:
        summaries[stage.name], keys[stage.name] = run_stage(root, stage, log, keys, protected)
    return summaries
