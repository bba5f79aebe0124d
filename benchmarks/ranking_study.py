"""Issue 13 ranking study: does inherited-weight accuracy rank subnets like standalone training?

1. Plan (unit `plan`, fixed once): `n_subnets` archs of the XXS space stratified over predicted
   deployment latency (luts/xxs_ort_1t_256.json, 256 px) -- smallest, largest and one per
   equal-count latency bin of a seeded pool -- mapped to the CIFAR proxy layout (xxs_cifar).
2. One unit per subnet (`subnetNN`): trained alone from scratch with one recipe (the library's
   Trainer, cifar-cpu preset, `standalone_steps` steps; resumed from runs/evidence/_runs/ after an
   interruption); top-1 on the full test split and on the 5,000 held-out training images, at half
   the steps (same run, mid-schedule) and at the end; per-image test correctness; wall time,
   machine, versions.
3. Report: rank settling (Kendall tau between the half-length and full-length standalone ranks)
   and, for every supernet training choice of benchmarks/supernet_ranking.py that has finished,
   Kendall tau / Spearman rho of inherited vs standalone accuracy with bootstrap 95% CIs. It
   reports the units that exist (with n) and names the missing ones.

    python benchmarks/ranking_study.py --max-units 1        # one more subnet (CPU: ~30-60 min)
    python benchmarks/ranking_study.py --truth long         # the 8-epoch units (rank settling), --long too
    python benchmarks/ranking_study.py --truth lr5e-4       # the recipe check: the same 2 epochs at lr 5e-4
    python benchmarks/ranking_study.py --report             # the report from the units so far
    python benchmarks/ranking_study.py --profile smoke      # a minute, numbers meaningless
"""

from __future__ import annotations

import sys
from typing import Any

import _evidence as ev
import supernet_ranking
from _log import log

STUDY = "ranking_study"


def unit_name(row: dict[str, Any], truth: ev.StandaloneTruth) -> str:
    return row["name"] + truth.suffix


def run_subnet(profile: ev.Profile, row: dict[str, Any], data_dir: str, seed: int, truth: ev.StandaloneTruth) -> dict:
    from autovit.data import build_datasets
    from autovit.model import AutoViT
    from autovit.train.trainer import seed_everything

    cfg = ev.train_config(profile, data_dir, seed, max_steps=truth.steps, **dict(truth.changes))
    data = build_datasets(cfg)
    seed_everything(seed)
    arch = ev.load_arch(row["arch"])
    model = AutoViT(arch, num_classes=data.num_classes)
    out = ev.run_dir(STUDY, profile, unit_name(row, truth), arch)
    res = ev.train_standalone(model, cfg, data, out, ev.limited(data.val, profile.val_images),
                              ev.limited(data.test, profile.test_images), log)
    log(f"{unit_name(row, truth)}: test top-1 {res['full']['test_top1']:.2f}% after {res['steps']} steps "
        f"({res['train_s'] / 60:.1f} min)")
    return {**{k: row[k] for k in ("name", "arch", "key", "predicted_deploy_ms", "params", "macs_32px")},
            "config": cfg.to_dict(), **res}


def summary(profile: ev.Profile) -> dict[str, Any]:
    plan = ev.study_plan(profile)
    cache = ev.UnitCache(ev.results_dir(STUDY, profile))
    truths = ev.standalone_truths(profile)
    units = {r["name"]: cache.load(unit_name(r, truths["short"])) for r in plan}
    done = {n: u for n, u in units.items() if u is not None}
    settled = [n for n, u in done.items() if u.get("half")]
    settling = ev.rank_correlation([done[n]["half"]["test_top1"] for n in settled],
                                   [done[n]["full"]["test_top1"] for n in settled])
    others = {}
    for name, truth in truths.items():
        if name == "short":
            continue
        alone = supernet_ranking.standalone_units(profile, truth)
        both = [n for n in done if n in alone]
        source = ("per subnet the better of units " + " and ".join(f"`subnetNN{truths[b].suffix}`" for b in truth.best_of)
                  if truth.best_of else f"units `subnetNN{truth.suffix}`")
        others[name] = {"label": truth.label, "source": source, "purpose": truth.purpose,
                        "done": sorted(alone),
                        "vs_short": ev.rank_correlation([done[n]["full"]["test_top1"] for n in both],
                                                        [alone[n]["full"]["test_top1"] for n in both]),
                        "test_top1": {n: alone[n]["full"]["test_top1"] for n in sorted(alone)}}
    rows, _ = supernet_ranking.ablation_rows(profile)
    return {"profile": profile.name, "planned": len(plan), "done": sorted(done),
            "missing": sorted(n for n, u in units.items() if u is None), "settling_half_vs_full": settling,
            "other_truths": others,
            "subnets": [{"name": n, "predicted_deploy_ms": u["predicted_deploy_ms"], "params": u["params"],
                         "half_test_top1": (u.get("half") or {}).get("test_top1"),
                         "test_top1": u["full"]["test_top1"], "val_top1": u["full"]["val_top1"],
                         "train_min": u["train_s"] / 60} for n, u in sorted(done.items())],
            "inherited_vs_standalone": rows}


def report(profile: ev.Profile) -> str:
    s = summary(profile)
    st = s["settling_half_vs_full"]
    short = {r["name"]: r["test_top1"] for r in s["subnets"]}
    lines = [f"# Ranking study: inherited vs standalone accuracy (issue 13, profile `{profile.name}`)", "",
             f"- Subnets: {len(s['done'])} of {s['planned']} trained alone ({profile.standalone_steps} steps, batch "
             f"{profile.batch_size}, cifar-cpu recipe, CIFAR proxy space xxs_cifar at 32 px); missing: "
             f"{', '.join(s['missing']) or 'none'}",
             "- Standalone accuracy: full CIFAR-10 test split; inherited accuracy: 5,000 held-out training images",
             f"- Regenerate: `python benchmarks/ranking_study.py --profile {profile.name} --report`; machine, versions, "
             f"command and wall time of each unit are in its JSON under {ev.results_dir(STUDY, profile).relative_to(ev.ROOT)}/",
             ""]
    lines += ev.md_table(["subnet", "predicted deploy ms", "params", "test top-1 at half", "test top-1",
                          "held-out top-1", "train (min)"],
                         [[r["name"], round(r["predicted_deploy_ms"], 2), f"{r['params']:,}",
                           None if r["half_test_top1"] is None else round(r["half_test_top1"], 2),
                           round(r["test_top1"], 2), round(r["val_top1"], 2), round(r["train_min"], 1)]
                          for r in s["subnets"]])
    lines += ["", f"Rank settling (standalone test top-1 at half vs full steps, n = {st['n']}): Kendall tau "
                  f"{ev.fmt(st.get('kendall_tau'))} (95% CI {ev.fmt_ci(st.get('kendall_tau_ci95'))}). The half-length value "
                  "is mid-schedule (learning rate not yet annealed), so it is a conservative check.", ""]
    for o in s["other_truths"].values():
        vs = o["vs_short"]
        lines += [f"{o['purpose'].capitalize()} -- {profile.standalone_steps} steps vs {o['label']} ("
                  f"{o['source']}, n = {vs['n']}): Kendall tau {ev.fmt(vs.get('kendall_tau'))} (95% CI "
                  f"{ev.fmt_ci(vs.get('kendall_tau_ci95'))}); test top-1 ({profile.standalone_steps} steps -> {o['label']}): "
                  + (", ".join(f"{n} {short[n]:.2f} -> {v:.2f}%" if n in short else f"{n} {v:.2f}%"
                               for n, v in o["test_top1"].items()) or "none yet") + ".", ""]
    lines += ["Inherited (per supernet training choice) vs standalone (each ground truth that has units):", ""]
    lines += ev.md_table(["choice", "standalone ground truth", "n", "Kendall tau", "tau 95% CI", "p", "Spearman rho",
                          "rho 95% CI", "tau beyond size", "its 95% CI"],
                         [[r["choice"], r["length"], r["n"], ev.fmt(r.get("kendall_tau")),
                           ev.fmt_ci(r.get("kendall_tau_ci95")), ev.fmt(r.get("kendall_tau_p")),
                           ev.fmt(r.get("spearman_rho")), ev.fmt_ci(r.get("spearman_rho_ci95")),
                           ev.fmt(r["beyond_size"]["kendall_tau"]), ev.fmt_ci(r["beyond_size"]["kendall_tau_ci95"])]
                          for r in s["inherited_vs_standalone"]] or [["(no supernet unit yet)"] + [None] * 9])
    lines += ["", supernet_ranking.BEYOND_SIZE_NOTE, ""]
    text = "\n".join(lines + [""])
    ev.write_report(STUDY, profile, s, text)
    supernet_ranking.report(profile)  # its table's ground truth is these units: keep it in step
    return text


def main() -> int:
    ap = ev.study_parser(__doc__)
    ap.add_argument("--max-units", type=int, default=None, help="train at most this many new subnets, then report")
    ap.add_argument("--only", nargs="*", default=None, help="train only these subnets (e.g. subnet03)")
    trainable = [n for n, t in ev.standalone_truths(ev.get_profile("cpu")).items() if not t.best_of]
    ap.add_argument("--truth", default="short", choices=trainable,
                    help="which ground truth to train: short (default), long (profile.long_steps: the settling "
                         "check, units subnetNN_long) or lr5e-4 (the recipe check, units subnetNN_lr5e-4)")
    ap.add_argument("--long", action="store_true", help="the same as --truth long")
    ap.add_argument("--report", action="store_true", help="only write the report from the finished units")
    args = ap.parse_args()
    profile = ev.get_profile(args.profile)

    def body() -> None:
        if not args.report:
            cache = ev.UnitCache(ev.results_dir(STUDY, profile))
            truth = ev.standalone_truths(profile)["long" if args.long else args.truth]
            todo = [r for r in ev.study_plan(profile) if cache.load(unit_name(r, truth)) is None
                    and (args.only is None or r["name"] in args.only)]
            for row in todo[: args.max_units]:
                cache.run(unit_name(row, truth), lambda r=row: run_subnet(profile, r, args.data_dir, 0, truth),
                          log)
        print(report(profile))

    return ev.run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
