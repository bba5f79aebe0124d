"""Issue 13 method comparison: latency-aware search vs random search vs FLOPs-constrained search,
judged by the winners trained alone on the test split.

Per seed (>= 3), three search units on the same supernet (benchmarks/supernet_ranking.py, choice
`--supernet-choice`) and the same evaluator (inherited top-1 on 5,000 held-out training images,
BN recalibrated):
- `search_latency_sN`: coarse-to-fine search of the XXS space under the deployment latency budget
  (`--budget-ms` in units of luts/xxs_ort_1t_256.json, 256 px; default 30 ms = mobilevit_xxs
  measured on the table's machine, benchmarks/results/search_cifar10.md);
- `search_random_sN`: random search, same budget, same number of evaluations (search/baselines.py);
- `search_flops_sN`: the same search under MACs <= the latency-aware winner's MACs (deployment
  MACs, 1000-class head) and no latency budget.
Candidates are deployment archs; accuracy is measured on their CIFAR proxy (same choices, xxs_cifar
layout at 32 px). Then one unit per winner (`train_<method>_sN`): trained alone with the ranking
study's recipe (training seed N), top-1 and per-image correctness on the full test split. And,
on a quiet CPU, `latency_sN` (`--kinds latency`): the seed's three winners timed at 256 px paired
with the table's reference network -- does each keep the budget, and how far off was the prediction.

Report: per method, inherited and standalone top-1 over seeds; latency-aware vs each baseline,
paired on the same test images (pooled over seeds: difference with paired-bootstrap 95% CI, exact
McNemar p) and over seeds (paired t).

    python benchmarks/method_comparison.py --seeds 0 1 2 --max-units 2    # CPU: ~25 min per search, ~18 per training
    python benchmarks/method_comparison.py --seeds 0 --kinds search         # searches only (while the supernet is here)
    python benchmarks/method_comparison.py --seeds 3 4 --methods latency random   # more seeds (the report covers every seed with units)
    python benchmarks/method_comparison.py --seeds 0 1 2 --kinds latency   # quiet machine, ~1 min per seed
    python benchmarks/method_comparison.py --report
    python benchmarks/method_comparison.py --profile smoke --seeds 0
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

import _evidence as ev
from _log import log

STUDY = "method_comparison"
METHODS = {"latency": "latency-aware search (ours)", "random": "random search", "flops": "FLOPs-constrained search"}


class SearchContext:
    """The supernet, evaluator, space and latency model shared by every search unit (built once)."""

    def __init__(self, profile: ev.Profile, choice: str, data_dir: str) -> None:
        self.profile, self.choice, self.data_dir = profile, choice, data_dir
        self._built: tuple[Any, Any] | None = None

    def accuracy_fn(self) -> Callable[[Any], float]:
        if self._built is None:
            import supernet_ranking

            supernet, trainer, data = supernet_ranking.trained_supernet(self.profile, self.choice, self.data_dir)
            self._built = (ev.subnet_evaluator(self.profile, supernet, trainer, data), data)
        evaluator = self._built[0]
        return lambda arch: evaluator(ev.XXS.to_proxy(arch))


def search_config(profile: ev.Profile, budget_ms: float, seed: int, coarse_samples: int) -> Any:
    from autovit.search import SearchConfig

    return SearchConfig(latency_budget_ms=budget_ms, population=profile.population, generations=profile.generations,
                        parents=profile.parents, coarse_samples=coarse_samples, coarse_top_k=profile.population,
                        num_classes=1000, seed=seed)


def run_search(ctx: SearchContext, method: str, seed: int, budget_ms: float, coarse_samples: int,
               cache: ev.UnitCache) -> dict[str, Any]:
    from autovit.search import flops_constrained_search, random_search
    from autovit.search.evolution import EvolutionarySearch

    space, lat = ev.XXS.deploy_space(), ev.XXS.latency_model()
    cfg = search_config(ctx.profile, budget_ms, seed, coarse_samples)
    acc = ctx.accuracy_fn()
    out = ev.run_dir(STUDY, ctx.profile, f"search_{method}_s{seed}")
    progress = ev.search_progress(f"search {method} s{seed}", log)
    if method == "latency":
        result = EvolutionarySearch(space, acc, lat, cfg, out, progress=progress).run(resume=ev.resume_search(out))
    else:
        ours = cache.run(f"search_latency_s{seed}", lambda: run_search(ctx, "latency", seed, budget_ms,
                                                                        coarse_samples, cache), log)
        if method == "random":
            result = random_search(space, acc, lat, cfg, ours["evaluations"])
        else:
            result = flops_constrained_search(space, acc, lat, cfg, ours["winner"]["macs"], out,
                                              resume=ev.resume_search(out), progress=progress)
    b = result.best
    log(f"search {method} seed {seed}: {b.accuracy:.2f}% inherited, {b.latency_ms:.2f} ms predicted")
    return {"method": method, "seed": seed, "budget_ms": budget_ms, "supernet_choice": ctx.choice,
            "settings": cfg.to_dict(), "evaluations": result.evaluations,
            "val_images": ctx.profile.val_images, "eval_dtype": ctx.profile.eval_dtype,
            "winner": {"deploy_arch": b.arch.to_dict(), "proxy_arch": ev.XXS.to_proxy(b.arch).to_dict(), "key": b.key,
                       "inherited_val_top1": b.accuracy, "predicted_ms": b.latency_ms, "params": b.params,
                       "macs": b.macs, "within_budget_predicted": b.latency_ms <= budget_ms}}


def run_training(profile: ev.Profile, search: dict[str, Any], data_dir: str) -> dict[str, Any]:
    from autovit.data import build_datasets
    from autovit.model import AutoViT
    from autovit.train.trainer import seed_everything

    seed = search["seed"]
    cfg = ev.train_config(profile, data_dir, seed, max_steps=profile.standalone_steps)
    data = build_datasets(cfg)
    seed_everything(seed)
    arch = ev.load_arch(search["winner"]["proxy_arch"])
    model = AutoViT(arch, num_classes=data.num_classes)
    out = ev.run_dir(STUDY, profile, f"train_{search['method']}_s{seed}", arch)
    res = ev.train_standalone(model, cfg, data, out, ev.limited(data.val, profile.val_images),
                              ev.limited(data.test, profile.test_images), log)
    return {"method": search["method"], "seed": seed, "key": search["winner"]["key"], "config": cfg.to_dict(), **res}


def run_latency(cache: ev.UnitCache, seed: int, rounds: int) -> dict[str, Any]:
    """Does each winner of `seed` keep the budget on this CPU? Each timed at 256 px (onnxruntime, 1
    thread) paired call by call with the table's reference network, as the ratio the budget and the
    prediction are expressed in (the table's ms are its ratios times the reference's ms then)."""
    from autovit.arch import Arch
    from autovit.search.budget import OnnxTimer

    lat, space = ev.XXS.latency_model(), ev.XXS.deploy_space()
    searches = {m: cache.load(f"search_{m}_s{seed}") for m in METHODS}
    archs = {m: space.validate(Arch.from_dict(u["winner"]["deploy_arch"])) for m, u in searches.items() if u}
    times = OnnxTimer(space.resolution[0], rounds=rounds)(archs)
    rows = {}
    for m, u in searches.items():
        if u is None:
            continue
        budget_ratio = u["budget_ms"] / lat.reference_ms
        predicted = u["winner"]["predicted_ms"] / lat.reference_ms
        rows[m] = {"key": u["winner"]["key"], "measured_ratio": times.ratio[m], "measured_ms": times.ms[m],
                   "ratio_spread": times.ratio_spread.get(m), "predicted_ratio": predicted,
                   "prediction_error_pct": 100 * (predicted / times.ratio[m] - 1), "budget_ratio": budget_ratio,
                   "within_budget_measured": times.ratio[m] <= budget_ratio}
        log(f"seed {seed} {m}: measured {times.ratio[m]:.3f}x the reference ({times.ms[m]:.2f} ms), predicted "
            f"{predicted:.3f}x, budget {budget_ratio:.3f}x")
    return {"seed": seed, "resolution": space.resolution[0], "backend": "onnxruntime", "threads": 1, "rounds": rounds,
            "reference_ms_now": times.reference_ms, "reference_spread": times.reference_spread,
            "reference_ms_table": lat.reference_ms, "winners": rows}


def summary(profile: ev.Profile, seeds: list[int]) -> dict[str, Any]:
    cache = ev.UnitCache(ev.results_dir(STUDY, profile))
    per_method: dict[str, Any] = {}
    for m in METHODS:
        searches = {s: cache.load(f"search_{m}_s{s}") for s in seeds}
        trains = {s: cache.load(f"train_{m}_s{s}") for s in seeds}
        per_method[m] = {
            "seeds_searched": [s for s, u in searches.items() if u], "seeds_trained": [s for s, u in trains.items() if u],
            "inherited_val_top1": {s: u["winner"]["inherited_val_top1"] for s, u in searches.items() if u},
            "predicted_ms": {s: u["winner"]["predicted_ms"] for s, u in searches.items() if u},
            "params": {s: u["winner"]["params"] for s, u in searches.items() if u},
            "test_top1": {s: u["full"]["test_top1"] for s, u in trains.items() if u},
            "measured": {s: u["winners"][m] for s in seeds if (u := cache.load(f"latency_s{s}")) and m in u["winners"]},
        }
    comparisons = {}
    for other in ("random", "flops"):
        both = [s for s in seeds if cache.load(f"train_latency_s{s}") and cache.load(f"train_{other}_s{s}")]
        if not both:
            continue
        a = [cache.load(f"train_latency_s{s}")["full"] for s in both]
        b = [cache.load(f"train_{other}_s{s}")["full"] for s in both]
        ca = np.concatenate([ev.unpack_bools(x["test_correct"], x["test_images"]) for x in a])
        cb = np.concatenate([ev.unpack_bools(x["test_correct"], x["test_images"]) for x in b])
        comparisons[other] = {"seeds": both, "pooled_images": ev.paired_accuracy(ca, cb),
                              "over_seeds": ev.paired_over_seeds([x["test_top1"] for x in a],
                                                                 [x["test_top1"] for x in b])}
    return {"profile": profile.name, "seeds": seeds, "methods": per_method, "latency_vs": comparisons}


def report(profile: ev.Profile, seeds: list[int]) -> str:
    s = summary(profile, seeds)

    def mean(d: dict) -> str:
        return "n/a" if not d else f"{np.mean(list(d.values())):.2f} (n={len(d)})"

    lines = [f"# Latency-aware search vs random vs FLOPs-constrained, winners trained alone (issue 13, `{profile.name}`)",
             "", f"- Seeds {seeds}; search: population {profile.population}, {profile.generations} generations, "
             f"inherited top-1 on {profile.val_images} held-out training images ({profile.eval_dtype} "
             f"autocast); winners trained alone for "
             f"{profile.standalone_steps} steps (cifar-cpu recipe), top-1 on the test split",
             f"- Regenerate: `python benchmarks/method_comparison.py --profile {profile.name} --report`; each unit's "
             f"JSON (machine, versions, command, wall time) is under "
             f"{ev.results_dir(STUDY, profile).relative_to(ev.ROOT) if profile.results_dir is None else ev.results_dir(STUDY, profile)}/",
             ""]
    lines += ev.md_table(["method", "inherited top-1 (mean)", "predicted ms (mean)", "standalone test top-1 (mean)",
                          "searched seeds", "trained seeds"],
                         [[METHODS[m], mean(v["inherited_val_top1"]), mean(v["predicted_ms"]), mean(v["test_top1"]),
                           v["seeds_searched"], v["seeds_trained"]] for m, v in s["methods"].items()])
    lines += [""]
    for other, c in s["latency_vs"].items():
        p, o = c["pooled_images"], c["over_seeds"]
        lines.append(f"- Latency-aware vs {METHODS[other]} (seeds {c['seeds']}, {p['images']} paired test images): "
                     f"{p['diff_points']:+.2f} points (95% CI {ev.fmt_ci(p['diff_ci95'])}), McNemar p = "
                     f"{p['mcnemar_p']:.3g}; over seeds mean {o['mean_diff']:+.2f}"
                     + (f", t-test p = {o['ttest_p']:.3g}" if "ttest_p" in o else " (too few seeds for a t-test)"))
    if not s["latency_vs"]:
        lines.append("- No paired comparison yet: no seed has both winners trained.")
    timed = {m: v["measured"] for m, v in s["methods"].items() if v["measured"]}
    lines += ["", "Does the winner keep the budget on this CPU? (units `latency_sN`: 256 px, onnxruntime, 1 thread, "
                  "each winner timed paired with the table's reference network; ratios to that network, the units of "
                  "the budget and the prediction)", ""]
    if timed:
        lines += ev.md_table(["method", "seeds timed", "measured / reference (mean)", "predicted (mean)",
                              "prediction error (mean, range)", "budget", "within budget (measured)"],
                             [[METHODS[m], sorted(v), f"{np.mean([r['measured_ratio'] for r in v.values()]):.3f}",
                               f"{np.mean([r['predicted_ratio'] for r in v.values()]):.3f}",
                               f"{np.mean(errs := [r['prediction_error_pct'] for r in v.values()]):+.1f}% "
                               f"[{min(errs):+.1f}, {max(errs):+.1f}]",
                               f"{next(iter(v.values()))['budget_ratio']:.3f}",
                               f"{sum(r['within_budget_measured'] for r in v.values())}/{len(v)}"]
                              for m, v in timed.items()])
    else:
        lines.append("Not timed yet (`--kinds latency` on a quiet machine).")
    lines += ["", "The pooled McNemar test treats the seeds' test predictions as independent images; the seed-level "
                  "t-test is the stricter reading.", ""]
    text = "\n".join(lines)
    ev.write_report(STUDY, profile, s, text)
    return text


def main() -> int:
    ap = ev.study_parser(__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(ev.SEEDS))
    ap.add_argument("--supernet-choice", default="sandwich_kd", help="the supernet_ranking.py unit to search")
    ap.add_argument("--budget-ms", type=float, default=ev.DEFAULT_BUDGET_MS)
    ap.add_argument("--coarse-samples", type=int, default=100_000)
    ap.add_argument("--max-units", type=int, default=None, help="compute at most this many new units, then report")
    ap.add_argument("--kinds", nargs="+", choices=("search", "train", "latency"), default=["search", "train"],
                    help="which units to compute: searches need the supernet's checkpoint (runs/, one machine), "
                         "trainings only the committed search JSON; latency (each seed's winners timed on this "
                         "CPU, once all its searches exist) needs a quiet machine")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the latency units")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                    help="which methods' units to compute (the report always covers all)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    profile = ev.get_profile(args.profile)

    def body() -> None:
        if not args.report:
            cache = ev.UnitCache(ev.results_dir(STUDY, profile))
            ctx = SearchContext(profile, args.supernet_choice, args.data_dir)
            left = args.max_units
            for seed in args.seeds:
                if "latency" in args.kinds and cache.load(f"latency_s{seed}") is None \
                        and all(cache.load(f"search_{m}_s{seed}") for m in METHODS):
                    cache.run(f"latency_s{seed}", lambda s=seed: run_latency(cache, s, args.rounds), log)
                for m in (m for m in METHODS if m in args.methods):
                    for kind in (k for k in args.kinds if k != "latency"):
                        name = f"{kind}_{m}_s{seed}"
                        if cache.load(name) is not None or (kind == "train" and cache.load(f"search_{m}_s{seed}") is None):
                            continue
                        if left is not None and left <= 0:
                            break
                        if kind == "search":
                            cache.run(name, lambda m=m, s=seed: run_search(ctx, m, s, args.budget_ms,
                                                                           args.coarse_samples, cache), log)
                        else:
                            search = cache.load(f"search_{m}_s{seed}")
                            cache.run(name, lambda u=search: run_training(profile, u, args.data_dir), log)
                        left = None if left is None else left - 1
        print(report(profile, ev.report_seeds(args.seeds, STUDY, profile)))

    return ev.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
