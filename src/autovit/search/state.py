"""Evaluated candidates and the resumable search state (one JSON file, written atomically after
every generation)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.io_utils import atomic_write_text
from autovit.space import SearchSpace

STATE_VERSION = 1
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Candidate:
    """One evaluated architecture and everything the search knows about it."""

    arch: Arch
    accuracy: float
    latency_ms: float  # predicted by the latency model (nan without one)
    params: int
    macs: int
    generation: int
    origin: str  # coarse | mutation | crossover | random

    @property
    def key(self) -> str:
        return self.arch.key()

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "accuracy": self.accuracy, "latency_ms": _nan_to_none(self.latency_ms),
                "params": self.params, "macs": self.macs, "generation": self.generation,
                "origin": self.origin, "arch": self.compact_arch}

    @cached_property
    def compact_arch(self) -> dict[str, Any]:
        """The arch without its layout (the space's; re-added by `SearchSpace.parse_arch`)."""
        return compact(self.arch)

    @classmethod
    def from_dict(cls, data: dict[str, Any], space: SearchSpace) -> "Candidate":
        lat = data["latency_ms"]
        return cls(space.parse_arch(data["arch"]), float(data["accuracy"]), math.nan if lat is None else float(lat),
                   int(data["params"]), int(data["macs"]), int(data["generation"]), str(data["origin"]))


def compact(arch: Arch) -> dict[str, Any]:
    d = arch.to_dict()
    d.pop("layout")
    return d


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass
class SearchState:
    """Everything needed to continue a search exactly where it stopped."""

    config: dict[str, Any]
    space: str
    generation: int = 0  # number of generations already evaluated
    rng_state: Any = None
    population: list[tuple[Arch, str]] = field(default_factory=list)  # next to evaluate: (arch, origin)
    history: list[Candidate] = field(default_factory=list)
    coarse: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    finished: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)  # supernet/table digests, evaluation settings

    def to_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng_state
        return {
            "version": STATE_VERSION, "config": self.config, "space": self.space, "generation": self.generation,
            "rng_state": [version, list(internal), gauss], "finished": self.finished,
            "population": [{"origin": o, "arch": compact(a)} for a, o in self.population],
            "history": [c.to_dict() for c in self.history], "coarse": self.coarse, "timing": self.timing,
            "inputs": self.inputs,
        }

    def save(self, directory: str | Path) -> Path:
        return atomic_write_text(Path(directory) / STATE_FILE, json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, directory: str | Path, space: SearchSpace) -> "SearchState":
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise AutovitError(f"nothing to resume: {path} does not exist",
                               hint="run without --resume first, or point --out at the folder of the interrupted run")
        try:
            data = json.loads(path.read_text())
            if data.get("version") != STATE_VERSION:
                raise AutovitError(f"{path} was written by another version of the search (state version "
                                   f"{data.get('version')}, expected {STATE_VERSION})", hint="start a new run")
            if data["space"] != space.name:
                raise AutovitError(f"{path} is a search of the space '{data['space']}', not '{space.name}'",
                                   hint="resume with the same supernet and space, or use a new --out")
            version, internal, gauss = data["rng_state"]
            random.Random().setstate((version, tuple(internal), gauss))  # a tampered state fails here, not later
            return cls(
                config=data["config"], space=data["space"], generation=int(data["generation"]),
                rng_state=(version, tuple(internal), gauss),
                population=[(space.parse_arch(p["arch"]), p["origin"]) for p in data["population"]],
                history=[Candidate.from_dict(c, space) for c in data["history"]],
                coarse=data.get("coarse", {}), timing=data.get("timing", {}), finished=bool(data.get("finished")),
                inputs=dict(data.get("inputs") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as err:
            if isinstance(err, AutovitError):
                raise
            raise AutovitError(f"{path} is corrupt ({type(err).__name__}: {err})",
                               hint="start a new run in an empty --out folder") from None

    def rng(self) -> random.Random:
        rng = random.Random()
        rng.setstate(self.rng_state)
        return rng
