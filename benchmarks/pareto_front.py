"""Issue 14: the Pareto front on this device -- CIFAR-10 top-1 against measured latency for models
searched in the mnv4 family and in the paper's XXS space, and for 11 hand-designed timm models.

Everything is judged at one deployment setting: batch 1, 224 px, onnxruntime, 1 thread on this CPU.
Accuracy uses the evidence studies' recipe, images and proxy (benchmarks/_evidence.py, docs/evidence.md):
each model trained alone for `standalone_steps` steps on CIFAR-10 at 32 px, top-1 on the full test
split; searched models train in their family's CIFAR proxy layout (xxs_cifar.yaml, mnv4_s_cifar.yaml:
same choices, stride-1 stem), timm models in their own layouts (what a user downloads) and in the
CIFAR proxy layout too (`<model>_cifar`: vs_handdesigned.timm_in_cifar_layout, the layout-matched
baseline); every model is timed as deployed.

Units (one JSON each under benchmarks/results/pareto_front/<profile>/, the timing units under
pareto_front/timing/ for every profile: they describe the target CPU; resumable):
- `budgets` (timing): mobilevit_xxs timed against the 224-px reference network; each family's budgets
  (`BUDGETS`: fractions of mobilevit_xxs's latency) resolved in its table's units, infeasible ones
  marked;
- `supernet_<family>`: the family's supernet trained on its proxy (choice `--supernet-choice`,
  benchmarks/supernet_ranking.py recipes; the XXS family's is supernet_ranking's own run of that
  choice; checkpoints in runs/, git-ignored, so a session that finishes a supernet runs its
  searches right after) and the inherited top-1 of its extremes;
- `search_<family>_<fraction>`: latency-aware coarse-to-fine search (method_comparison settings) of
  the deployment space under the budget, accuracy = inherited top-1 on 5,000 held-out images;
- `train_<family>_<fraction>_s0`: the winner trained alone;
- timm trainings: the units `train_<model>_s0` (group `timm`) and `train_<model>_cifar_s0` (group
  `timm_cifar`) of benchmarks/vs_handdesigned.py (one training serves both studies; the training
  form of each model, reparameterized only for timing);
- `latency_timm`, `latency_searched_<family>` (timing, group `latency_searched`): the 11 timm models
  (reparameterized as deployed), and a family's searched winners once its searches exist, each run
  with mobilevit_xxs in the same interleaved rounds; latencies are reported as the ratio to
  mobilevit_xxs in the same run (and in ms through `latency_timm`).

Report: table and plot (benchmarks/results/pareto_front/<profile>.{md,json,png}); for each searched
model, whether a hand-designed model is at least as fast and more accurate beyond the binomial noise
(two-proportion z > 1.96): "dominated by X", else "on or above the hand-designed front" -- "so far"
while a baseline at most as slow is not trained yet (named in the row).

    python benchmarks/pareto_front.py --units budgets latency_timm    # timing units (quiet core, ~5 min)
    python benchmarks/pareto_front.py --units timm --max-units 2       # two timm trainings
    python benchmarks/pareto_front.py --units timm_cifar --max-units 2 # two layout-matched ones
    python benchmarks/pareto_front.py --units mnv4_s                   # supernet, 3 searches, 3 trainings
    python benchmarks/pareto_front.py --report
    python benchmarks/pareto_front.py --profile smoke --units all --families mnv4_s
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable

import numpy as np

import _evidence as ev
import vs_handdesigned as vh
from autovit.errors import AutovitError
from _log import log

STUDY = "pareto_front"
RESOLUTION = 224
REFERENCE_MODEL = "mobilevit_xxs"
FAMILIES = {
    "mnv4_s": ev.Family("mnv4_s", ev.SPACES / "mnv4_s_cifar.yaml", ev.ROOT / "luts" / "mnv4_s_ort_1t_224.json"),
    "xxs": ev.Family("xxs", ev.XXS.proxy_file, ev.ROOT / "luts" / "xxs_ort_1t_224.json", resolution=RESOLUTION),
}
# fractions of mobilevit_xxs's latency (at 224 px on this CPU mobilenetv4_conv_small runs at ~0.32x,
# the XXS space's fastest subnet at ~0.54x: benchmarks/results/check_baselines.md, issue 14)
BUDGETS = {"mnv4_s": (0.35, 0.5, 0.75), "xxs": (0.6, 0.8, 1.0)}
TIMM = vh.TRAINABLE_TIMM


TIMING_UNITS = ("budgets", "latency_timm", *(f"latency_searched_{f}" for f in FAMILIES))


def timing_cache(profile: ev.Profile) -> ev.UnitCache:
    """Timing units describe the target CPU, not a training profile: one folder shared by the cpu and
    gpu profiles (benchmarks/results/pareto_front/timing/; the smoke profile keeps its own)."""
    return ev.UnitCache(ev.results_dir(STUDY, profile).parent / ("timing" if profile.results_dir is None
                                                                 else "smoke_timing"))


def timm_of(unit: str) -> str | None:
    """The model a unit name `train_<model>_s0` trains (a timm model, or `<timm model>_cifar`: the same in
    the CIFAR proxy layout), None for any other unit."""
    model = unit.removeprefix("train_").removesuffix("_s0")
    return model if unit.startswith("train_") and vh.base_model(model) in TIMM else None


def unit_names(families: list[str]) -> dict[str, list[str]]:
    """Unit names per group: the timing units, the timm trainings (own and CIFAR proxy layouts) and
    each family's chain."""
    groups = {"timing": ["budgets", "latency_timm"], "timm": [f"train_{m}_s0" for m in TIMM],
              "timm_cifar": [f"train_{m}{vh.CIFAR_SUFFIX}_s0" for m in TIMM]}
    for f in families:
        groups[f] = [f"supernet_{f}"] + [f"search_{f}_{b:g}" for b in BUDGETS[f]] + \
                    [f"train_{f}_{b:g}_s0" for b in BUDGETS[f]]
    # timing on a quiet machine: not part of a family's chain, which trains on one core beside another
    groups["latency_searched"] = [f"latency_searched_{f}" for f in families]
    return groups


# ---------------------------------------------------------------------------------- timing units
def run_budgets(rounds: int) -> dict[str, Any]:
    """mobilevit_xxs against the reference network at 224 px; every family's budgets resolved in its
    table's units (one timing serves all tables: they share the 224-px reference network)."""
    from autovit.search.budget import LatencyBudget, OnnxTimer, ResolvedBudget, fastest_subnet

    times = OnnxTimer(RESOLUTION, rounds=rounds)({REFERENCE_MODEL: REFERENCE_MODEL})
    model_ratio = float(times.ratio[REFERENCE_MODEL])
    out: dict[str, Any] = {"resolution": RESOLUTION, "reference_model": REFERENCE_MODEL, "model_ratio": model_ratio,
                           "model_ms": times.ms[REFERENCE_MODEL], "reference_ms_now": times.reference_ms,
                           "reference_spread": times.reference_spread, "rounds": rounds, "families": {}}
    for name, fam in FAMILIES.items():
        lat = fam.latency_model()
        _, fastest = fastest_subnet(lat, fam.deploy_space())
        rows = {}
        for frac in BUDGETS[name]:
            budget = LatencyBudget.parse(f"{frac:g}x:{REFERENCE_MODEL}")
            resolved = ResolvedBudget(budget, frac * model_ratio, lat.reference_ms, times.reference_ms,
                                      times.reference_spread, model_ratio)
            rows[f"{frac:g}"] = {**resolved.to_dict(), "feasible": fastest <= resolved.ratio}
        out["families"][name] = {"lut": str(fam.lut.relative_to(ev.ROOT)), "fastest_predicted_ratio": fastest,
                                 "fastest_vs_reference_model": fastest / model_ratio, "budgets": rows}
    return out


def run_latency(models: dict[str, Any], rounds: int, runs: int) -> dict[str, Any]:
    """Median ms of `models` (name -> timm name or deployment Arch) and of mobilevit_xxs, all in the same
    interleaved rounds (timm models reparameterized as deployed; one that cannot run is skipped)."""
    from autovit.search.measured import bench_archs

    archs = {n: a for n, a in models.items() if not isinstance(a, str)}
    names = [m for m in models.values() if isinstance(m, str) and m != REFERENCE_MODEL]
    report = bench_archs(archs, [REFERENCE_MODEL, *names], resolution=RESOLUTION, threads=1, rounds=rounds, runs=runs)
    rows = {r.name: r.to_dict() for r in report.rows}
    ref = rows[REFERENCE_MODEL]["median_ms"]
    for r in rows.values():
        r["ratio_to_reference_model"] = None if r["median_ms"] is None else r["median_ms"] / ref
    return {"resolution": RESOLUTION, "threads": 1, "backend": "onnxruntime", "rounds": rounds, "runs": runs,
            "machine": report.machine, "versions": report.versions, "models": rows}


# ---------------------------------------------------------------------------------- search units
class FamilyContext:
    """A family's supernet and evaluator (built once per process, trained or resumed on first use)."""

    def __init__(self, profile: ev.Profile, family: str, choice: str, data_dir: str) -> None:
        self.profile, self.name, self.choice, self.data_dir = profile, family, choice, data_dir
        self.family = FAMILIES[family]
        self._evaluator: Any = None

    def supernet(self) -> tuple[Any, Any, Any]:
        import supernet_ranking

        # the XXS family's proxy is the evidence studies' one: its supernet is supernet_ranking's (trained once)
        out = (None if self.family.proxy_file == ev.XXS.proxy_file
               else ev.run_dir(STUDY, self.profile, f"supernet_{self.name}_{self.choice}"))
        return supernet_ranking.trained_supernet(self.profile, self.choice, self.data_dir, family=self.family, out=out)

    def accuracy_fn(self) -> Callable[[Any], float]:
        if self._evaluator is None:
            self._evaluator = ev.subnet_evaluator(self.profile, *self.supernet())
        evaluator = self._evaluator
        return lambda arch: evaluator(self.family.to_proxy(arch))


def run_supernet(ctx: FamilyContext) -> dict[str, Any]:
    import supernet_ranking

    supernet, trainer, _ = ctx.supernet()
    acc = ctx.accuracy_fn()
    space = ctx.family.deploy_space()
    extremes = {"smallest": acc(space.smallest()), "largest": acc(space.largest())}
    log(f"supernet {ctx.name}: inherited top-1 smallest {extremes['smallest']:.2f}%, largest {extremes['largest']:.2f}%")
    return {"family": ctx.name, "choice": ctx.choice, "options": supernet_ranking.CHOICES[ctx.choice],
            "config": trainer.cfg.to_dict(), "supernet_steps": trainer.step,
            "supernet_train_s": round(trainer.elapsed_s, 1), "inherited_val_top1": extremes}


def run_search(ctx: FamilyContext, frac: float, budgets: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    from autovit.search.evolution import EvolutionarySearch

    from method_comparison import search_config

    row = budgets["families"][ctx.name]["budgets"][f"{frac:g}"]
    if not row["feasible"]:
        return {"family": ctx.name, "fraction": frac, "budget": row, "winner": None,
                "skipped": "no subnet of the space is predicted within this budget"}
    space, lat = ctx.family.deploy_space(), ctx.family.latency_model()
    cfg = search_config(ctx.profile, row["ms_table"], seed, coarse_samples=20 * ctx.profile.population)
    out = ev.run_dir(STUDY, ctx.profile, f"search_{ctx.name}_{frac:g}")
    progress = ev.search_progress(f"search {ctx.name} {frac:g}x", log)
    result = EvolutionarySearch(space, ctx.accuracy_fn(), lat, cfg, out, progress=progress).run(
        resume=ev.resume_search(out))
    b = result.best
    log(f"search {ctx.name} {frac:g}x: {b.accuracy:.2f}% inherited, {b.latency_ms:.2f} ms predicted "
        f"(budget {row['ms_table']:.2f})")
    # the weights live in runs/ only: a later session retrains them, and the extremes' inherited top-1
    # shows whether these are the weights the committed supernet unit describes
    acc = ctx.accuracy_fn()
    extremes = {"smallest": acc(space.smallest()), "largest": acc(space.largest())}
    return {"family": ctx.name, "fraction": frac, "seed": seed, "budget": row, "supernet_choice": ctx.choice,
            "supernet_extremes_top1": extremes,
            "settings": cfg.to_dict(), "evaluations": result.evaluations, "eval_dtype": ctx.profile.eval_dtype,
            "winner": {"deploy_arch": b.arch.to_dict(), "proxy_arch": ctx.family.to_proxy(b.arch).to_dict(),
                       "key": b.key, "inherited_val_top1": b.accuracy, "predicted_ms": b.latency_ms,
                       "params": b.params, "macs": b.macs}}


def run_training(profile: ev.Profile, fam: ev.Family, unit: str, search: dict[str, Any], data_dir: str) -> dict:
    from autovit.arch import Arch
    from autovit.data import build_datasets
    from autovit.model import AutoViT
    from autovit.train.trainer import seed_everything

    cfg = ev.train_config(profile, data_dir, 0, max_steps=profile.standalone_steps)
    data = build_datasets(cfg)
    seed_everything(0)
    arch = fam.proxy_space().validate(Arch.from_dict(search["winner"]["proxy_arch"]))
    model = AutoViT(arch, num_classes=data.num_classes)
    res = ev.train_standalone(model, cfg, data, ev.run_dir(STUDY, profile, unit, arch),
                              ev.limited(data.val, profile.val_images), ev.limited(data.test, profile.test_images), log)
    log(f"{unit}: test top-1 {res['full']['test_top1']:.2f}%")
    return {"family": search["family"], "fraction": search["fraction"], "key": search["winner"]["key"],
            "params": sum(p.numel() for p in model.parameters()), "config": cfg.to_dict(), **res}


# ---------------------------------------------------------------------------------- report
def dominated_by(acc: float, n: int, ratio: float, others: list[dict[str, Any]]) -> list[str]:
    """Hand-designed models at most as slow and more accurate beyond the binomial noise (z > 1.96)."""
    out = []
    for o in others:
        if o["latency_ratio"] is None or o["test_top1"] is None or o["latency_ratio"] > ratio:
            continue
        p1, p2 = o["test_top1"] / 100, acc / 100
        pooled = (p1 * o["test_images"] + p2 * n) / (o["test_images"] + n)
        se = math.sqrt(max(pooled * (1 - pooled) * (1 / o["test_images"] + 1 / n), 1e-12))
        if (p1 - p2) / se > 1.96:
            out.append(o["model"])
    return out


def untrained_faster(ratio: float, others: list[dict[str, Any]]) -> list[str]:
    """Hand-designed models at most as slow whose training is missing: each could still dominate."""
    return [o["model"] for o in others
            if o["latency_ratio"] is not None and o["latency_ratio"] <= ratio and o["test_top1"] is None]


def verdict(r: dict[str, Any]) -> str:
    """One searched row's verdict; provisional while a faster baseline is untrained."""
    if "dominated_by" not in r:
        return r.get("note") or ""
    if r["dominated_by"]:
        return ", ".join(r["dominated_by"])
    if r.get("untrained_faster"):
        return "none so far; not trained yet: " + ", ".join(r["untrained_faster"])
    return "none: on or above the front"


def summary(profile: ev.Profile, families: list[str]) -> dict[str, Any]:
    cache, timing = ev.UnitCache(ev.results_dir(STUDY, profile)), timing_cache(profile)
    trained = ev.UnitCache(ev.results_dir(vh.STUDY, profile))
    lat_timm = timing.load("latency_timm")
    ref_ms = lat_timm["models"][REFERENCE_MODEL]["median_ms"] if lat_timm else None

    def latency(unit: dict | None, name: str) -> tuple[float | None, float | None]:
        row = (unit or {}).get("models", {}).get(name)
        if not row or row.get("ratio_to_reference_model") is None:
            return None, None
        ratio = row["ratio_to_reference_model"]
        return ratio, (ratio * ref_ms if ref_ms else None)

    rows = []
    for m, kind in [(m, "hand-designed (timm)") for m in TIMM] + \
                   [(m + vh.CIFAR_SUFFIX, "hand-designed (timm, CIFAR layout)") for m in TIMM]:
        u = trained.load(f"train_{m}_s0")
        ratio, ms = latency(lat_timm, vh.base_model(m))  # timed as deployed: the model's own layout
        skipped = ((lat_timm or {}).get("models", {}).get(vh.base_model(m)) or {}).get("skipped")
        rows.append({"model": m, "kind": kind, "params": None if u is None else u["params"],
                     "test_top1": None if u is None else u["full"]["test_top1"],
                     "test_images": None if u is None else u["full"]["test_images"],
                     "latency_ratio": ratio, "latency_ms": ms, "note": skipped})
    for f in families:
        for frac in BUDGETS[f]:
            name = f"{f}_{frac:g}"
            s, t = cache.load(f"search_{name}"), cache.load(f"train_{name}_s0")
            ratio, ms = latency(timing.load(f"latency_searched_{f}"), name)
            note = (s or {}).get("skipped")
            rows.append({"model": f"searched {f} @ {frac:g}x {REFERENCE_MODEL}", "unit": name, "kind": f"searched ({f})",
                         "params": None if t is None else t["params"],
                         "test_top1": None if t is None else t["full"]["test_top1"],
                         "test_images": None if t is None else t["full"]["test_images"],
                         "inherited_val_top1": None if not s or not s.get("winner") else s["winner"]["inherited_val_top1"],
                         "budget_ratio": frac, "latency_ratio": ratio, "latency_ms": ms,
                         "within_budget": None if ratio is None else ratio <= frac, "note": note})
    hand = [r for r in rows if r["kind"].startswith("hand")]
    for r in rows:
        if r["kind"].startswith("searched") and r["test_top1"] is not None and r["latency_ratio"] is not None:
            r["dominated_by"] = dominated_by(r["test_top1"], r["test_images"], r["latency_ratio"], hand)
            r["untrained_faster"] = untrained_faster(r["latency_ratio"], hand)
    groups = unit_names(families)
    done = {n for g in groups.values() for n in g
            if (trained if timm_of(n) else timing if n in TIMING_UNITS else cache).load(n)}
    supernets = {}
    for f in families:
        sn = cache.load(f"supernet_{f}")
        supernets[f] = {"unit": None if sn is None else sn["inherited_val_top1"],
                        "searches": {f"{frac:g}": u["supernet_extremes_top1"] for frac in BUDGETS[f]
                                     if (u := cache.load(f"search_{f}_{frac:g}")) and "supernet_extremes_top1" in u}}
    return {"profile": profile.name, "resolution": RESOLUTION, "reference_model": REFERENCE_MODEL,
            "reference_ms": ref_ms, "budgets": timing.load("budgets"), "rows": rows, "supernets": supernets,
            "missing": sorted({n for g in groups.values() for n in g} - done)}


def plot(s: dict[str, Any], path: Any) -> bool:
    """Top-1 against latency ratio: hand-designed models and their front, searched models per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in s["rows"] if r["test_top1"] is not None and r["latency_ratio"] is not None]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    hand = sorted((r for r in pts if r["kind"].startswith("hand")), key=lambda r: r["latency_ratio"])
    front, best = [], -1.0
    for r in hand:
        if r["test_top1"] > best:
            front.append(r)
            best = r["test_top1"]
    for kind, marker, label in (("hand-designed (timm)", "o", "timm, own layout"),
                                ("hand-designed (timm, CIFAR layout)", "^", "timm, CIFAR layout")):
        sel = [r for r in hand if r["kind"] == kind]
        if sel:
            ax.scatter([r["latency_ratio"] for r in sel], [r["test_top1"] for r in sel], c="grey", marker=marker,
                       label=label)
    if front:
        ax.step([r["latency_ratio"] for r in front], [r["test_top1"] for r in front], where="post", c="grey", lw=0.8)
    for r in hand:
        ax.annotate(r["model"], (r["latency_ratio"], r["test_top1"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    for kind, marker in (("searched (mnv4_s)", "D"), ("searched (xxs)", "s")):
        sel = [r for r in pts if r["kind"] == kind]
        if sel:
            se = [100 * math.sqrt(r["test_top1"] / 100 * (1 - r["test_top1"] / 100) / r["test_images"]) for r in sel]
            ax.errorbar([r["latency_ratio"] for r in sel], [r["test_top1"] for r in sel], yerr=[1.96 * e for e in se],
                        fmt=marker, label=kind, capsize=2)
    ax.set_xlabel(f"latency / {s['reference_model']} (batch 1, {s['resolution']} px, onnxruntime, 1 thread)")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def report(profile: ev.Profile, families: list[str]) -> str:
    s = summary(profile, families)
    png = ev.results_dir(STUDY, profile).parent / f"{profile.name}.png"
    has_plot = plot(s, png)
    ref = f"{s['reference_ms']:.2f} ms" if s["reference_ms"] else "not measured yet"
    lines = [f"# Pareto front on this device (issue 14, profile `{profile.name}`)", "",
             f"- Latency: batch 1, {RESOLUTION} px, onnxruntime, 1 thread, interleaved rounds; each model's median as a "
             f"ratio to {REFERENCE_MODEL} timed in the same run ({REFERENCE_MODEL} = {ref} in `latency_timm`); timm "
             "models reparameterized as deployed",
             f"- Accuracy: CIFAR-10 test top-1 ({profile.test_images or 10000:,} images; binomial 95% CI shown in the "
             "plot, about +-1 point at 10,000), each model trained "
             f"alone with the evidence recipe ({profile.standalone_steps} steps, batch {profile.batch_size}, 32 px, "
             "seed 0); searched models in their family's CIFAR proxy layout, timm models in their own layouts and "
             f"(`<model>{vh.CIFAR_SUFFIX}`) in the CIFAR proxy layout too, timed as deployed; a searched model is "
             "dominated if a timm model in either layout is",
             f"- Missing units: {', '.join(s['missing']) or 'none'}",
             f"- Regenerate: `python benchmarks/pareto_front.py --profile {profile.name} --report`; machine, versions, "
             "command and wall time are in each unit's JSON", ""]
    lines += ev.md_table(["model", "params (train form, 10 classes)", "latency / mobilevit_xxs", "latency (ms)",
                          "budget (measured)", "test top-1", "dominated by (beyond noise)"],
                         [[r["model"], "n/a" if r["params"] is None else f"{r['params'] / 1e6:.2f}M",
                           ev.fmt(r["latency_ratio"], 3), ev.fmt(r["latency_ms"], 2),
                           "" if not r.get("budget_ratio") else f"{r['budget_ratio']:g}x" + (
                               "" if r["within_budget"] is None else " met" if r["within_budget"] else " MISSED"),
                           ev.fmt(r["test_top1"], 2),
                           verdict(r) if r["kind"].startswith("searched") else (r.get("note") or "")]
                          for r in s["rows"]])
    if s["budgets"]:
        lines += ["", "Budgets (fractions of mobilevit_xxs, resolved per family table; fastest predicted subnet of "
                      "each space as a fraction of mobilevit_xxs):", ""]
        lines += [f"- {f}: fastest subnet {b['fastest_vs_reference_model']:.3f}x; "
                  + ", ".join(f"{k}x {'feasible' if v['feasible'] else 'INFEASIBLE'}" for k, v in b["budgets"].items())
                  for f, b in s["budgets"]["families"].items()]
    checks = {f: v for f, v in s["supernets"].items() if v["unit"] and v["searches"]}
    if checks:
        lines += ["", "Supernet weights (kept in runs/ only; a search in a later session runs on retrained weights): "
                      "inherited top-1 of the space's smallest / largest subnet", ""]
        lines += [f"- {f}: supernet unit {v['unit']['smallest']:.2f} / {v['unit']['largest']:.2f}; "
                  + ", ".join(f"search {k}x {e['smallest']:.2f} / {e['largest']:.2f}" for k, e in v["searches"].items())
                  for f, v in checks.items()]
    lines += ["", f"Plot: `{png.name}`" if has_plot else "No plot yet (no model has both accuracy and latency).", ""]
    text = "\n".join(lines)
    ev.write_report(STUDY, profile, s, text)
    return text


# ---------------------------------------------------------------------------------- main
def main() -> int:
    ap = ev.study_parser(__doc__)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--units", nargs="+", default=["all"],
                    help="groups or unit names: all, timing, timm, timm_cifar, a family name, latency_searched, budgets, "
                         "latency_timm, or one unit (e.g. train_mobileone_s0, latency_searched_xxs)")
    ap.add_argument("--supernet-choice", default="sandwich_kd")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    ap.add_argument("--runs", type=int, default=20, help="timed inferences per model per round")
    ap.add_argument("--max-units", type=int, default=None, help="compute at most this many new units")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    profile = ev.get_profile(args.profile)

    def body() -> None:
        if not args.report:
            compute(profile, args)
        print(report(profile, list(FAMILIES)))  # every family's units, whichever were computed

    return ev.run_cli(body)


def compute(profile: ev.Profile, args: argparse.Namespace) -> None:
    import supernet_ranking
    from autovit.arch import Arch

    if args.supernet_choice not in supernet_ranking.CHOICES:
        raise AutovitError(f"unknown supernet choice '{args.supernet_choice}'",
                           hint=f"use one of {', '.join(supernet_ranking.CHOICES)}")
    groups = unit_names(args.families)
    everything = [n for g in groups.values() for n in g]
    wanted: list[str] = []
    for u in args.units:
        names = everything if u == "all" else groups.get(u, [u] if u in everything else None)
        if names is None:
            raise AutovitError(f"unknown unit or group '{u}'",
                               hint=f"use all, {', '.join(groups)} or a unit name such as "
                                    f"{groups['timm'][0]}")
        wanted += [n for n in names if n not in wanted]
    cache, trained = ev.UnitCache(ev.results_dir(STUDY, profile)), ev.UnitCache(ev.results_dir(vh.STUDY, profile))
    timing = timing_cache(profile)
    contexts: dict[str, FamilyContext] = {}
    left = [args.max_units if args.max_units is not None else len(wanted)]

    def ctx(f: str) -> FamilyContext:
        return contexts.setdefault(f, FamilyContext(profile, f, args.supernet_choice, args.data_dir))

    def timed(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        unit = timing.load(name)
        if unit is not None:
            return unit
        if profile.device != "cpu":
            raise AutovitError(f"the timing unit '{name}' is missing: it is measured on the target CPU, not here",
                               hint=f"run `python benchmarks/pareto_front.py --units {name}` on the CPU machine "
                                    "and commit benchmarks/results/pareto_front/timing/")
        return timing.run(name, fn, log)

    def budgets() -> dict[str, Any]:
        return timed("budgets", lambda: run_budgets(args.rounds))

    def run(c: ev.UnitCache, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if c.load(name) is None and left[0] > 0:
            left[0] -= 1
            if c is timing:
                timed(name, fn)
            else:
                c.run(name, fn, log)

    for name in wanted:
        if name == "budgets":
            run(timing, name, lambda: run_budgets(args.rounds))
        elif name == "latency_timm":
            run(timing, name, lambda: run_latency({m: m for m in TIMM}, args.rounds, args.runs))
        elif name.startswith("latency_searched_"):
            fam = name[len("latency_searched_"):]
            searches = {f"{fam}_{frac:g}": cache.load(f"search_{fam}_{frac:g}") for frac in BUDGETS[fam]}
            waiting = [n for n, u in searches.items() if u is None]
            if waiting:
                log(f"{name} waits for the searches {', '.join(waiting)}")
                continue
            winners = {n: FAMILIES[u["family"]].deploy_space().validate(Arch.from_dict(u["winner"]["deploy_arch"]))
                       for n, u in searches.items() if u.get("winner")}
            run(timing, name, lambda w=winners: run_latency(w, args.rounds, args.runs))
        elif timm_of(name):
            run(trained, name, lambda m=timm_of(name): vh.run_training(profile, m, 0, None, args.data_dir))
        elif name.startswith("supernet_"):
            f = name[len("supernet_"):]
            run(cache, name, lambda f=f: run_supernet(ctx(f)))
        elif name.startswith("search_"):
            f, frac = name[len("search_"):].rsplit("_", 1)
            run(cache, name, lambda f=f, frac=float(frac): run_search(ctx(f), frac, budgets()))
        elif name.startswith("train_"):
            f, frac = name[len("train_"):-len("_s0")].rsplit("_", 1)
            search = cache.load(f"search_{f}_{frac}")
            if search is None or not search.get("winner"):
                log(f"{name} waits for search_{f}_{frac}" if search is None else f"{name}: no winner ({search['skipped']})")
                continue
            run(cache, name, lambda n=name, f=f, s=search: run_training(profile, FAMILIES[f], n, s, args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
