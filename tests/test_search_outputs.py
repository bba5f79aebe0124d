"""Run-folder outputs, baselines, Eq. 7 impact and distributed evaluation with 2 gloo processes."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch.multiprocessing as mp

from autovit.search import SearchConfig, random_search, search
from autovit.search.baselines import flops_constrained_search
from autovit.search.impact import latency_impact, removals
from autovit.search.outputs import load_baselines, write_outputs
from search_toys import MacsLatency, params_accuracy, tiny_space

CFG = SearchConfig(latency_budget_ms=1.3, budgets_ms=(1.2, 1.3), coarse_samples=500, coarse_top_k=8, population=8,
                   generations=3, parents=4)


def test_run_folder_files(tmp_path) -> None:
    space, lat = tiny_space(), MacsLatency()
    res = search(space, params_accuracy, lat, CFG, out_dir=tmp_path)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"models": [{"name": "mobilevit_xxs", "median_ms": 1.25, "params": 1.3e6},
                                            {"name": "no-latency", "median_ms": None}]}))
    base = load_baselines(bench)
    assert base == [{"name": "mobilevit_xxs", "latency_ms": 1.25, "accuracy": None, "params": 1.3e6}]
    impact = latency_impact(res.best.arch, space, params_accuracy, lambda a: float(lat.predict([a])[0]))
    files = write_outputs(tmp_path, res, res.cloud, {res.best.key: 0.9}, impact, base)
    rows = list(csv.DictReader(open(files["history"])))
    assert len(rows) == res.evaluations == 24 and rows[0]["origin"] == "coarse"
    best = json.loads(files["best"].read_text())
    assert space.parse_arch(files["best"]) == res.best.arch  # best.json is a valid --arch input
    assert best["latency_ms"] == {"predicted": res.best.latency_ms, "measured": 0.9}
    assert set(best["best_per_budget"]) == {"1.2", "1.3"}
    pareto = json.loads(files["pareto_json"].read_text())
    assert [p["key"] for p in pareto["accuracy_vs_latency"]] == [c.key for c in res.pareto_latency]
    assert len(list(csv.DictReader(open(files["pareto_csv"])))) == len(res.pareto_latency) + len(res.pareto_params)
    report = files["report"].read_text()
    assert "## Winner" in report and "Eq. 7" in report and "Best per latency budget" in report
    for key in ("search_plot", "coarse_plot"):
        assert files[key].stat().st_size > 1000


def test_latency_impact_matches_eq7() -> None:
    space = tiny_space()
    arch = space.largest()
    acc = lambda a: float(sum(s.depth for s in a.transformer))  # noqa: E731
    lat = lambda a: 0.5 * len(a.transformer) + 0.1 * sum(s.depth for s in a.mbconv)  # noqa: E731
    rows = {r.module: r for r in latency_impact(arch, space, acc, lat)}
    assert {m for m, _, _ in removals(arch, space)} == set(rows)
    assert rows["transformer3"].delta_accuracy in (1.0, 2.0)
    assert math.isnan(rows["transformer1"].impact)  # removing a layer there saves no (modelled) time
    assert rows["mbconv2"].delta_latency_ms == pytest.approx(0.1) and rows["mbconv2"].impact == 0.0


def test_baselines_use_the_same_framework() -> None:
    space, lat = tiny_space(), MacsLatency()
    res = search(space, params_accuracy, lat, CFG)
    rnd = random_search(space, params_accuracy, lat, CFG, res.evaluations)
    assert rnd.evaluations == res.evaluations and all(c.latency_ms <= 1.3 for c in rnd.history)
    assert len({c.key for c in rnd.history}) == rnd.evaluations
    flops = flops_constrained_search(space, params_accuracy, lat, CFG, res.best.macs)
    assert flops.config.latency_budget_ms is None and all(c.macs <= res.best.macs for c in flops.history)


def _worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    calls: list[str] = []

    def acc(arch):
        calls.append(arch.key())
        return params_accuracy(arch)

    cfg = SearchConfig(latency_budget_ms=1.3, coarse_samples=300, coarse_top_k=5, population=5, generations=2,
                       parents=2)
    res = search(tiny_space(), acc, MacsLatency(), cfg)
    queue.put((rank, [(c.key, c.accuracy) for c in res.history], len(calls)))
    dist.destroy_process_group()


def test_two_gloo_processes_split_the_evaluations() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # no re-import of torch in the children
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    cfg = SearchConfig(latency_budget_ms=1.3, coarse_samples=300, coarse_top_k=5, population=5, generations=2,
                       parents=2)
    single = [(c.key, c.accuracy) for c in search(tiny_space(), params_accuracy, MacsLatency(), cfg).history]
    assert results[0][1] == results[1][1] == single
    assert results[0][2] + results[1][2] == len(single)  # each candidate evaluated on exactly one rank
    assert (results[0][2], results[1][2]) == (6, 4)  # 5 candidates a generation: rank 0 takes 3, rank 1 takes 2


def test_search_plot_budget_labels_clear_of_the_legend_and_discrete_generations(tmp_path) -> None:
    """Every budget line carries a label that no legend covers, and the colour bar has exactly one
    colour per generation (a BoundaryNorm), with integer ticks."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm

    from autovit.search.outputs import search_figure

    res = search(tiny_space(), params_accuracy, MacsLatency(), CFG)
    base = [{"name": "mobilevit_xxs", "latency_ms": 1.25, "accuracy": None}]
    fig = search_figure(res, base)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().endswith(" ms")]
    assert sorted(t.get_text() for t in labels) == ["1.2 ms", "1.3 ms"]
    assert "latency budget" in [h.get_label() for h in ax.get_legend().legend_handles]
    legend = ax.get_legend().get_window_extent(renderer)
    title = ax.title.get_window_extent(renderer)
    axes = ax.get_window_extent(renderer)
    for t in labels:  # above the axes, under the title, centred on its line
        box = t.get_window_extent(renderer)
        assert not box.overlaps(legend) and not box.overlaps(title) and box.y0 >= axes.y1, t.get_text()
        x_line = ax.transData.transform((float(t.get_text().split()[0]), 0))[0]
        assert abs((box.x0 + box.x1) / 2 - x_line) < 1.0
    name = next(t for t in ax.texts if t.get_text() == "mobilevit_xxs").get_window_extent(renderer)
    assert not name.overlaps(legend) and axes.contains(*name.get_points().mean(axis=0))
    points = ax.collections[0]
    assert isinstance(points.norm, BoundaryNorm) and points.norm.Ncmap == CFG.generations
    ticks = fig.axes[1].get_yticks()
    assert all(float(t).is_integer() for t in ticks)
    plt.close(fig)
