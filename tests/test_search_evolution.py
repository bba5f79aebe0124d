"""Fine stage: evolution, objectives, sweep, seeding, resume, distributed evaluation."""

from __future__ import annotations

import random

import pytest

from autovit.costs import count_params
from autovit.errors import AutovitError
from autovit.search.config import SearchConfig
from autovit.search.distributed import evaluate_split, shard, unshard
from autovit.search.evolution import EvolutionarySearch, search
from autovit.search.pareto import pareto_front
from autovit.space import SearchSpace
from search_toys import MacsLatency, params_accuracy, tiny_space

SMALL = dict(coarse_samples=500, coarse_top_k=10, population=10, generations=4, parents=4)


def _trace(result):
    return [(c.key, c.accuracy, c.generation, c.origin) for c in result.history]


def test_mutation_and_crossover_keep_archs_valid() -> None:
    rng = random.Random(0)
    for name in ("xxs", "xs", "s"):
        space = SearchSpace.builtin(name)
        pool = [space.sample(rng) for _ in range(20)]
        for _ in range(200):
            child = space.mutate(rng.choice(pool), rng, 0.2, 0.4)
            space.validate(child)
            mixed = space.crossover(rng.choice(pool), rng.choice(pool), rng)
            space.validate(mixed)
            pool.append(rng.choice((child, mixed)))


def test_every_candidate_meets_the_budgets_and_is_evaluated_once() -> None:
    calls: list[str] = []

    def acc(arch):
        calls.append(arch.key())
        return params_accuracy(arch)

    lat = MacsLatency()
    cfg = SearchConfig(latency_budget_ms=1.25, params_budget=2.5e5, **SMALL)
    res = search(tiny_space(), acc, lat, cfg)
    assert len(calls) == len(set(calls)) == res.evaluations
    assert res.evaluations == cfg.population * cfg.generations
    for c in res.history:
        assert c.latency_ms <= 1.25 and c.params <= 2.5e5
        assert c.latency_ms == pytest.approx(lat.predict([c.arch])[0]) and c.params == count_params(c.arch)
    assert {c.origin for c in res.history} >= {"coarse", "mutation", "crossover"}


def test_seeded_runs_are_identical() -> None:
    cfg = SearchConfig(latency_budget_ms=1.3, **SMALL)
    a = search(tiny_space(), params_accuracy, MacsLatency(), cfg)
    b = search(tiny_space(), params_accuracy, MacsLatency(), cfg)
    c = search(tiny_space(), params_accuracy, MacsLatency(), cfg.replace(seed=1))
    assert _trace(a) == _trace(b)
    assert _trace(a) != _trace(c)


class _Stop(Exception):
    pass


def test_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    space, lat = tiny_space(), MacsLatency()
    cfg = SearchConfig(latency_budget_ms=1.3, **{**SMALL, "generations": 5})
    full = search(space, params_accuracy, lat, cfg, out_dir=tmp_path / "full")

    def crash(gen, state):
        if gen == 2:
            raise _Stop

    with pytest.raises(_Stop):
        EvolutionarySearch(space, params_accuracy, lat, cfg, tmp_path / "cut", on_generation=crash).run()
    calls: list[str] = []

    def counting(arch):
        calls.append(arch.key())
        return params_accuracy(arch)

    resumed = search(space, counting, lat, cfg, out_dir=tmp_path / "cut", resume=True)
    assert _trace(resumed) == _trace(full)
    assert len(calls) == 3 * cfg.population  # generations 0-1 came from the saved state
    assert resumed.best.key == full.best.key


def test_a_finished_run_can_be_extended(tmp_path) -> None:
    space, lat = tiny_space(), MacsLatency()
    cfg = SearchConfig(latency_budget_ms=1.3, **SMALL)
    full = search(space, params_accuracy, lat, cfg.replace(generations=6))
    search(space, params_accuracy, lat, cfg, out_dir=tmp_path)
    extended = search(space, params_accuracy, lat, cfg.replace(generations=6), out_dir=tmp_path, resume=True)
    assert _trace(extended) == _trace(full)


def test_resume_refuses_changed_settings(tmp_path) -> None:
    space, lat = tiny_space(), MacsLatency()
    cfg = SearchConfig(latency_budget_ms=1.3, **SMALL)
    search(space, params_accuracy, lat, cfg, out_dir=tmp_path)
    with pytest.raises(AutovitError, match="latency_budget_ms"):
        search(space, params_accuracy, lat, cfg.replace(latency_budget_ms=1.2), out_dir=tmp_path, resume=True)
    with pytest.raises(AutovitError, match="nothing to resume"):
        search(space, params_accuracy, lat, cfg, out_dir=tmp_path / "empty", resume=True)
    with pytest.raises(AutovitError, match="space 'tiny'"):
        search(SearchSpace.builtin("xxs"), params_accuracy, lat, cfg, out_dir=tmp_path, resume=True)


def _brute_force_best(space, lat, budget_ms, key=params_accuracy):
    archs = list(space.enumerate())
    lats = lat.predict(archs)
    fits = [a for a, l in zip(archs, lats) if l <= budget_ms]
    return max(fits, key=key)


def test_search_finds_the_known_optimum_of_a_toy_function() -> None:
    space, lat = tiny_space(), MacsLatency()
    best = _brute_force_best(space, lat, 1.25)
    cfg = SearchConfig(latency_budget_ms=1.25, coarse_samples=1000, coarse_top_k=20, population=20,
                       generations=20, parents=5)
    res = search(space, params_accuracy, lat, cfg)
    assert res.best.key == best.key()
    assert res.evaluations < space.cardinality() / 20  # found without enumerating the space


def test_eq3_minimises_latency_plus_lambda_cost_above_the_accuracy_floor() -> None:
    space, lat = tiny_space(), MacsLatency()
    cfg = SearchConfig(objective="eq3", cost_lambda=2.0, min_accuracy=25.0, latency_budget_ms=1.4, **SMALL)
    res = search(space, params_accuracy, lat, cfg)
    ok = [c for c in res.history if c.accuracy >= 25.0]
    assert ok and res.best.accuracy >= 25.0
    cost = lambda c: c.latency_ms + 2.0 * c.params / 1e6  # noqa: E731
    assert cost(res.best) == pytest.approx(min(cost(c) for c in ok))


def test_eq8_front_is_non_dominated_in_accuracy_and_size() -> None:
    cfg = SearchConfig(objective="eq8", latency_budget_ms=1.3, **SMALL)
    res = search(tiny_space(), lambda a: params_accuracy(a) % 7.0, MacsLatency(), cfg)
    front = {c.key for c in res.pareto_params}
    idx = pareto_front([(c.accuracy, c.params) for c in res.history], (True, False))
    assert front == {res.history[i].key for i in idx}
    assert res.best.key in front and res.best.accuracy == max(c.accuracy for c in res.history)
    assert [c.latency_ms for c in res.pareto_latency] == sorted(c.latency_ms for c in res.pareto_latency)


def test_sweep_returns_the_best_arch_for_every_budget_from_one_population() -> None:
    space, lat = tiny_space(), MacsLatency()
    budgets = (1.2, 1.25, 1.3)
    cfg = SearchConfig(budgets_ms=budgets, **{**SMALL, "generations": 8, "population": 16})
    res = search(space, params_accuracy, lat, cfg)
    assert res.evaluations == 8 * 16
    assert set(res.best_per_budget) == set(budgets)
    for b, cand in res.best_per_budget.items():
        fits = [c for c in res.history if c.latency_ms <= b]
        assert cand.latency_ms <= b and cand.accuracy == max(c.accuracy for c in fits)
    accs = [res.best_per_budget[b].accuracy for b in budgets]
    assert accs == sorted(accs)  # a looser budget never does worse


def test_shard_and_unshard_cover_every_item_once() -> None:
    items = list(range(11))
    for world in (1, 2, 3, 4, 16):
        parts = [shard(items, r, world) for r in range(world)]
        assert sorted(x for p in parts for x in p) == items
        assert unshard(parts, len(items)) == items


def test_evaluate_split_with_a_simulated_world() -> None:
    items = [float(i) for i in range(7)]
    fn = lambda x: x * x  # noqa: E731

    def gather(local):  # what all_gather_object returns: every rank's local results
        return [[fn(x) for x in shard(items, r, 3)] for r in range(3)]

    for rank in range(3):
        assert evaluate_split(items, fn, gather, rank, 3) == [fn(x) for x in items]
