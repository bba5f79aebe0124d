"""Resumable stage runner: each stage is skipped when its outputs exist and were made by the
same configuration, so a crashed `autovit run` resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from autovit.io_utils import save_json

MARKER = "stage.json"


def config_hash(obj: Any) -> str:
    """Stable hash of a JSON-able object (the part of the config a stage depends on)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One pipeline step: `run(stage_dir)` makes outputs (paths relative to stage_dir) and
    returns a JSON-able summary."""

    name: str
    depends_on: Any
    run: Callable[[Path], dict[str, Any]]
    outputs: tuple[str, ...] = ()


def stage_is_done(stage_dir: Path, stage: Stage) -> dict[str, Any] | None:
    """The stored summary if `stage` already completed with the same config and its outputs exist."""
    marker = stage_dir / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if data.get("config_hash") != config_hash(stage.depends_on):
        return None
    if not all((stage_dir / out).exists() for out in stage.outputs):
        return None
    return data.get("summary", {})


def run_stage(root: Path, stage: Stage, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs `stage` under root/<name>, unless it is already done; writes the marker last."""
    stage_dir = root / stage.name
    done = stage_is_done(stage_dir, stage)
    if done is not None:
        log(f"[{stage.name}] up to date, skipped")
        return done
    stage_dir.mkdir(parents=True, exist_ok=True)
    log(f"[{stage.name}] running")
    t0 = time.time()
    summary = stage.run(stage_dir)
    missing = [out for out in stage.outputs if not (stage_dir / out).exists()]
    if missing:
        raise RuntimeError(f"stage {stage.name} did not write {missing}")
    summary = {**summary, "wall_s": round(time.time() - t0, 1)}
    save_json(stage_dir / MARKER, {"config_hash": config_hash(stage.depends_on), "summary": summary})
    log(f"[{stage.name}] done in {summary['wall_s']} s")
    return summary
