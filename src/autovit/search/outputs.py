"""Files of a search run: best.json, pareto.json/csv, history.csv, plots and report.md."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from autovit.errors import AutovitError
from autovit.io_utils import atomic_write, atomic_write_text, save_json
from autovit.search.evolution import SearchResult
from autovit.search.impact import ModuleImpact
from autovit.search.state import Candidate

HISTORY_COLUMNS = ("index", "generation", "origin", "accuracy", "latency_ms", "params", "macs", "key")


def _num(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def candidate_summary(c: Candidate) -> dict[str, Any]:
    """A candidate as best.json / pareto.json show it (the arch JSON included)."""
    return {"key": c.key, "accuracy": c.accuracy, "latency_ms": _num(c.latency_ms), "params": c.params,
            "macs": c.macs, "generation": c.generation, "origin": c.origin, "arch": c.arch.to_dict()}


def _csv_text(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_history(path: Path, history: Sequence[Candidate]) -> Path:
    rows = [(i, c.generation, c.origin, f"{c.accuracy:.6g}", "" if math.isnan(c.latency_ms) else f"{c.latency_ms:.6g}",
             c.params, c.macs, c.key) for i, c in enumerate(history)]
    return atomic_write_text(path, _csv_text(rows, HISTORY_COLUMNS))


def write_best(path: Path, result: SearchResult, measured_ms: Mapping[str, float | None] | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
    """best.json: the winner's arch, predicted and measured latency, params, MACs, accuracy.

    `autovit export --arch best.json` and `Arch.load` read it directly (the arch is under 'arch').
    """
    if result.best is None:
        raise AutovitError("the search evaluated no candidate within the budgets")
    b = result.best
    measured = dict(measured_ms or {})
    per_budget = {f"{k:g}": None if v is None else {**candidate_summary(v), "measured_latency_ms": measured.get(v.key)}
                  for k, v in result.best_per_budget.items()}
    body = {"arch": b.arch.to_dict(), "key": b.key, "accuracy": b.accuracy,
            "latency_ms": {"predicted": _num(b.latency_ms), "measured": measured.get(b.key)},
            "params": b.params, "macs": b.macs, "generation": b.generation, "origin": b.origin,
            "objective": result.config.objective, "config": result.config.to_dict(),
            "evaluations": result.evaluations, "best_per_budget": per_budget, **dict(extra or {})}
    return save_json(path, body)


def write_pareto(out_dir: Path, result: SearchResult) -> tuple[Path, Path]:
    """pareto.json (both fronts + best per budget) and pareto.csv (one row per front point)."""
    body = {"accuracy_vs_latency": [candidate_summary(c) for c in result.pareto_latency],
            "accuracy_vs_params": [candidate_summary(c) for c in result.pareto_params],
            "best_per_budget": {f"{k:g}": None if v is None else candidate_summary(v)
                                for k, v in result.best_per_budget.items()}}
    rows = [(front, c.accuracy, _num(c.latency_ms), c.params, c.macs, c.key)
            for front, cands in (("latency", result.pareto_latency), ("params", result.pareto_params)) for c in cands]
    return (save_json(out_dir / "pareto.json", body),
            atomic_write_text(out_dir / "pareto.csv",
                              _csv_text(rows, ("front", "accuracy", "latency_ms", "params", "macs", "key"))))


def load_baselines(path: str | Path) -> list[dict[str, Any]]:
    """Reference models to draw on the plots: the JSON of `autovit bench --json` (its 'models') or a
    list of {name, latency_ms | median_ms, [accuracy | top1], [params]}."""
    path = Path(path)
    if not path.is_file():
        raise AutovitError(f"baselines file not found: {path}", hint="write it with `autovit bench ... --json > FILE`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AutovitError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    models = data.get("models") if isinstance(data, Mapping) else data
    if not isinstance(models, list):
        raise AutovitError(f"{path} holds no list of models", hint="expected `autovit bench --json` output")
    out = []
    for m in models:
        lat = m.get("latency_ms", m.get("median_ms")) if isinstance(m, Mapping) else None
        if lat is None:
            continue
        out.append({"name": str(m.get("name", "?")), "latency_ms": float(lat),
                    "accuracy": m.get("accuracy", m.get("top1")), "params": m.get("params")})
    return out


def _save_fig(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda p: fig.savefig(p, dpi=130, bbox_inches="tight", format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_search(path: Path, result: SearchResult, baselines: Sequence[Mapping[str, Any]] = (),
                extra_points: Mapping[str, Sequence[Candidate]] | None = None) -> Path:
    """search.png: see `search_figure`."""
    return _save_fig(search_figure(result, baselines, extra_points), path)


def search_figure(result: SearchResult, baselines: Sequence[Mapping[str, Any]] = (),
                  extra_points: Mapping[str, Sequence[Candidate]] | None = None) -> Any:
    """Accuracy vs predicted latency of every candidate (one colour per generation), the Pareto
    front, the budgets (their value above the top of their line) and baselines; the legend sits below the
    axes so it hides no point or label. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 5))
    hist = [c for c in result.history if not math.isnan(c.latency_ms)]
    if hist:
        gens = max(c.generation for c in hist) + 1
        cmap = plt.get_cmap("viridis", gens)  # one colour per generation
        norm = BoundaryNorm([g - 0.5 for g in range(gens + 1)], gens)
        sc = ax.scatter([c.latency_ms for c in hist], [c.accuracy for c in hist], c=[c.generation for c in hist],
                        cmap=cmap, norm=norm, s=12, alpha=0.7, label="evaluated")
        bar = fig.colorbar(sc, ax=ax, label="generation", boundaries=norm.boundaries)
        bar.locator = MaxNLocator(integer=True, nbins=min(gens, 10))  # integer ticks at the colour centres
        bar.update_ticks()
        front = result.pareto_latency
        ax.plot([c.latency_ms for c in front], [c.accuracy for c in front], "r-o", ms=4, lw=1.2,
                label="Pareto front (this search)")
    for name, cands in (extra_points or {}).items():
        pts = [c for c in cands if not math.isnan(c.latency_ms)]
        ax.scatter([c.latency_ms for c in pts], [c.accuracy for c in pts], s=14, marker="x", label=name)
    if result.best is not None and not math.isnan(result.best.latency_ms):
        ax.scatter([result.best.latency_ms], [result.best.accuracy], marker="*", s=220, c="gold",
                   edgecolors="k", zorder=5, label="best")
    budgets = list(result.config.budgets_ms) or ([result.config.latency_budget_ms]
                                                 if result.config.latency_budget_ms else [])
    for i, b in enumerate(budgets):
        ax.axvline(b, color="gray", ls="--", lw=0.8, label="latency budget" if i == 0 else None)
        # The value sits just above the axes, over its line: clear of the points, the legend and the title.
        ax.annotate(f"{b:g} ms", (b, 1), xycoords=("data", "axes fraction"), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=7, color="dimgray")
    for m in baselines:
        if m.get("accuracy") is not None:
            ax.scatter([m["latency_ms"]], [m["accuracy"]], marker="s", s=40, c="k")
            ax.annotate(m["name"], (m["latency_ms"], m["accuracy"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        else:
            ax.axvline(m["latency_ms"], color="k", ls=":", lw=0.9)
            ax.annotate(m["name"], (m["latency_ms"], 0), xycoords=("data", "axes fraction"), fontsize=7,
                        rotation=90, xytext=(2, 4), textcoords="offset points")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("accuracy (top-1 %, inherited weights)")
    ax.set_title("Fine search: accuracy vs latency", pad=14 if budgets else 6)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False)
    return fig


def plot_coarse(path: Path, cloud: Mapping[str, Sequence[Any]], result: SearchResult) -> Path:
    """The coarse stage's sampled archs: predicted latency vs params, feasible ones highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lat = [float("nan") if v is None else v for v in cloud.get("latency_ms", [])]
    params = [p / 1e6 for p in cloud.get("params", [])]
    ok = list(cloud.get("feasible", []))
    for flag, color, label in ((False, "lightgray", "over budget"), (True, "tab:blue", "within budget")):
        xs = [x for x, f in zip(lat, ok) if f == flag]
        ys = [y for y, f in zip(params, ok) if f == flag]
        if xs:
            ax.scatter(xs, ys, s=4, c=color, alpha=0.6, label=label)
    cfg = result.config
    if cfg.max_latency_ms is not None:
        ax.axvline(cfg.max_latency_ms, color="r", ls="--", lw=1, label="latency budget")
    if cfg.params_budget is not None:
        ax.axhline(cfg.params_budget / 1e6, color="m", ls="--", lw=1, label="params budget")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("params (M)")
    c = result.coarse
    ax.set_title(f"Coarse stage: {c.get('feasible', '?')} of {c.get('unique', '?')} sampled archs within budget")
    ax.legend(fontsize=7, markerscale=3)
    return _save_fig(fig, path)


def write_impact(out_dir: Path, rows: Sequence[ModuleImpact]) -> Path:
    return save_json(out_dir / "impact.json", [r.to_dict() for r in rows])


def impact_markdown(rows: Sequence[ModuleImpact]) -> str:
    lines = ["| module | removed | ΔA (points) | ΔL (ms) | L_impact (points/ms) |", "|---|---|---:|---:|---:|"]
    for r in rows:
        imp = "n/a" if math.isnan(r.impact) else f"{r.impact:.3f}"
        lines.append(f"| {r.module} | {r.removed} | {r.delta_accuracy:.2f} | {r.delta_latency_ms:.3f} | {imp} |")
    return "\n".join(lines)


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def write_report(path: Path, result: SearchResult, measured_ms: Mapping[str, float | None] | None = None,
                 impact: Sequence[ModuleImpact] = (), comparison: Sequence[Mapping[str, Any]] = (),
                 notes: Sequence[str] = ()) -> Path:
    """report.md: settings, coarse and fine summaries, the winner, fronts, impact and comparison."""
    cfg, b, measured = result.config, result.best, dict(measured_ms or {})
    budget = []
    if cfg.latency_budget_ms is not None:
        budget.append(f"latency <= {cfg.latency_budget_ms:g} ms")
    if cfg.budgets_ms:
        budget.append("sweep " + ", ".join(f"{x:g} ms" for x in cfg.budgets_ms))
    if cfg.params_budget is not None:
        budget.append(f"params <= {cfg.params_budget / 1e6:.3g}M")
    if cfg.macs_budget is not None:
        budget.append(f"MACs <= {cfg.macs_budget / 1e6:.4g}M")
    c, t = result.coarse, result.timing
    lines = [
        "# AutoViT search report", "",
        f"Objective **{cfg.objective}**, budgets: {', '.join(budget) or 'none'}; seed {cfg.seed}.", "",
        "## Coarse stage (latency table + closed-form params, no network built)", "",
        f"{c.get('sampled')} archs sampled ({c.get('unique')} unique), {c.get('within_params')} within the "
        f"params/MACs budget, {c.get('feasible')} within every budget; the top {c.get('skeletons')} "
        f"(ranked by {cfg.coarse_ranking}) seed the evolution. Wall time {t.get('coarse_s', 0):.1f} s. "
        "See `coarse_cloud.png`.", "",
        "## Fine stage (evolution, inherited-weight accuracy)", "",
        f"Population {cfg.population}, {cfg.generations} generations, top {cfg.parents} parents, "
        f"P_d {cfg.p_depth}, P_m {cfg.p_block}, P_c {cfg.p_crossover}: {result.evaluations} candidates evaluated "
        f"in {t.get('fine_s', 0):.1f} s. Every candidate is in `history.csv`; see `search.png`.", "",
    ]
    if b is not None:
        lines += ["## Winner (`best.json`)", "",
                  "| accuracy (%) | predicted latency (ms) | measured latency (ms) | params (M) | MACs (M) |",
                  "|---:|---:|---:|---:|---:|",
                  f"| {b.accuracy:.2f} | {_fmt_ms(b.latency_ms)} | {_fmt_ms(measured.get(b.key))} | "
                  f"{b.params / 1e6:.3f} | {b.macs / 1e6:.1f} |", "", f"`{b.key}`", ""]
    if result.best_per_budget:
        lines += ["## Best per latency budget (one population)", "",
                  "| budget (ms) | accuracy (%) | predicted (ms) | measured (ms) | params (M) |",
                  "|---:|---:|---:|---:|---:|"]
        for k, v in result.best_per_budget.items():
            lines.append(f"| {k:g} | - | - | - | - |" if v is None else
                         f"| {k:g} | {v.accuracy:.2f} | {_fmt_ms(v.latency_ms)} | {_fmt_ms(measured.get(v.key))} | "
                         f"{v.params / 1e6:.3f} |")
        lines.append("")
    lines += ["## Pareto front: accuracy vs predicted latency (`pareto.json`, `pareto.csv`)", "",
              "| accuracy (%) | latency (ms) | params (M) |", "|---:|---:|---:|"]
    lines += [f"| {x.accuracy:.2f} | {_fmt_ms(x.latency_ms)} | {x.params / 1e6:.3f} |" for x in result.pareto_latency]
    lines.append("")
    if impact:
        lines += ["## Latency impact of the winner's modules (Eq. 7, `impact.json`)", "", impact_markdown(impact), ""]
    if comparison:
        lines += ["## Comparison", "",
                  "| method | accuracy (%) | predicted (ms) | measured (ms) | params (M) | MACs (M) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in comparison:
            acc = row.get("accuracy")
            acc_text = "-" if acc is None else f"{acc:.2f}"
            lines.append(f"| {row['name']} | {acc_text} | {_fmt_ms(row.get('latency_ms'))} | "
                         f"{_fmt_ms(row.get('measured_ms'))} | {row['params'] / 1e6:.3f} | {row['macs'] / 1e6:.1f} |")
        lines.append("")
    lines += [f"- {n}" for n in notes]
    return atomic_write_text(path, "\n".join(lines).rstrip() + "\n")


def write_outputs(out_dir: str | Path, result: SearchResult, cloud: Mapping[str, Sequence[Any]] | None = None,
                  measured_ms: Mapping[str, float | None] | None = None,
                  impact: Sequence[ModuleImpact] | None = None, baselines: Sequence[Mapping[str, Any]] = (),
                  comparison: Sequence[Mapping[str, Any]] = (),
                  extra_points: Mapping[str, Sequence[Candidate]] | None = None,
                  notes: Sequence[str] = (), best_extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Writes every output file of a run into `out_dir`; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"history": write_history(out / "history.csv", result.history)}
    files["pareto_json"], files["pareto_csv"] = write_pareto(out, result)
    if result.best is not None:
        files["best"] = write_best(out / "best.json", result, measured_ms, best_extra)
    files["search_plot"] = plot_search(out / "search.png", result, baselines, extra_points)
    if cloud:
        files["coarse_plot"] = plot_coarse(out / "coarse_cloud.png", cloud, result)
    if impact is not None:
        files["impact"] = write_impact(out, impact)
    files["report"] = write_report(out / "report.md", result, measured_ms, impact or (), comparison, notes)
    return files
