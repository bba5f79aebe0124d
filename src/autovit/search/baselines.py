"""Baselines in the same framework, to prove the method: random search with the same number of
evaluations and budgets, and a FLOPs-constrained search (MACs budget instead of latency)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from autovit.search.coarse import LatencyPredictor, Progress
from autovit.search.config import SearchConfig
from autovit.search.evolution import AccuracyFn, EvolutionarySearch, SearchResult, summarize
from autovit.search.state import Candidate
from autovit.space import SearchSpace


def random_search(space: SearchSpace, accuracy_fn: AccuracyFn, latency_model: LatencyPredictor | None,
                  config: SearchConfig, evaluations: int) -> SearchResult:
    """`evaluations` distinct uniform samples meeting `config`'s budgets (bounded rejection), each
    evaluated once; the best by `config.objective`. Seeded by `config.seed`."""
    helper = EvolutionarySearch(space, accuracy_fn, latency_model, config)
    rng = random.Random(config.seed + 7919)
    t0 = time.perf_counter()
    picked = helper.sample_within_budget([], set(), evaluations, rng)
    accs = helper.evaluate([a for a, _ in picked])
    history = []
    for (arch, _), acc in zip(picked, accs):
        params, macs = helper.costs_of(arch)
        history.append(Candidate(arch, float(acc), helper.latency_of(arch), params, macs, 0, "random"))
    s = summarize(history, config)
    return SearchResult(config, history, s["best"], s["best_per_budget"], s["pareto_latency"], s["pareto_params"],
                        {}, {"fine_s": time.perf_counter() - t0})


def flops_constrained_config(config: SearchConfig, macs_budget: float) -> SearchConfig:
    """The same search with the latency budget(s) replaced by a MACs budget (the FLOPs proxy)."""
    return config.replace(latency_budget_ms=None, budgets_ms=(), macs_budget=float(macs_budget))


def flops_constrained_search(space: SearchSpace, accuracy_fn: AccuracyFn, latency_model: LatencyPredictor | None,
                             config: SearchConfig, macs_budget: float, out_dir: str | Path | None = None,
                             resume: bool = False, progress: Progress | None = None) -> SearchResult:
    """The coarse-to-fine search under `MACs <= macs_budget` and no latency budget (the latency model
    only records predictions); measure its winner's real latency to compare with the latency-aware run.
    `out_dir` / `resume` / `progress` as `EvolutionarySearch`."""
    cfg = flops_constrained_config(config, macs_budget)
    return EvolutionarySearch(space, accuracy_fn, latency_model, cfg, out_dir, progress=progress).run(resume)
