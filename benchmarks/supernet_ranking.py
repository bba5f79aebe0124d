"""Issue 13 ablation: which supernet training ranks subnets like standalone training?

One unit per training choice, all at the same budget of subnet forward/backward passes
(`--profile`: cpu 8,000 passes; a uniform step is 1 pass, a sandwich step with 2 random subnets
is 4 passes, so sandwich runs a quarter of the steps; its largest-subnet pass costs more than
an average one, which this budget does not charge). Choices:

- uniform: one subnet per step, every dimension uniform (paper Eq. 4-5, the library default)
- uniform_arch: one subnet per step, every arch equally likely (3-stage archs 2%, not 50%)
- sandwich: largest + smallest + 2 random per step, all on the labels
- sandwich_kd: sandwich with in-place distillation from the largest subnet (BigNAS/AttentiveNAS)
- sandwich_kd_uniform_arch: both changes
- uniform_2x: uniform at twice the budget (schedule length)

A unit trains the supernet on the CIFAR proxy (src/autovit/spaces/xxs_cifar.yaml; checkpoints in
runs/evidence/_runs/<profile>/supernet_ranking/<choice>/, resumed after an interruption) and evaluates the ranking
study's subnets (benchmarks/ranking_study.py plan) with inherited weights on 5,000 held-out
training images after BN recalibration. The table (benchmarks/results/supernet_ranking/<profile>.md)
gives Kendall tau / Spearman rho with bootstrap CIs against whatever standalone units exist.

    python benchmarks/supernet_ranking.py --choices uniform sandwich_kd     # CPU: hours per choice
    python benchmarks/supernet_ranking.py --report                          # table from the units so far
    python benchmarks/supernet_ranking.py --profile smoke --choices uniform # a minute, numbers meaningless
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import _evidence as ev
from autovit.errors import AutovitError
from _log import LogConsole, log

CHOICES: dict[str, dict[str, Any]] = {
    "uniform": dict(sampling="uniform"),
    "uniform_arch": dict(sampling="uniform", arch_distribution="uniform_arch"),
    "sandwich": dict(sampling="sandwich", sandwich_random=2),
    "sandwich_kd": dict(sampling="sandwich", sandwich_random=2, inplace_kd=True),
    "sandwich_kd_uniform_arch": dict(sampling="sandwich", sandwich_random=2, inplace_kd=True,
                                     arch_distribution="uniform_arch"),
    "uniform_2x": dict(sampling="uniform"),
}
STUDY = "supernet_ranking"
BEYOND_SIZE_NOTE = ("*Tau beyond size*: Kendall tau of inherited vs standalone accuracy after removing from each what "
                    "log(params) explains (residuals of a least-squares line): whether the supernet ranks subnets for "
                    "any reason other than the size that both accuracies may track. The line is refitted in every "
                    "bootstrap resample; n/a below 4 subnets (3 residuals of a line rank +-1 by construction).")


def passes_per_step(choice: str) -> int:
    """Subnet forward/backward passes of one training step of `choice`."""
    opts = CHOICES[choice]
    return 1 if opts["sampling"] == "uniform" else 2 + opts["sandwich_random"]


def steps_for(choice: str, passes: int) -> int:
    return max((2 if choice == "uniform_2x" else 1) * passes // passes_per_step(choice), 1)


def supernet_config(profile: ev.Profile, choice: str, data_dir: str, seed: int) -> Any:
    return ev.train_config(profile, data_dir, seed, max_steps=steps_for(choice, profile.supernet_passes),
                           **CHOICES[choice])


def trained_supernet(profile: ev.Profile, choice: str, data_dir: str, seed: int = 0, family: ev.Family = ev.XXS,
                     out: Any = None) -> tuple[Any, Any, Any]:
    """(supernet, trainer, data) of `choice` over `family`'s proxy space: loaded from `out` (default:
    this study's run folder of the choice) when finished, else trained (resumed) now."""
    from autovit.data import build_datasets
    from autovit.supernet import Supernet
    from autovit.train.trainer import Trainer, seed_everything

    if choice not in CHOICES:
        raise AutovitError(f"unknown supernet training choice '{choice}'", hint=f"use one of {', '.join(CHOICES)}")
    cfg = supernet_config(profile, choice, data_dir, seed)
    data = build_datasets(cfg)
    out = out or ev.run_dir(STUDY, profile, choice)
    seed_everything(seed)
    supernet = Supernet(family.proxy_space(), num_classes=data.num_classes)
    trainer = Trainer(cfg, supernet, data, out_dir=out, console=LogConsole())
    if (out / "supernet.pt").is_file():
        from autovit.train.checkpoint import load_supernet_checkpoint

        trainer.model.load_state_dict(load_supernet_checkpoint(out / "supernet.pt").supernet.state_dict())
        trainer.step = cfg.max_steps
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        trainer.elapsed_s = float(summary.get("train_time_s", 0.0))
        return trainer.model, trainer, data
    if (out / "checkpoints" / "last.pt").is_file():
        trainer.resume(out / "checkpoints" / "last.pt")
    log(f"supernet {family.deploy} {choice}: {cfg.max_steps} steps ({profile.supernet_passes} pass budget)")
    trainer.fit()
    return trainer.model, trainer, data


def run_choice(profile: ev.Profile, choice: str, data_dir: str, seed: int) -> dict[str, Any]:
    plan = ev.study_plan(profile, seed)
    supernet, trainer, data = trained_supernet(profile, choice, data_dir, seed)
    evaluator = ev.subnet_evaluator(profile, supernet, trainer, data)
    inherited = {}
    for row in plan:
        t0 = time.perf_counter()
        m = evaluator.evaluate(ev.load_arch(row["arch"]))
        inherited[row["name"]] = {"val_top1": m["top1"], "val_loss": m["loss"]}
        log(f"{choice} {row['name']}: inherited top-1 {m['top1']:.2f}% ({time.perf_counter() - t0:.0f}s)")
    return {"choice": choice, "options": CHOICES[choice], "config": trainer.cfg.to_dict(),
            "supernet_steps": trainer.step, "supernet_train_s": round(trainer.elapsed_s, 1),
            "passes": trainer.step * passes_per_step(choice),
            "val_images": min(profile.val_images, len(data.val)), "calib_images": profile.calib_images,
            "eval_dtype": profile.eval_dtype,
            "inherited": inherited}


def ablation_rows(profile: ev.Profile) -> tuple[list[dict[str, Any]], int]:
    """Per finished choice and ranking-study ground truth that has units (`ev.standalone_truths`:
    the short length always, the others once they have units): tau/rho of inherited held-out top-1
    vs standalone test top-1 over the subnets trained alone so far; and how many short units exist."""
    defined = ev.standalone_truths(profile)
    truths = {t.label: standalone_units(profile, t) for t in defined.values()}
    short = truths[defined["short"].label]
    cache = ev.UnitCache(ev.results_dir(STUDY, profile))
    rows = []
    for choice in CHOICES:
        unit = cache.load(choice)
        if unit is None:
            continue
        for length, alone in truths.items():
            names = [n for n in alone if n in unit["inherited"]]
            if not names and alone is not short:
                continue  # a ground truth without units yet: no row
            inherited = [unit["inherited"][n]["val_top1"] for n in names]
            standalone = [alone[n]["full"]["test_top1"] for n in names]
            corr = ev.rank_correlation(inherited, standalone)
            beyond = ev.rank_correlation_beyond_size(inherited, standalone, [alone[n]["params"] for n in names])
            rows.append({"choice": choice, "length": length, "passes": unit["passes"], "steps": unit["supernet_steps"],
                         "train_min": unit["supernet_train_s"] / 60, **corr,
                         "beyond_size": {k: beyond.get(k) for k in ("kendall_tau", "kendall_tau_ci95", "kendall_tau_p")},
                         "inherited_mean": sum(v["val_top1"] for v in unit["inherited"].values()) / len(unit["inherited"])})
    return rows, len(short)


def standalone_units(profile: ev.Profile, truth: ev.StandaloneTruth) -> dict[str, dict[str, Any]]:
    """The ranking study's finished units of one ground truth by subnet name (`subnetNN<suffix>`;
    for a `best_of` truth, the better of its truths' units of each subnet that has all of them)."""
    if truth.best_of:
        truths = ev.standalone_truths(profile)
        parts = [standalone_units(profile, truths[name]) for name in truth.best_of]
        common = sorted(set.intersection(*(set(p) for p in parts)))
        return {n: max((p[n] for p in parts), key=lambda u: u["full"]["test_top1"]) for n in common}
    cache = ev.UnitCache(ev.results_dir("ranking_study", profile))
    pattern = re.compile(r"(subnet\d+)" + re.escape(truth.suffix))
    return {m.group(1): cache.load(n) for n in cache.names() if (m := pattern.fullmatch(n))}


def report(profile: ev.Profile) -> str:
    rows, n_alone = ablation_rows(profile)
    lines = [f"# Supernet training choices vs ranking quality (issue 13, profile `{profile.name}`)", "",
             f"- Budget per choice: {profile.supernet_passes} subnet passes (uniform_2x: twice that); CIFAR-10 proxy "
             f"space xxs_cifar at 32 px, batch {profile.batch_size}",
             f"- Inherited top-1 on {profile.val_images} held-out training images (BN recalibrated on "
             f"{profile.calib_images}; {profile.eval_dtype} autocast); ground truth: standalone test top-1 of the ranking-study subnets "
             f"({n_alone} of {profile.n_subnets} trained so far)",
             f"- Regenerate: `python benchmarks/supernet_ranking.py --profile {profile.name} --report`", ""]
    lines += ev.md_table(["choice", "passes", "steps", "train (min)", "mean inherited top-1", "standalone length", "n",
                          "Kendall tau", "tau 95% CI", "Spearman rho", "rho 95% CI", "tau beyond size", "its 95% CI"],
                         [[r["choice"], r["passes"], r["steps"], round(r["train_min"], 1), round(r["inherited_mean"], 2),
                           r["length"], r["n"], ev.fmt(r.get("kendall_tau")), ev.fmt_ci(r.get("kendall_tau_ci95")), ev.fmt(r.get("spearman_rho")),
                           ev.fmt_ci(r.get("spearman_rho_ci95")), ev.fmt(r["beyond_size"]["kendall_tau"]),
                           ev.fmt_ci(r["beyond_size"]["kendall_tau_ci95"])] for r in rows])
    missing = [c for c in CHOICES if c not in {r["choice"] for r in rows}]
    lines += ["", f"Choices not run yet: {', '.join(missing) or 'none'}. With n < 12 subnets the CIs are wide; a "
                  "tau whose CI contains 0 shows no ranking.",
              "", BEYOND_SIZE_NOTE, ""]
    text = "\n".join(lines)
    ev.write_report(STUDY, profile, {"profile": profile.name, "rows": rows, "standalone_units": n_alone}, text)
    return text


def main() -> int:
    ap = ev.study_parser(__doc__)
    ap.add_argument("--choices", nargs="+", default=["uniform", "sandwich_kd"], help=f"of {', '.join(CHOICES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="only write the table from the finished units")
    args = ap.parse_args()
    profile = ev.get_profile(args.profile)

    def body() -> None:
        if not args.report:
            cache = ev.UnitCache(ev.results_dir(STUDY, profile))
            for choice in args.choices:
                if choice not in CHOICES:
                    raise AutovitError(f"unknown choice '{choice}'", hint=f"use one of {', '.join(CHOICES)}")
                cache.run(choice, lambda c=choice: run_choice(profile, c, args.data_dir, args.seed), log)
        print(report(profile))

    return ev.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
