"""Fine stage of Algorithm 1: evolutionary search seeded with the coarse skeletons (Eq. 9), with
the objectives Eq. 2, Eq. 3 and Eq. 8 and a latency-budget sweep; seeded, memoised, resumable.

Each generation evaluates its population (only archs never seen before: results are memoised by
`Arch.key()`), picks the top `parents` of everything evaluated so far, and breeds the next
population: with probability P_c a crossover of two random parents, else a mutation of one
(depth genes with P_d, then each block with P_m). A child is kept only if it is new and meets every
budget; each child gets at most `max_retries` tries, so the loop always ends.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from autovit.arch import Arch
from autovit.costs import count_macs, count_params
from autovit.errors import AutovitError
from autovit.search.coarse import CoarseResult, LatencyPredictor, Progress, coarse_search, eq3_cost, predict_latency
from autovit.search.config import SearchConfig
from autovit.search.distributed import evaluate_split, world
from autovit.search.pareto import nondominated_sort, pareto_front
from autovit.search.state import Candidate, SearchState
from autovit.space import SearchSpace

AccuracyFn = Callable[[Arch], float]
Evaluate = Callable[[Sequence[Arch]], list[float]]

# Settings a resumed run may change (it only extends the run); everything else must match.
RESUMABLE_CHANGES = {"generations"}


@dataclass
class SearchResult:
    """What a search found: best arch(s), Pareto fronts and every evaluated candidate."""

    config: SearchConfig
    history: list[Candidate]
    best: Candidate | None
    best_per_budget: dict[float, Candidate | None] = field(default_factory=dict)
    pareto_latency: list[Candidate] = field(default_factory=list)
    pareto_params: list[Candidate] = field(default_factory=list)
    coarse: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    cloud: dict[str, list[Any]] = field(default_factory=dict)  # coarse samples kept for the plot

    @property
    def evaluations(self) -> int:
        return len(self.history)


# ---------------------------------------------------------------------------- ranking
def _lat(c: Candidate) -> float:
    return 0.0 if math.isnan(c.latency_ms) else c.latency_ms


def _cost(config: SearchConfig, c: Candidate) -> float:
    return float(eq3_cost(config, np.array([c.latency_ms]), np.array([c.params]), np.array([c.macs]))[0])


def rank(candidates: Sequence[Candidate], config: SearchConfig) -> list[Candidate]:
    """Best first under the run's objective.

    eq2: highest accuracy (ties: lower latency, fewer params). eq3: lowest L + lambda C among those
    meeting `min_accuracy`, then the rest by accuracy. eq8: Pareto fronts of (accuracy, params),
    front by front, each by accuracy. Ties always end on the arch key, so ranking is deterministic.
    """
    cands = list(candidates)
    if config.objective == "eq3":
        floor = -math.inf if config.min_accuracy is None else config.min_accuracy

        def key3(c: Candidate) -> tuple:
            ok = c.accuracy >= floor
            return (not ok, _cost(config, c) if ok else -c.accuracy, -c.accuracy, c.key)

        return sorted(cands, key=key3)
    eq2 = sorted(cands, key=lambda c: (-c.accuracy, _lat(c), c.params, c.key))
    if config.objective == "eq2":
        return eq2
    fronts = nondominated_sort([(c.accuracy, c.params) for c in eq2], maximize=(True, False))
    return [eq2[i] for front in fronts for i in sorted(front)]


def within(c: Candidate, budget_ms: float) -> bool:
    return not math.isnan(c.latency_ms) and c.latency_ms <= budget_ms


def select_parents(candidates: Sequence[Candidate], config: SearchConfig) -> list[Candidate]:
    """Top `config.parents`; in a sweep, round-robin over the budgets' rankings so every budget
    keeps parents of its own (AlphaNet's per-bucket Pareto set, with latency buckets)."""
    if not config.budgets_ms:
        return rank(candidates, config)[:config.parents]
    eq2 = config.replace(objective="eq2")
    queues = [rank([c for c in candidates if within(c, b)], eq2) for b in config.budgets_ms]
    parents: list[Candidate] = []
    seen: set[str] = set()
    while len(parents) < config.parents and any(queues):
        for q in queues:
            while q and q[0].key in seen:
                q.pop(0)
            if q and len(parents) < config.parents:
                parents.append(q.pop(0))
                seen.add(parents[-1].key)
    return parents


def summarize(history: Sequence[Candidate], config: SearchConfig) -> dict[str, Any]:
    """Best overall, best per sweep budget, and the two Pareto fronts of `history`."""
    best_pool = [c for c in history if config.latency_budget_ms is None or within(c, config.latency_budget_ms)]
    ranked = rank(best_pool, config)
    per_budget: dict[float, Candidate | None] = {}
    for b in config.budgets_ms:
        fits = rank([c for c in history if within(c, b)], config.replace(objective="eq2"))
        per_budget[b] = fits[0] if fits else None
    with_lat = [c for c in history if not math.isnan(c.latency_ms)]
    front_l = [with_lat[i] for i in pareto_front([(c.accuracy, c.latency_ms) for c in with_lat], (True, False))]
    front_p = [history[i] for i in pareto_front([(c.accuracy, c.params) for c in history], (True, False))]
    return {"best": ranked[0] if ranked else None, "best_per_budget": per_budget,
            "pareto_latency": sorted(front_l, key=lambda c: (c.latency_ms, c.key)),
            "pareto_params": sorted(front_p, key=lambda c: (c.params, c.key))}


# ---------------------------------------------------------------------------- the search
class EvolutionarySearch:
    """Coarse-to-fine search of `space` for `accuracy_fn` under the budgets of `config`.

    `accuracy_fn(arch) -> float` is the fitness (top-1 on the held-out split for a supernet);
    `latency_model.predict(archs) -> ndarray` (ms) is needed for latency budgets. With `out_dir`
    the state is saved after every generation and `run(resume=True)` continues a stopped run.
    """

    def __init__(self, space: SearchSpace, accuracy_fn: AccuracyFn, latency_model: LatencyPredictor | None,
                 config: SearchConfig, out_dir: str | Path | None = None, evaluate: Evaluate | None = None,
                 progress: Progress | None = None,
                 on_generation: Callable[[int, SearchState], None] | None = None,
                 inputs: Mapping[str, Any] | None = None) -> None:
        self.space = space
        self.inputs = dict(inputs or {})  # what accuracy/latency are measured with; checked on resume
        self.accuracy_fn = accuracy_fn
        self.latency_model = latency_model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.evaluate = evaluate or (lambda archs: evaluate_split(archs, accuracy_fn))
        self.progress = progress
        self.on_generation = on_generation
        self._latency: dict[str, float] = {}
        self._costs: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ constraints
    def latency_of(self, arch: Arch) -> float:
        key = arch.key()
        if key not in self._latency:
            self._latency[key] = float(predict_latency(self.latency_model, [arch])[0])
        return self._latency[key]

    def costs_of(self, arch: Arch) -> tuple[int, int]:
        key = arch.key()
        if key not in self._costs:
            self._costs[key] = (count_params(arch, self.config.num_classes), count_macs(arch, self.config.num_classes))
        return self._costs[key]

    def fits(self, arch: Arch) -> bool:
        """Meets every budget of the config (the cheap checks first)."""
        cfg = self.config
        params, macs = self.costs_of(arch)
        if cfg.params_budget is not None and params > cfg.params_budget:
            return False
        if cfg.macs_budget is not None and macs > cfg.macs_budget:
            return False
        return cfg.max_latency_ms is None or self.latency_of(arch) <= cfg.max_latency_ms

    # ------------------------------------------------------------------ run
    def run(self, resume: bool = False, coarse: CoarseResult | None = None) -> SearchResult:
        """Runs (or continues) the search to `config.generations` generations."""
        if self.config.max_latency_ms is not None and self.latency_model is None:
            raise AutovitError("a latency budget needs a latency model", hint="pass --lut with a latency table")
        state = self._resume() if resume else self._start(coarse)
        rng = state.rng()
        memo = {c.key: c for c in state.history}
        for c in state.history:
            self._latency[c.key] = c.latency_ms
        while state.generation < self.config.generations:
            t0 = time.perf_counter()
            todo = [(a, o) for a, o in state.population if a.key() not in memo]
            accs = self.evaluate([a for a, _ in todo])
            for (arch, origin), acc in zip(todo, accs):
                params, macs = self.costs_of(arch)
                cand = Candidate(arch, float(acc), self.latency_of(arch), params, macs, state.generation, origin)
                memo[cand.key] = cand
                state.history.append(cand)
            state.generation += 1
            state.population = (self._breed(select_parents(state.history, self.config), memo, rng)
                                if state.generation < self.config.generations else [])
            state.rng_state = rng.getstate()
            state.finished = state.generation >= self.config.generations
            state.timing["fine_s"] = state.timing.get("fine_s", 0.0) + time.perf_counter() - t0
            self._save(state)
            if self.progress:
                self.progress("fine", state.generation, self.config.generations)
            if self.on_generation:
                self.on_generation(state.generation, state)
        return self._result(state)

    def _start(self, coarse: CoarseResult | None) -> SearchState:
        cfg = self.config
        coarse = coarse or coarse_search(self.space, cfg, self.latency_model, self.progress)
        rng = random.Random(cfg.seed)
        population: list[tuple[Arch, str]] = []
        seen: set[str] = set()
        for arch in coarse.skeletons:
            if len(population) < cfg.population and arch.key() not in seen:
                population.append((arch, "coarse"))
                seen.add(arch.key())
        population += self.sample_within_budget(coarse.skeletons, seen, cfg.population - len(population), rng)
        state = SearchState(config=cfg.to_dict(), space=self.space.name, rng_state=rng.getstate(),
                            population=population,
                            coarse={**coarse.summary(), "cloud": coarse.cloud},
                            timing={"coarse_s": coarse.wall_s, "fine_s": 0.0}, inputs=self.inputs)
        self._save(state)
        return state

    def _resume(self) -> SearchState:
        if self.out_dir is None:
            raise AutovitError("resuming needs the run folder", hint="pass --out with the folder of the stopped run")
        state = SearchState.load(self.out_dir, self.space)
        saved, now = state.config, self.config.to_dict()
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            name = changed[0]
            raise AutovitError(f"cannot resume {self.out_dir}: '{name}' was {saved.get(name)!r} and is now "
                               f"{now.get(name)!r}",
                               hint="resume with the same settings (only --generations may grow), "
                                    "or start a new run with another --out")
        moved = sorted(k for k in set(state.inputs) & set(self.inputs) if state.inputs[k] != self.inputs[k])
        if moved:
            name = moved[0]
            raise AutovitError(f"cannot resume {self.out_dir}: its {name.replace('_', ' ')} was "
                               f"{state.inputs[name]!r} and is now {self.inputs[name]!r}",
                               hint="resume with the same supernet, latency table and evaluation settings, "
                                    "or start a new run with another --out")
        if state.generation < self.config.generations and not state.population:
            # The run had finished at fewer generations: breed from where it stopped.
            rng = state.rng()
            memo = {c.key: c for c in state.history}
            state.population = self._breed(select_parents(state.history, self.config), memo, rng)
            state.rng_state = rng.getstate()
        return state

    def _save(self, state: SearchState) -> None:
        if self.out_dir is not None and world()[0] == 0:
            state.save(self.out_dir)

    # ------------------------------------------------------------------ breeding
    def _breed(self, parents: list[Candidate], memo: dict[str, Candidate],
               rng: random.Random) -> list[tuple[Arch, str]]:
        """Next population by Eq. 9; children are new (not in `memo`, not twice) and within budget."""
        cfg = self.config
        children: list[tuple[Arch, str]] = []
        seen = set(memo)
        archs = [p.arch for p in parents]
        for _ in range(cfg.population):
            for _ in range(cfg.max_retries):
                if len(archs) >= 2 and rng.random() < cfg.p_crossover:
                    a, b = rng.sample(archs, 2)
                    child, origin = self.space.crossover(a, b, rng), "crossover"
                else:
                    child = self.space.mutate(rng.choice(archs), rng, cfg.p_depth, cfg.p_block)
                    origin = "mutation"
                if child.key() not in seen and self.fits(child):
                    children.append((child, origin))
                    seen.add(child.key())
                    break
        missing = cfg.population - len(children)
        return children + self.sample_within_budget(archs, seen, missing, rng) if missing > 0 else children

    def sample_within_budget(self, seeds: Sequence[Arch], seen: set[str], count: int,
                             rng: random.Random) -> list[tuple[Arch, str]]:
        """Up to `count` new in-budget archs: random samples, else mutations of `seeds` (bounded)."""
        out: list[tuple[Arch, str]] = []
        for _ in range(count * self.config.max_retries):
            if len(out) >= count:
                break
            if seeds and rng.random() < 0.5:
                arch = self.space.mutate(rng.choice(list(seeds)), rng, self.config.p_depth, self.config.p_block)
            else:
                arch = self.space.sample(rng)
            if arch.key() not in seen and self.fits(arch):
                out.append((arch, "random"))
                seen.add(arch.key())
        return out

    # ------------------------------------------------------------------ result
    def _result(self, state: SearchState) -> SearchResult:
        s = summarize(state.history, self.config)
        coarse = {k: v for k, v in state.coarse.items() if k != "cloud"}
        return SearchResult(self.config, list(state.history), s["best"], s["best_per_budget"], s["pareto_latency"],
                            s["pareto_params"], coarse, dict(state.timing), state.coarse.get("cloud", {}))


def search(space: SearchSpace, accuracy_fn: AccuracyFn, latency_model: LatencyPredictor | None,
           config: SearchConfig, out_dir: str | Path | None = None, resume: bool = False,
           progress: Progress | None = None) -> SearchResult:
    """Coarse-to-fine search in one call (see `EvolutionarySearch`)."""
    return EvolutionarySearch(space, accuracy_fn, latency_model, config, out_dir, progress=progress).run(resume)
