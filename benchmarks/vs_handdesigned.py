"""Issue 13: the searched model against hand-designed mobile models from timm.

Models: the latency-aware search's winner (benchmarks/method_comparison.py unit
`search_latency_s0`, or `--arch` an arch JSON), mobilevit_xxs, mobilenetv3_small_100,
mobilenetv3_large_100 and mobilenetv4_conv_small (random init). Units:
- `train_<model>_s<seed>` (3 seeds): trained alone with the ranking study's recipe (cifar-cpu
  preset, 32 px, same images and steps), top-1 and per-image correctness on the test split (the
  searched model's seed 0 is method_comparison's `train_latency_s0`, trained once for both);
- `latency`: batch-1 latency at the deployment setting (256 px, onnxruntime, 1 thread), all
  models in the same interleaved rounds (autovit.search.measured / autovit.bench).

Layouts: the searched model trains in the CIFAR proxy layout (xxs_cifar: stride-1 stem), the timm
models in their ImageNet layouts (32x downsampling, 1x1 final map at 32 px) -- the comparison a
user makes when picking an off-the-shelf model -- and, as `<model>_cifar`, in the CIFAR proxy
layout too: the same change applied to each timm model (`timm_in_cifar_layout`: its first
downsampling steps at stride 1, 4x less downsampling, every parallel branch of a block alike), the
layout-matched comparison. Latency is the deployed model's in every case (256 px, deployment
layouts).

    python benchmarks/vs_handdesigned.py --max-units 1
    python benchmarks/vs_handdesigned.py --seeds 0 --models mobilevit_xxs_cifar   # one layout-matched training
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
# `<timm model>_cifar`: the same timm model in the CIFAR proxy layout (`timm_in_cifar_layout`)
CIFAR_SUFFIX = "_cifar"


def base_model(name: str) -> str:
    """The timm model a model name refers to (`mobilevit_xxs_cifar` -> `mobilevit_xxs`)."""
    return name.removesuffix(CIFAR_SUFFIX)


def is_trainable(name: str) -> bool:
    return name == SEARCHED or base_model(name) in TRAINABLE_TIMM


def downsampling_steps(module: Any, resolution: int) -> list[tuple[int, list[str]]]:
    """The spatial downsampling steps of a CNN, in order: (input height, names of the strided convs
    and pools that reduce maps of that height). Parallel branches of one block (RepVGG-style kxk and
    scale convs, a strided shortcut) see the same height and so form one step."""
    import torch
    from torch import nn

    steps: dict[int, list[str]] = {}

    def record(name: str) -> Any:
        def hook(mod: Any, inputs: Any, output: Any) -> None:
            names = steps.setdefault(int(inputs[0].shape[-2]), [])
            if name not in names:
                names.append(name)
        return hook

    hooks = [mod.register_forward_hook(record(name)) for name, mod in module.named_modules()
             if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and _stride(mod) > 1]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, 3, resolution, resolution))
    finally:
        for h in hooks:
            h.remove()
    return sorted(steps.items(), reverse=True)


def _stride(mod: Any) -> int:
    s = mod.stride
    return int(s[0] if isinstance(s, (tuple, list)) else s)


def to_cifar_layout(module: Any, resolution: int, factor: int = 4) -> list[str]:
    """Sets the first downsampling steps of `module` to stride 1 (in place) until its total
    downsampling is `factor` times smaller: the change the CIFAR proxy layouts make to the searched
    spaces (stem and one early stage at stride 1), applied to a timm model. Returns the changed
    modules' names; raises AutovitError when the model has too few steps to remove."""
    mods = dict(module.named_modules())
    changed, removed = [], 1
    for _, names in downsampling_steps(module, resolution):
        if removed >= factor:
            break
        step = _stride(mods[names[0]])
        for n in names:
            m = mods[n]
            m.stride = (1, 1) if isinstance(m.stride, tuple) else 1
        changed += names
        removed *= step
    if removed < factor:
        raise AutovitError(f"the model downsamples only {removed}x before its last step; cannot remove {factor}x")
    return changed


def timm_in_cifar_layout(name: str, num_classes: int = 10, resolution: int = 32) -> Any:
    """timm model `name` in the training form, in the CIFAR proxy layout: its first downsampling steps
    at stride 1 so that a `resolution`-px input gives the maps a 4x larger input gives the original.
    A model whose layers are tied to its build resolution (EfficientFormerV2's attention) is built
    for 4x `resolution` first."""
    import inspect

    from autovit.bench import ModelCannotRun, _check_runs, _create_timm

    first = _create_timm(name, num_classes)
    builds = [(first, resolution)]
    if "img_size" in inspect.signature(type(first).__init__).parameters:
        builds.append((None, 4 * resolution))
    err: Exception | None = None
    for module, probe in builds:
        module = module or _create_timm(name, num_classes, img_size=probe)
        try:
            _check_runs(module, name, probe)
            to_cifar_layout(module, probe)
            _check_runs(module, name, resolution)
        except (ModelCannotRun, AutovitError) as e:
            err = e
            continue
        return module.train()
    raise AutovitError(f"{name} cannot be put in the CIFAR layout at {resolution} px: {err}")


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
    if name.endswith(CIFAR_SUFFIX):
        return timm_in_cifar_layout(base_model(name))
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
                              ev.limited(data.test, profile.test_images), log)
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
    for name in (SEARCHED, *TIMM_MODELS, *(m + CIFAR_SUFFIX for m in TIMM_MODELS)):
        units = {s: cache.load(f"train_{name}_s{s}") for s in seeds}
        done = {s: u for s, u in units.items() if u}
        by_model[name] = done
        accs = [u["full"]["test_top1"] for u in done.values()]
        ms = lat["median_ms"].get(base_model(name)) if lat else None
        rows.append({"model": name, "seeds": sorted(done), "test_top1_mean": float(np.mean(accs)) if accs else None,
                     "test_top1_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                     "params": next(iter(done.values()))["params"] if done else None, "latency_ms": ms,
                     "latency_vs_searched": ms / lat["median_ms"][SEARCHED] if lat and ms else None})
    paired = {}
    for name in (n for n in by_model if n != SEARCHED):
        both = [s for s in seeds if s in by_model[SEARCHED] and s in by_model[name]]
        if both:
            paired[name] = ev.paired_over_seeds([by_model[SEARCHED][s]["full"]["test_top1"] for s in both],
                                                [by_model[name][s]["full"]["test_top1"] for s in both])
    lines = [f"# Searched model vs hand-designed mobile models (issue 13, `{profile.name}`)", "",
             f"- Same recipe for all (cifar-cpu preset, 32 px, {profile.standalone_steps} steps, batch "
             f"{profile.batch_size}), seeds {seeds}, top-1 on the test split",
             "- Latency: batch 1 at 256 px (deployment setting), onnxruntime, 1 thread, interleaved rounds" +
             (f" ({lat['rounds']} rounds x {lat['runs']} runs; machine in latency.json)" if lat else " (not measured yet)"),
             "- Layouts: the searched model trains in the CIFAR proxy layout, the timm models in their ImageNet layouts "
             f"and, as `<model>{CIFAR_SUFFIX}`, in the CIFAR proxy layout too (first downsampling steps at stride 1, "
             "`timm_in_cifar_layout`); latency is always the deployed model's", ""]
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
    ap.add_argument("--models", nargs="+", default=[SEARCHED, *TIMM_MODELS, *(m + CIFAR_SUFFIX for m in TIMM_MODELS)])
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
            unknown = sorted(m for m in args.models if not is_trainable(m))
            if unknown:
                raise AutovitError(f"unknown model(s) {', '.join(unknown)}",
                                   hint=f"use {SEARCHED} and/or {', '.join(TRAINABLE_TIMM)}, each also with the "
                                        f"suffix {CIFAR_SUFFIX} (the model in the CIFAR proxy layout)")
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
