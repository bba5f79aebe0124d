"""`SearchConfig`: every setting of the coarse-to-fine search (paper section 4.1 defaults), and
parsers for budgets given with units ('12ms', '0.012s', '2M', '2e6')."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from autovit.errors import AutovitError

OBJECTIVES = ("eq2", "eq3", "eq8")
COARSE_RANKINGS = ("auto", "cost", "closeness")
COST_METRICS = ("params", "macs")


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one search run. A run is fully determined by its config (seed included).

    Budgets are upper bounds (None = unconstrained): latency in ms (predicted by the latency
    model), params and MACs as plain counts. `budgets` turns the run into a sweep: the best arch
    for each latency budget, from one population.
    """

    latency_budget_ms: float | None = None
    params_budget: float | None = None
    macs_budget: float | None = None
    budgets_ms: tuple[float, ...] = ()
    objective: str = "eq2"
    cost_lambda: float = 1.0  # Eq. 3: ms per million units of `cost_metric`
    cost_metric: str = "params"
    min_accuracy: float | None = None  # Eq. 3: accuracy floor, so it does not pick the tiniest net
    # coarse stage
    coarse_samples: int = 100_000
    coarse_top_k: int = 50
    coarse_rank: str = "auto"  # auto: cost for eq3, closeness (largest archs that fit) otherwise
    # fine stage (section 4.1: population 50, 20 generations, top 10 parents, P_d 0.2, P_m 0.4)
    population: int = 50
    generations: int = 20
    parents: int = 10
    p_depth: float = 0.2
    p_block: float = 0.4
    p_crossover: float = 0.5
    max_retries: int = 200  # per child; never an endless loop
    num_classes: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets_ms", tuple(sorted(float(b) for b in self.budgets_ms)))
        if self.objective not in OBJECTIVES:
            raise AutovitError(f"unknown objective '{self.objective}'", hint=f"use one of {', '.join(OBJECTIVES)}")
        if self.coarse_rank not in COARSE_RANKINGS:
            raise AutovitError(f"unknown coarse ranking '{self.coarse_rank}'",
                               hint=f"use one of {', '.join(COARSE_RANKINGS)}")
        if self.cost_metric not in COST_METRICS:
            raise AutovitError(f"unknown cost metric '{self.cost_metric}'",
                               hint=f"use one of {', '.join(COST_METRICS)}")
        for name in ("latency_budget_ms", "params_budget", "macs_budget"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise AutovitError(f"{name} must be a positive number, got {value}")
        if any(b <= 0 for b in self.budgets_ms):
            raise AutovitError(f"every sweep budget must be positive, got {list(self.budgets_ms)}")
        for name in ("coarse_samples", "coarse_top_k", "population", "parents", "max_retries"):
            if getattr(self, name) < 1:
                raise AutovitError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.generations < 0:
            raise AutovitError(f"generations must be >= 0, got {self.generations}")
        if self.parents > self.population:
            raise AutovitError(f"parents ({self.parents}) cannot exceed the population ({self.population})")
        for name in ("p_depth", "p_block", "p_crossover"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AutovitError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")

    @property
    def coarse_ranking(self) -> str:
        """The coarse ranking in force: 'cost' (Eq. 3) or 'closeness' (to the budget, from below)."""
        if self.coarse_rank != "auto":
            return self.coarse_rank
        return "cost" if self.objective == "eq3" else "closeness"

    @property
    def max_latency_ms(self) -> float | None:
        """The latency bound every candidate must meet (the largest sweep budget in a sweep)."""
        if self.budgets_ms:
            top = max(self.budgets_ms)
            return top if self.latency_budget_ms is None else min(top, self.latency_budget_ms)
        return self.latency_budget_ms

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets_ms"] = list(self.budgets_ms)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise AutovitError(f"unknown search setting '{unknown[0]}'", hint=f"allowed: {sorted(names)}")
        values = dict(data)
        if "budgets_ms" in values:
            values["budgets_ms"] = tuple(values["budgets_ms"])
        return cls(**values)

    def replace(self, **changes: Any) -> "SearchConfig":
        return SearchConfig.from_dict({**self.to_dict(), **changes})


# ---------------------------------------------------------------------------- unit parsing
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_TIME_UNITS = {"ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}
_COUNT_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


def parse_latency(text: str | float, what: str = "latency budget") -> float:
    """'12ms' / '0.012s' / '12000us' / '12' (ms) -> milliseconds."""
    if isinstance(text, (int, float)):
        return _positive(float(text), what, str(text))
    match = re.fullmatch(_NUMBER + r"\s*([a-zA-Zµ]*)", str(text).strip())
    unit = match.group(2).lower() if match else None
    if not match or unit not in {"", *_TIME_UNITS}:
        hint = ("a latency is a time: '12ms', '0.012s' or '12000us'"
                if match and unit in _COUNT_UNITS else "write it like '12ms', '0.012s' or '12000us'")
        raise AutovitError(f"cannot read the {what} '{text}'", hint=hint)
    return _positive(float(match.group(1)) * _TIME_UNITS.get(unit, 1.0), what, text)


def parse_count(text: str | float, what: str = "params budget") -> float:
    """'2M' / '2e6' / '1.5m' / '800k' -> a plain count."""
    if isinstance(text, (int, float)):
        return _positive(float(text), what, str(text))
    match = re.fullmatch(_NUMBER + r"\s*([a-zA-Z]*)", str(text).strip())
    unit = match.group(2).lower() if match else None
    if not match or unit not in _COUNT_UNITS:
        hint = (f"the {what} is a count, not a time: write it like '2M', '2e6' or '800k'"
                if match and unit in _TIME_UNITS else "write it like '2M', '2e6' or '800k'")
        raise AutovitError(f"cannot read the {what} '{text}'", hint=hint)
    return _positive(float(match.group(1)) * _COUNT_UNITS[unit], what, text)


def parse_latency_list(text: str) -> tuple[float, ...]:
    """'8ms,10ms,12ms' -> (8.0, 10.0, 12.0)."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise AutovitError(f"no budgets in '{text}'", hint="write them like '8ms,10ms,12ms'")
    return tuple(parse_latency(p, "sweep budget") for p in parts)


def _positive(value: float, what: str, text: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise AutovitError(f"the {what} must be positive, got '{text}'")
    return value


