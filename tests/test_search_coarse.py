"""Coarse stage, genome costs, budgets with units, Pareto fronts."""

from __future__ import annotations

import numpy as np
import pytest

from autovit.costs import count_macs, count_params
from autovit.errors import AutovitError
from autovit.search.coarse import coarse_search, eq3_cost
from autovit.search.config import SearchConfig, parse_count, parse_latency, parse_latency_list
from autovit.search.genome import Genome
from autovit.search.pareto import best_per_budget, nondominated_sort, pareto_front
from autovit.space import SearchSpace
from search_toys import MacsLatency, tiny_space


def test_units_are_parsed() -> None:
    assert parse_latency("12ms") == 12.0
    assert parse_latency("0.012s") == pytest.approx(12.0)
    assert parse_latency("12000us") == pytest.approx(12.0)
    assert parse_latency("12") == 12.0
    assert parse_count("2M") == 2e6
    assert parse_count("2e6") == 2e6
    assert parse_count("800k") == 8e5
    assert parse_count("1.5m") == 1.5e6
    assert parse_latency_list("8ms, 10ms,0.012s") == pytest.approx((8.0, 10.0, 12.0))


@pytest.mark.parametrize("text, parser, words", [
    ("2M", parse_latency, "is a time"), ("12ms", parse_count, "is a count"), ("fast", parse_latency, "12ms"),
    ("-3ms", parse_latency, "12ms"), ("0ms", parse_latency, "positive"), ("", parse_count, "2M"),
])
def test_wrong_units_give_clear_errors(text, parser, words) -> None:
    with pytest.raises(AutovitError) as err:
        parser(text)
    assert words in str(err.value)


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(AutovitError, match="objective"):
        SearchConfig(objective="eq5")
    with pytest.raises(AutovitError, match="parents"):
        SearchConfig(population=5, parents=6)
    with pytest.raises(AutovitError, match="probability"):
        SearchConfig(p_crossover=1.5)
    cfg = SearchConfig(latency_budget_ms=5, budgets_ms=(4, 3))
    assert cfg.budgets_ms == (3.0, 4.0) and cfg.max_latency_ms == 4.0
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["xxs", "s"])
def test_genome_costs_equal_closed_form(name: str) -> None:
    space = SearchSpace.builtin(name)
    genome = Genome(space, num_classes=10)
    genes = genome.sample(2000, np.random.default_rng(0))
    assert len(genes) == 2000 and genome.valid(genes).all()
    params, macs = genome.costs(genes)
    archs = genome.decode_many(genes[:150])
    for arch, p, m in zip(archs, params, macs):
        space.validate(arch)
        assert (p, m) == (count_params(arch, 10), count_macs(arch, 10))


def test_genome_rows_are_canonical() -> None:
    genome = Genome(tiny_space())
    genes = genome.sample(5000, np.random.default_rng(1))
    keys = {a.key() for a in genome.decode_many(genes)}
    assert len(keys) == len(np.unique(genes, axis=0))


def test_coarse_filter_never_lets_an_over_budget_arch_through() -> None:
    space, lat = tiny_space(), MacsLatency()
    cfg = SearchConfig(coarse_samples=1500, coarse_top_k=40)
    genome = Genome(space)
    sampled = genome.decode_many(np.unique(genome.sample(1500, np.random.default_rng(cfg.seed)), axis=0))
    lats = lat.predict(sampled)
    params = np.array([count_params(a) for a in sampled])
    budget_ms, budget_p = float(np.quantile(lats, 0.3)), float(np.quantile(params, 0.5))
    res = coarse_search(space, cfg.replace(latency_budget_ms=budget_ms, params_budget=budget_p), lat)
    assert len(res.skeletons) == 40 and res.unique == len(sampled) and res.sampled == 1500
    for arch in res.skeletons:
        assert lat.predict([arch])[0] <= budget_ms and count_params(arch) <= budget_p
    # exactly the feasible samples pass the filter
    assert res.feasible == int(((lats <= budget_ms) & (params <= budget_p)).sum())


def test_coarse_ranking_orders() -> None:
    space, lat = tiny_space(), MacsLatency()
    cfg = SearchConfig(latency_budget_ms=1.3, coarse_samples=2000, coarse_top_k=30, cost_lambda=2.0,
                       coarse_rank="cost")
    assert cfg.replace(coarse_rank="auto").coarse_ranking == "closeness"
    assert cfg.replace(coarse_rank="auto", objective="eq3").coarse_ranking == "cost"
    res = coarse_search(space, cfg, lat)
    costs = [float(eq3_cost(cfg, lat.predict([a]), np.array([count_params(a)]), np.array([count_macs(a)]))[0])
             for a in res.skeletons]
    assert costs == sorted(costs)
    close = coarse_search(space, cfg.replace(coarse_rank="closeness"), lat)
    lats = [lat.predict([a])[0] for a in close.skeletons]
    assert lats == sorted(lats, reverse=True) and max(lats) <= 1.3


def test_impossible_budget_names_the_space_minimum() -> None:
    space, lat = SearchSpace.builtin("xxs"), MacsLatency()
    smallest = lat.predict([space.smallest()])[0]
    with pytest.raises(AutovitError) as err:
        coarse_search(space, SearchConfig(latency_budget_ms=1.0, params_budget=5e5, coarse_samples=500), lat)
    text = str(err.value)
    assert "no architecture of the space 'xxs'" in text
    assert f"latency {smallest:.3g} ms" in text and f"params {count_params(space.smallest()) / 1e6:.3g}M" in text


def test_tight_budget_still_finds_the_smallest_arch() -> None:
    space, lat = SearchSpace.builtin("xxs"), MacsLatency()
    smallest = space.smallest()
    cfg = SearchConfig(latency_budget_ms=float(lat.predict([smallest])[0]), coarse_samples=20)
    assert coarse_search(space, cfg, lat).skeletons == [smallest]


def test_latency_budget_without_a_model_is_an_error() -> None:
    with pytest.raises(AutovitError, match="latency model"):
        coarse_search(tiny_space(), SearchConfig(latency_budget_ms=3.0, coarse_samples=10), None)


def test_pareto_front_on_a_hand_made_set() -> None:
    # (accuracy, latency): maximise accuracy, minimise latency
    pts = [(70, 10), (72, 12), (71, 12), (69, 9), (72, 11), (65, 9), (75, 20), (75, 20), (60, 30)]
    assert pareto_front(pts, (True, False)) == [0, 3, 4, 6, 7]
    fronts = nondominated_sort(pts, (True, False))
    assert fronts[0] == [0, 3, 4, 6, 7]
    assert fronts[1] == [1, 5] and fronts[2] == [2] and fronts[3] == [8]
    assert sorted(i for f in fronts for i in f) == list(range(len(pts)))
    acc, cost = [p[0] for p in pts], [p[1] for p in pts]
    assert best_per_budget(acc, cost, [8, 9, 11.5, 12, 25]) == {8: None, 9: 3, 11.5: 4, 12: 4, 25: 6}


def _reference_sort(points: list, maximize: tuple) -> list[list[int]]:
    """The former O(n^2)-per-front peeling, kept as the oracle for the fast sorter."""
    arr = np.where(np.asarray(maximize), -np.asarray(points, dtype=float), np.asarray(points, dtype=float))
    remaining, fronts = list(range(len(points))), []
    while remaining:
        sub = arr[remaining]
        front = [remaining[i] for i, p in enumerate(sub)
                 if not np.any(np.all(sub <= p, axis=1) & np.any(sub < p, axis=1))]
        fronts.append(front)
        remaining = [i for i in remaining if i not in set(front)]
    return fronts


@pytest.mark.parametrize("dims, n, levels", [(2, 400, 7), (2, 300, 1000), (3, 300, 5), (4, 200, 4), (1, 50, 6)])
def test_fast_nondominated_sort_equals_the_reference(dims: int, n: int, levels: int) -> None:
    """Random points on a coarse grid (many ties and exact duplicates), mixed max/min columns,
    a few NaN rows and infinities: the same fronts, in the same order, as the old sorter."""
    rng = np.random.default_rng(dims * 1000 + n)
    pts = rng.integers(0, levels, size=(n, dims)).astype(float)
    pts[rng.choice(n, 5, replace=False)] = pts[rng.choice(n, 5, replace=False)]  # exact duplicates
    pts[rng.choice(n, 3, replace=False), 0] = np.inf
    pts[rng.choice(n, 3, replace=False), -1] = np.nan
    maximize = tuple(bool(i % 2 == 0) for i in range(dims))
    fronts = nondominated_sort(pts.tolist(), maximize)
    assert fronts == _reference_sort(pts.tolist(), maximize)
    assert pareto_front(pts.tolist(), maximize) == fronts[0]
    assert nondominated_sort([], maximize) == [] and pareto_front([], maximize) == []
