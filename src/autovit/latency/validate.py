"""Validating a latency model on held-out measured subnets (paper Fig. 6), with ablations.

Metrics follow nn-Meter's definitions: MAPE, RMSPE, max error, share within +-5% / +-10%
(``mean(|p - y| / y <= t)``), plus Kendall tau and Spearman rho. The re-test noise floor is the
same metrics between two timing passes of the same subnets. Ablations: the raw table sum, one
table scale instead of one per block kind, a linear MACs model (MACs + intercept, NNLS), FLOPs /
params as proxies (rank correlation only: they have no time unit) and, on request (`mlp=True`,
`latency validate --mlp-ablation`; it takes minutes), a HAT-style MLP trained on the same measured
subnets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from autovit.arch import Arch
from autovit.costs import count_macs, count_params
from autovit.errors import AutovitError
from autovit.latency.measure import MeasureConfig, MeasureLog
from autovit.latency.predictor import MACS_TERM, RAW_SUM, SIMPLE_FEATURES, LatencyModel
from autovit.latency.profile import Progress, reference_runner, sample_distinct, subnet_runners, time_subnets
from autovit.space import SearchSpace


def error_metrics(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """Relative-error and rank metrics of predictions against measurements."""
    p, y = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    rel = (p - y) / y
    return {
        "mape": float(np.mean(np.abs(rel)) * 100), "rmspe": float(np.sqrt(np.mean(rel ** 2)) * 100),
        "max_error": float(np.max(np.abs(rel)) * 100), "bias": float(np.mean(rel) * 100),
        "within_5": float(np.mean(np.abs(rel) <= 0.05) * 100), "within_10": float(np.mean(np.abs(rel) <= 0.10) * 100),
        **rank_metrics(p, y),
    }


def rank_metrics(score: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    return {"kendall_tau": float(kendalltau(score, true).statistic),
            "spearman_rho": float(spearmanr(score, true).statistic)}


def _searched(kind: Any, choices: Any) -> list[str]:
    """The gene fields of a stage slot in the encoding: all paper fields, and a later (defaulted)
    field only where the space searches it (so encodings of spaces without it are unchanged)."""
    return [f.name for f in kind.fields if f.default is None or len(getattr(choices, f.name)) > 1]


def arch_vector(arch: Arch, space: SearchSpace) -> list[float]:
    """HAT-style architecture encoding: every searched number, zero for absent stages."""
    v: list[float] = [arch.stem_width, arch.head_width, arch.num_transformer_stages]
    for s, c in zip(arch.mbconv, space.mbconv):
        v += [getattr(s, f) for f in _searched(space.conv_kind, c)]
    for i, c in enumerate(space.transformer):
        s = arch.transformer[i] if i < arch.num_transformer_stages else None
        v += [getattr(s, f) if s else 0 for f in _searched(space.attention_kind, c)]
    return [float(x) for x in v]


def mlp_predictor(space: SearchSpace, archs: Sequence[Arch], y: Sequence[float], seed: int = 0) -> Callable:
    """A HAT-style MLP (3 x 400 hidden, standardised inputs) trained on measured subnets."""
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.array([arch_vector(a, space) for a in archs])
    scale = float(np.mean(y))
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(400, 400, 400), max_iter=5000, random_state=seed,
                                                       learning_rate_init=1e-3, tol=1e-7))
    reg.fit(X, np.asarray(y) / scale)
    return lambda batch: reg.predict(np.array([arch_vector(a, space) for a in batch])) * scale


def fit_data(model: LatencyModel) -> tuple[list[Arch], np.ndarray]:
    """The measured fitting subnets stored with a fitted table."""
    fit = (model.table.model or {}).get("fit")
    if not fit:
        raise AutovitError("this latency table has no fitted model (no measured fitting subnets)",
                           hint="build it with `autovit latency profile` (which measures and fits subnets)")
    layout = model.layout
    return [Arch.from_dict(a, layout) for a in fit["archs"]], np.asarray(fit["ratio"], dtype=float)


def prediction_rows(model: LatencyModel, space: SearchSpace, archs: Sequence[Arch], truth: np.ndarray,
                    mlp: bool = True, progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Metrics of the model and of every ablation on the same held-out subnets (ratio units); `mlp`
    adds the HAT-style MLP (slow; `progress` gets phase 'ablation: HAT MLP', 0/1 then 1/1)."""
    rows = {"latency_model": error_metrics(model.predict_ratio(archs), truth)}
    rows["raw_table_sum"] = error_metrics(LatencyModel(model.table, RAW_SUM).predict_ratio(archs), truth)
    try:
        fit_archs_, fit_y = fit_data(model)
    except AutovitError:
        fit_archs_ = []
    if fit_archs_:
        simple = LatencyModel.fit(model.table, fit_archs_, fit_y, SIMPLE_FEATURES)
        rows["single_table_scale"] = error_metrics(simple.predict_ratio(archs), truth)
        macs = LatencyModel.fit(model.table, fit_archs_, fit_y, (MACS_TERM, "intercept"))
        rows["macs_linear"] = error_metrics(macs.predict_ratio(archs), truth)
        if mlp:
            if progress:
                progress("ablation: HAT MLP", 0, 1)
            rows["hat_mlp"] = error_metrics(mlp_predictor(space, fit_archs_, fit_y)(archs), truth)
            rows["hat_mlp"]["trained_on"] = len(fit_archs_)
            if progress:
                progress("ablation: HAT MLP", 1, 1)
    rows["flops_proxy"] = rank_metrics([count_macs(a) for a in archs], truth)
    rows["params_proxy"] = rank_metrics([count_params(a) for a in archs], truth)
    return rows


def run_validation(model: LatencyModel, space: SearchSpace, samples: int = 50, seed: int = 1,
                   config: MeasureConfig = MeasureConfig(), progress: Progress | None = None,
                   groups: Mapping[str, Sequence[Arch]] | None = None, log: MeasureLog | None = None,
                   mlp_ablation: bool = False) -> dict[str, Any]:
    """Measures `samples` random held-out subnets twice and scores the model and the ablations
    (with `mlp_ablation`, also the HAT-style MLP, which takes minutes to train); `groups` (e.g.
    `extreme_subnets`, `near_budget_subnets`) are measured in the same passes and scored
    separately (`report['groups']`), the headline metrics staying those of the random ones.

    With a `log` (see `validation_log`), the timings are checkpointed and reused by a rerun."""
    try:
        exclude, _ = fit_data(model)
    except AutovitError:
        exclude = []
    archs = sample_distinct(space, samples, seed + 1000, exclude)
    res = model.table.resolution
    archs = [a.replace(resolution=res) for a in archs]
    extra = [(name, a.replace(resolution=res)) for name, group in (groups or {}).items() for a in group]
    runners = subnet_runners(archs + [a for _, a in extra], config, model.table.num_classes, progress)
    ref = reference_runner(config, res)
    first = time_subnets(archs + [a for _, a in extra], runners, ref, config, progress, log, "first_pass")
    second = time_subnets(archs + [a for _, a in extra], runners, ref, config, progress, log, "second_pass")
    all_truth = (first.ratio + second.ratio) / 2
    group_report = _group_metrics(model, extra, all_truth[len(archs):])
    n = len(archs)
    first, second = _head(first, n), _head(second, n)
    truth = all_truth[:n]
    rows = prediction_rows(model, space, archs, truth, mlp=mlp_ablation, progress=progress)
    noise = error_metrics(second.ratio, first.ratio)
    ref_ms = (first.reference_ms + second.reference_ms) / 2
    return {
        "space": space.name, "samples": samples, "seed": seed, "held_out_disjoint_from_fit": True,
        "metrics": rows["latency_model"], "retest_noise": noise, "ablations": rows,
        "error_over_noise": rows["latency_model"]["mape"] / max(noise["mape"], 1e-9),
        "reference_ms_now": ref_ms, "reference_ms_table": model.table.reference_ms,
        "reference_spread": max(first.reference_spread, second.reference_spread),
        "measured_ratio": truth.tolist(), "measured_ms": ((first.ms + second.ms) / 2).tolist(),
        "first_pass_ratio": first.ratio.tolist(), "second_pass_ratio": second.ratio.tolist(),
        "predicted_ratio": model.predict_ratio(archs).tolist(),
        "predicted_raw_ratio": LatencyModel(model.table, RAW_SUM).predict_ratio(archs).tolist(),
        "archs": [a.key() for a in archs], "groups": group_report,
    }


def validation_log(path: str | Path, model: LatencyModel, space: SearchSpace, samples: int, seed: int,
                   config: MeasureConfig, groups: Mapping[str, Sequence[Arch]] | None = None) -> MeasureLog:
    """The checkpoint of `run_validation` at `path`, keyed by the table, the held-out sample, the
    extra subnet groups and the measurement settings (a changed table or seed starts over)."""
    import hashlib
    import json
    from dataclasses import asdict

    table = hashlib.sha1(json.dumps(model.table.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    res = model.table.resolution
    settings = {"what": "latency validate", "table": table, "space": space.to_dict(), "samples": samples,
                "seed": seed,
                "groups": {name: [a.key() for a in group] for name, group in (groups or {}).items()}, "config": {k: v for k, v in asdict(config).items() if k != "cache_dir"},
                "fingerprint": config.fingerprint(res)}
    return MeasureLog(path, settings)


def _head(times: Any, n: int) -> Any:
    """The first `n` subnets of a `SubnetTimes`."""
    from dataclasses import replace

    return replace(times, archs=times.archs[:n], ratio=times.ratio[:n], ms=times.ms[:n], iqr_ms=times.iqr_ms[:n])


def _group_metrics(model: LatencyModel, extra: Sequence[tuple[str, Arch]], truth: np.ndarray) -> dict[str, Any]:
    """Error of the model on each named group of extra subnets (too few points for rank metrics)."""
    out: dict[str, Any] = {}
    pred = model.predict_ratio([a for _, a in extra]) if extra else np.zeros(0)
    for name in dict.fromkeys(n for n, _ in extra):
        idx = [i for i, (n, _) in enumerate(extra) if n == name]
        rel = (pred[idx] - truth[idx]) / truth[idx]
        out[name] = {"n": len(idx), "mape": float(np.mean(np.abs(rel)) * 100),
                     "max_error": float(np.max(np.abs(rel)) * 100), "bias": float(np.mean(rel) * 100),
                     "archs": [extra[i][1].key() for i in idx], "predicted_ratio": pred[idx].tolist(),
                     "measured_ratio": truth[idx].tolist()}
    return out


def extreme_subnets(space: SearchSpace) -> list[Arch]:
    """The corners of the space, where searches land: every combination of narrowest / widest
    choices (widths, expansions, kernels, heads, MLP ratios), shallowest / deepest stages and
    fewest / most transformer stages (smallest and largest included), those the space allows."""
    import itertools

    def corner(kind: Any, choices: Any, width: Any, depth: Any) -> Any:
        return kind.make(**{f: (depth if f == kind.depth_field else width)(getattr(choices, f))
                            for f in kind.field_names})

    out: list[Arch] = []
    for width, depth, stages in itertools.product((min, max), repeat=3):
        try:
            arch = Arch(resolution=space.resolution[0], stem_width=width(space.stem_width),
                        mbconv=tuple(corner(space.conv_kind, c, width, depth) for c in space.mbconv),
                        transformer=tuple(corner(space.attention_kind, c, width, depth)
                                          for c in space.transformer[:stages(space.num_transformer_stages)]),
                        head_width=width(space.head_width), layout=space.layout)
            space.validate(arch)
        except AutovitError:
            continue
        if arch not in out:
            out.append(arch)
    return out


def near_budget_subnets(model: LatencyModel, space: SearchSpace, budget_ratio: float, n: int = 6,
                        seed: int = 2, pool: int = 3000) -> list[Arch]:
    """`n` distinct random subnets predicted just under `budget_ratio` (reference units): the
    archs a search under that budget returns."""
    import random

    rng = random.Random(seed)
    res = model.table.resolution
    archs = list({a.key(): a for a in (space.sample(rng).replace(resolution=res) for _ in range(pool))}.values())
    ratio = model.predict_ratio(archs)
    under = [i for i in np.argsort(-ratio) if ratio[i] <= budget_ratio]
    return [archs[i] for i in under[:n]]


def plot_validation(report: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Scatter of predicted vs measured latency (ms at the current reference time), y = x, +-10%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = report["reference_ms_now"]
    y = np.asarray(report["measured_ratio"]) * ref
    p = np.asarray(report["predicted_ratio"]) * ref
    raw = np.asarray(report["predicted_raw_ratio"]) * ref
    lo, hi = min(y.min(), p.min()) * 0.9, max(y.max(), p.max(), raw.max()) * 1.05
    fig, ax = plt.subplots(figsize=(5.5, 5))
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.15, label="+-10%")
    m = report["metrics"]
    ax.scatter(y, p, s=18, color="tab:blue", zorder=3,
               label=f"LUT + Eq. 6 (MAPE {m['mape']:.1f}%, tau {m['kendall_tau']:.2f})")
    r = report["ablations"]["raw_table_sum"]
    ax.scatter(y, raw, s=12, marker="x", color="tab:red", alpha=0.7, label=f"raw table sum (MAPE {r['mape']:.1f}%)")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title or f"{report['space']}: {report['samples']} held-out subnets", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
