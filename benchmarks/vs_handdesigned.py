"""Issue 13: the searched model against hand-designed mobile models from timm.

Models: the latency-aware search's winner (benchmarks/method_comparison.py unit
`search_latency_s0`, or `--arch` an arch JSON), mobilevit_xxs, mobilenetv3_small_100,
mobilenetv3_large_100 and mobilenetv4_conv_small (random init). Units:
- `train_<model>_s<seed>` (3 seeds): trained alone with the ranking study's recipe (cifar-cpu
  preset, 32 px, same images and steps), top-1 and per-image correctness on the test split (the
  searched model's seed 0 is method_comparison's `train_latency_s0`, trained once for both);
- `latency`: batch-1 latency at the deployment setting (256 px, onnxruntime, 1 thread), all
  models in the same interleaved rounds (autovit.search.measured / autovit.bench).

Caveat: the searched model is trained in the CIFAR proxy layout (xxs_cifar: stride-1 stem), the
timm models in their ImageNet layouts (32x downsampling, 1x1 final map at 32 px); their latency is
measured for all at 256 px in the deployment layouts. This is the comparison a user makes when
picking an off-the-shelf model; it is not a layout-matched comparison.

    python benchmarks/vs_handdesigned.py --max-units 1
    python benchmarks/vs_handdesigned.py --report
    python benchmarks/vs_handdesigned.py --profile smoke --seeds 0
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

import _evidence as ev
from autovit.errors import AutovitError
from _log import log

STUDY = "vs_handdesigned"
TIMM_MODELS = ("mobilevit_xxs", "mobilenetv3_small_100", "mobilenetv3_large_100", "mobilenetv4_conv_small")
# every timm model a unit may train: these four and the rest of the Pareto benchmark's (pareto_front.py),
# which reuses these units (one (model, seed) training serves both studies)
TRAINABLE_TIMM = (*TIMM_MODELS, "mobilevitv2_050", "edgenext_xx_small", "shvit_s1", "efficientformerv2_s0",
                  "repvit_m0_9", "fastvit_t8", "mobileone_s0")
SEARCHED = "searched"


def searched_arch(profile: ev.Profile, arch_path: Path | None) -> Any:
    """The searched model's proxy arch: `arch_path`, else the latency-aware seed-0 winner."""
    if arch_path is not None:
        from autovit.arch import Arch

        return ev.XXS.to_proxy(Arch.load(arch_path))
    unit = ev.UnitCache(ev.results_dir("method_comparison", profile)).load("search_latency_s0")
    if unit is None:
        raise AutovitError("no searched model yet: method_comparison has no unit search_latency_s0 for profile "
                              f"'{profile.name}'", hint="run benchmarks/method_comparison.py --seeds 0 --max-units 1 "
                                                        "first, or pass --arch an arch JSON file")
    return ev.load_arch(unit["winner"]["proxy_arch"])


def build(name: str, arch: Any) -> Any:
    from autovit.bench import resolve_model
    from autovit.model import AutoViT

    if name == SEARCHED:
        return AutoViT(arch, num_classes=10)
    # the training form (RepVGG-style branches unfused), built for 32 px where a model needs it
    return resolve_model(name, num_classes=10, resolution=32, deploy=False).module.train()


def run_training(profile: ev.Profile, name: str, seed: int, arch: Any, data_dir: str) -> dict[str, Any]:
    from autovit.data import build_datasets
    from autovit.train.trainer import seed_everything

    cfg = ev.train_config(profile, data_dir, seed, max_steps=profile.standalone_steps)
    data = build_datasets(cfg)
    seed_everything(seed)
    model = build(name, arch)
    out = ev.run_dir(STUDY, profile, f"train_{name}_s{seed}", arch if name == SEARCHED else None)
    res = ev.train_standalone(model, cfg, data, out, ev.limited(data.val, profile.val_images),
                              ev.limited(data.test, profile.test_images), log, checkpoints=name == SEARCHED)
    log(f"{name} seed {seed}: test top-1 {res['full']['test_top1']:.2f}%")
    return {"model": name, "seed": seed, "arch": arch.to_dict() if name == SEARCHED else None,
            "params": sum(p.numel() for p in model.parameters()), "config": cfg.to_dict(), **res}


def shared_searched_s0(profile: ev.Profile, data_dir: str) -> dict[str, Any]:
    """The searched model's seed-0 training is method_comparison's `train_latency_s0` (the same
    winner, recipe and training seed): trained once, there (if missing), and copied here."""
    import method_comparison as mc
    from autovit.costs import count_params

    mcache = ev.UnitCache(ev.results_dir(mc.STUDY, profile))
    search = mcache.load("search_latency_s0")
    unit = mcache.run("train_latency_s0", lambda: mc.run_training(profile, search, data_dir), log)
    arch = ev.load_arch(search["winner"]["proxy_arch"])
    params = count_params(arch, num_classes=10)
    kept = {k: v for k, v in unit.items() if k not in ("unit", "method", "key")}
    return {**kept, "model": SEARCHED, "seed": 0, "arch": arch.to_dict(), "params": params,
            "trained_as": f"method_comparison/{profile.name}/train_latency_s0"}


def run_latency(arch: Any, rounds: int, runs: int) -> dict[str, Any]:
    from autovit.search.measured import measure_archs

    ms = measure_archs({SEARCHED: ev.XXS.to_deploy(arch)}, list(TIMM_MODELS), resolution=256, threads=1, rounds=rounds,
                       runs=runs, num_classes=1000)
    return {"resolution": 256, "threads": 1, "backend": "onnxruntime", "rounds": rounds, "runs": runs,
            "searched_key": arch.key(), "median_ms": ms}


def report(profile: ev.Profile, seeds: list[int]) -> str:
    cache = ev.UnitCache(ev.results_dir(STUDY, profile))
    lat = cache.load("latency")
    rows, by_model = [], {}
    for name in (SEARCHED, *TIMM_MODELS):
        units = {s: cache.load(f"train_{name}_s{s}") for s in seeds}
        done = {s: u for s, u in units.items() if u}
        by_model[name] = done
        accs = [u["full"]["test_top1"] for u in done.values()]
        ms = lat["median_ms"].get(name) if lat else None
        rows.append({"model": name, "seeds": sorted(done), "test_top1_mean": float(np.mean(accs)) if accs else None,
                     "test_top1_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                     "params": next(iter(done.values()))["params"] if done else None, "latency_ms": ms,
                     "latency_vs_searched": ms / lat["median_ms"][SEARCHED] if lat and ms else None})
    paired = {}
    for name in TIMM_MODELS:
        both = [s for s in seeds if s in by_model[SEARCHED] and s in by_model[name]]
        if both:
            paired[name] = ev.paired_over_seeds([by_model[SEARCHED][s]["full"]["test_top1"] for s in both],
                                                [by_model[name][s]["full"]["test_top1"] for s in both])
    lines = [f"# Searched model vs hand-designed mobile models (issue 13, `{profile.name}`)", "",
             f"- Same recipe for all (cifar-cpu preset, 32 px, {profile.standalone_steps} steps, batch "
             f"{profile.batch_size}), seeds {seeds}, top-1 on the test split",
             "- Latency: batch 1 at 256 px (deployment setting), onnxruntime, 1 thread, interleaved rounds" +
             (f" ({lat['rounds']} rounds x {lat['runs']} runs; machine in latency.json)" if lat else " (not measured yet)"),
             "- Layouts differ (see the script docstring): searched model in the CIFAR proxy layout, timm models in "
             "their ImageNet layouts", ""]
    lines += ev.md_table(["model", "seeds", "test top-1 mean", "sd", "params", "latency (ms)", "latency / searched"],
                         [[r["model"], r["seeds"], ev.fmt(r["test_top1_mean"], 2), ev.fmt(r["test_top1_sd"], 2),
                           "n/a" if r["params"] is None else f"{r['params']:,}", ev.fmt(r["latency_ms"], 2),
                           ev.fmt(r["latency_vs_searched"], 2)] for r in rows])
    lines += [""] + [f"- searched - {n}: {p['mean_diff']:+.2f} points over {p['n']} seeds"
                     + (f" (95% CI {ev.fmt_ci(p['ci95'])}, paired t p = {p['ttest_p']:.3g})" if "ttest_p" in p else "")
                     for n, p in paired.items()] + [""]
    text = "\n".join(lines)
    ev.write_report(STUDY, profile, {"profile": profile.name, "seeds": seeds, "rows": rows,
                                                "paired_vs_searched": paired}, text)
    return text


def main() -> int:
    ap = ev.study_parser(__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(ev.SEEDS))
    ap.add_argument("--models", nargs="+", default=[SEARCHED, *TIMM_MODELS])
    ap.add_argument("--arch", type=Path, default=None, help="arch JSON of the searched model (default: search unit)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    ap.add_argument("--runs", type=int, default=20, help="timed inferences per model per round")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency unit (e.g. on a GPU box)")
    ap.add_argument("--max-units", type=int, default=None)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    profile = ev.get_profile(args.profile)

    def body() -> None:
        if not args.report:
            unknown = sorted(set(args.models) - {SEARCHED, *TRAINABLE_TIMM})
            if unknown:
                raise AutovitError(f"unknown model(s) {', '.join(unknown)}",
                                   hint=f"use {SEARCHED} and/or {', '.join(TRAINABLE_TIMM)}")
            needs_arch = SEARCHED in args.models or not args.no_latency
            arch = searched_arch(profile, args.arch) if needs_arch else None
            cache = ev.UnitCache(ev.results_dir(STUDY, profile))
            todo = [(m, s) for s in args.seeds for m in args.models if cache.load(f"train_{m}_s{s}") is None]
            for m, s in todo[: args.max_units]:
                if m == SEARCHED and s == 0 and args.arch is None:
                    cache.run(f"train_{m}_s{s}", lambda: shared_searched_s0(profile, args.data_dir), log)
                else:
                    cache.run(f"train_{m}_s{s}", lambda m=m, s=s: run_training(profile, m, s, arch, args.data_dir),
                              log)
            if not args.no_latency:
                cache.run("latency", lambda: run_latency(arch, args.rounds, args.runs), log)
        print(report(profile, ev.report_seeds(args.seeds, STUDY, profile)))

    return ev.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
