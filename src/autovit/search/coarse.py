"""Coarse stage of Algorithm 1: sample many archs, keep those within the latency and parameter
budgets (closed-form params, batched latency model; no network is ever built) and return the top-K
skeletons for the evolutionary stage."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from autovit.arch import Arch
from autovit.costs import count_macs, count_params
from autovit.errors import AutovitError
from autovit.search.config import SearchConfig
from autovit.search.genome import Genome
from autovit.space import SearchSpace

CLOUD_POINTS = 5000  # points of the coarse cloud kept for the plot
CHUNK = 20_000  # archs per latency-model call (progress granularity, bounded memory)

Progress = Callable[[str, int, int], None]


class LatencyPredictor(Protocol):
    def predict(self, archs: Sequence[Arch]) -> np.ndarray: ...


@dataclass
class CoarseResult:
    skeletons: list[Arch]
    sampled: int
    unique: int
    within_params: int
    feasible: int
    wall_s: float
    cloud: dict[str, list[float]] = field(default_factory=dict)  # latency_ms, params, feasible

    def summary(self) -> dict[str, Any]:
        return {"sampled": self.sampled, "unique": self.unique, "within_params": self.within_params,
                "feasible": self.feasible, "skeletons": len(self.skeletons), "wall_s": round(self.wall_s, 3)}


def cost_metric(config: SearchConfig, params: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """C(s) of Eq. 3 in millions of params or MACs."""
    return (params if config.cost_metric == "params" else macs) / 1e6


def eq3_cost(config: SearchConfig, latency_ms: np.ndarray, params: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """Eq. 3: L(s) + lambda * C(s) (latency taken as 0 without a latency model)."""
    lat = np.nan_to_num(np.asarray(latency_ms, dtype=float), nan=0.0)
    return lat + config.cost_lambda * cost_metric(config, np.asarray(params), np.asarray(macs))


def predict_latency(model: LatencyPredictor | None, archs: Sequence[Arch]) -> np.ndarray:
    if model is None:
        return np.full(len(archs), math.nan)
    if not archs:
        return np.zeros(0)
    return np.asarray(model.predict(list(archs)), dtype=float).reshape(len(archs))


def within_budgets(config: SearchConfig, latency_ms: np.ndarray, params: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """Mask of the archs meeting every budget of `config` (the largest budget of a sweep)."""
    ok = np.ones(len(params), dtype=bool)
    if config.params_budget is not None:
        ok &= np.asarray(params) <= config.params_budget
    if config.macs_budget is not None:
        ok &= np.asarray(macs) <= config.macs_budget
    if config.max_latency_ms is not None:
        ok &= np.asarray(latency_ms) <= config.max_latency_ms
    return ok


def coarse_search(space: SearchSpace, config: SearchConfig, latency_model: LatencyPredictor | None,
                  progress: Progress | None = None) -> CoarseResult:
    """Samples `config.coarse_samples` archs (seeded by `config.seed`), filters them by the budgets
    and keeps the `config.coarse_top_k` best by `config.coarse_rank`.

    Raises `AutovitError` naming the smallest latency and params the space reaches when no arch fits.
    """
    if config.max_latency_ms is not None and latency_model is None:
        raise AutovitError("a latency budget needs a latency model", hint="pass --lut with a latency table")
    t0 = time.perf_counter()
    genome = Genome(space, config.num_classes)
    genes = genome.sample(config.coarse_samples, np.random.default_rng(config.seed))
    genes = genome.unique(genes)
    params, macs = genome.costs(genes)
    ok = np.ones(len(genes), dtype=bool)
    if config.params_budget is not None:
        ok &= params <= config.params_budget
    if config.macs_budget is not None:
        ok &= macs <= config.macs_budget
    idx = np.flatnonzero(ok)
    latency = np.full(len(genes), math.nan)
    for start in range(0, len(idx), CHUNK):
        part = idx[start:start + CHUNK]
        latency[part] = predict_latency(latency_model, genome.decode_many(genes[part]))
        if progress:
            progress("coarse", min(start + CHUNK, len(idx)), len(idx))
    feasible = ok & within_budgets(config, latency, params, macs) if config.max_latency_ms is not None else ok
    fidx = np.flatnonzero(feasible)
    skeletons = [genome.decode(genes[i]) for i in _rank(config, fidx, latency, params, macs)]
    if not skeletons:
        skeletons = _feasible_extremes(space, config, latency_model)
    if not skeletons:
        _raise_impossible(space, config, latency_model, latency, params)
    cloud_idx = np.random.default_rng(config.seed + 1).permutation(len(genes))[:CLOUD_POINTS]
    cloud_idx = cloud_idx[ok[cloud_idx]] if config.max_latency_ms is not None else cloud_idx
    cloud = {"latency_ms": [float(v) for v in latency[cloud_idx]], "params": params[cloud_idx].tolist(),
             "feasible": feasible[cloud_idx].tolist()}
    return CoarseResult(skeletons, config.coarse_samples, len(genes), int(ok.sum()), int(feasible.sum()),
                        time.perf_counter() - t0, cloud)


def _rank(config: SearchConfig, idx: np.ndarray, latency: np.ndarray, params: np.ndarray,
          macs: np.ndarray) -> list[int]:
    """Top-K of `idx`: lowest Eq. 3 cost, or closest to the budget from below (ties: row order)."""
    if len(idx) == 0:
        return []
    if config.coarse_ranking == "cost":
        score = eq3_cost(config, latency[idx], params[idx], macs[idx])
    elif config.max_latency_ms is not None:
        score = config.max_latency_ms - latency[idx]
    elif config.params_budget is not None:
        score = config.params_budget - params[idx]
    elif config.macs_budget is not None:
        score = config.macs_budget - macs[idx]
    else:
        score = -params[idx].astype(float)  # no budget: the largest archs
    order = np.lexsort((idx, score))
    return idx[order[:config.coarse_top_k]].tolist()


def _extremes(space: SearchSpace) -> list[Arch]:
    out: list[Arch] = []
    for arch in (space.smallest(), space.width_extremes()[0]):
        if space.contains(arch) and arch not in out:
            out.append(arch)
    return out


def _feasible_extremes(space: SearchSpace, config: SearchConfig, latency_model: LatencyPredictor | None) -> list[Arch]:
    """The smallest archs, when they fit a budget so tight that no random sample did."""
    archs = _extremes(space)
    lat = predict_latency(latency_model, archs)
    params = np.array([count_params(a, config.num_classes) for a in archs])
    macs = np.array([count_macs(a, config.num_classes) for a in archs])
    ok = within_budgets(config, lat, params, macs)
    return [a for a, keep in zip(archs, ok) if keep]


def _raise_impossible(space: SearchSpace, config: SearchConfig, latency_model: LatencyPredictor | None,
                      latency: np.ndarray, params: np.ndarray) -> None:
    archs = _extremes(space)
    ext_lat = predict_latency(latency_model, archs)
    min_params = min(count_params(a, config.num_classes) for a in archs)
    min_macs = min(count_macs(a, config.num_classes) for a in archs)
    asked, reach = [], []
    if config.max_latency_ms is not None:
        best = float(np.nanmin(np.concatenate([ext_lat, latency[~np.isnan(latency)]])))
        asked.append(f"latency <= {config.max_latency_ms:g} ms")
        reach.append(f"latency {best:.3g} ms")
    if config.params_budget is not None:
        asked.append(f"params <= {config.params_budget / 1e6:.3g}M")
    reach.append(f"params {min_params / 1e6:.3g}M")
    if config.macs_budget is not None:
        asked.append(f"MACs <= {config.macs_budget / 1e6:.4g}M")
        reach.append(f"MACs {min_macs / 1e6:.4g}M")
    raise AutovitError(
        f"no architecture of the space '{space.name}' meets {' and '.join(asked)}: the smallest it reaches "
        f"is {', '.join(reach)}",
        hint="raise the budget(s) above those minimums, or search a smaller space")
