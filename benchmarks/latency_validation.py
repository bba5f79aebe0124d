"""Latency table + Eq. 6 model: build, fit and validate on this CPU (issue 4 acceptance run).

For each space: profile the anchor block variants in context and impute the rest (onnxruntime,
1 thread, the space's resolution: 256 px, 224 px for mnv4_s; pinned to the last CPU), time 24
fitting subnets, fit the model (NNLS), then
time 50 held-out random subnets twice and report the model, the re-test noise floor and the
ablations. Last, measure every block variant (the `--blocks all` table) and score it on the same
subnets, so imputation is compared with measurement side by side. Writes
luts/<space>_ort_1t_<resolution>.json and benchmarks/results/latency_validation_<space>.{json,md,png}.

    taskset -c 1 .venv/bin/python benchmarks/latency_validation.py --space xxs --space s
    taskset -c 1 .venv/bin/python benchmarks/latency_validation.py --space mnv4_s --space mnv4_m
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from autovit.io_utils import atomic_write_text, save_json
from autovit.latency.measure import MeasureConfig, pin_process
from autovit.latency.predictor import LatencyModel
from autovit.latency.profile import build_table, profile_space, sample_distinct
from autovit.latency.validate import error_metrics, fit_data, plot_validation, prediction_rows, run_validation
from autovit.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def throughput(model: LatencyModel, space: SearchSpace, n: int = 100_000) -> dict[str, float]:
    """Archs per second of `model.predict` on n random archs (cold cache, then warm), per second of
    CPU time used by this process (the machine is shared, so wall time mostly measures the others)
    and per wall-clock second."""
    rng = random.Random(0)
    pool = [space.sample(rng) for _ in range(20_000)]
    archs = [pool[i % len(pool)] for i in range(n)]
    cold = LatencyModel(model.table, model.coef)
    out: dict[str, float] = {"archs": n}
    for phase in ("cold", "warm"):
        c, w = time.process_time(), time.perf_counter()
        cold.predict(archs)
        out[f"{phase}_archs_per_cpu_s"] = n / (time.process_time() - c)
        out[f"{phase}_archs_per_s"] = n / (time.perf_counter() - w)
    return out


def fmt_row(name: str, m: dict) -> str:
    cells = [f"{m[k]:.2f}" if k in m else "-" for k in ("mape", "rmspe", "max_error", "within_5", "within_10")]
    return f"| {name} | " + " | ".join(cells) + f" | {m['kendall_tau']:.3f} | {m['spearman_rho']:.3f} |"


def write_markdown(out: Path, space: str, res: dict, cmd: str) -> None:
    v, fp, b = res["validation"], res["fingerprint"], res["build"]
    m, noise = v["metrics"], v["retest_noise"]
    lines = [
        f"# Latency model validation: space {space.upper()}", "",
        f"Machine: {fp['cpu']}, {fp['cores']} cores, {fp['os']}; {fp['runtime']}, {fp['threads']} thread, "
        f"graph optimisation {fp.get('graph_optimization')}, {fp['resolution']}x{fp['resolution']}, batch 1, "
        f"pinned to CPU {res['pinned_cpu']} (CPU 0 busy with other jobs). torch {torch.__version__}.", "",
        f"Command: `{cmd}`" + (f", then `{cmd} --rewrite` (refit on the stored fitting measurements with the "
                               "current term candidates and rescore the stored held-out measurements; no new timing)"
                               if res.get("rewritten") else ""), "",
        "## Build", "",
        f"- modules measured in context: **{b['modules_measured']}** ({b['kinds']}) in {b['context_networks']} "
        f"shared context networks (goal < 100); {b['modules_imputed']} more block variants imputed from operator "
        f"counts (docs/latency.md, \"Anchors\")",
        f"- fitting subnets: {b['fit_subnets']} (fit MAPE {b['fit_mape']:.2f}%)",
        f"- build time (table + fitting subnets): **{b['build_seconds'] / 60:.1f} min** (goal <= 10 min); of which "
        f"ONNX export of the table networks {b['export_seconds']:.0f}s, fitting subnets (export + timing) "
        f"{b['fit_seconds']:.0f}s; {b['rounds']} rounds per table network, {b['subnet_rounds']} per subnet",
        f"- reference network: {b['reference_ms']:.2f} ms, spread (IQR/median over the build) {b['reference_spread']:.1%}",
        f"- coefficients: {', '.join(f'{k}={c:.3g}' for k, c in b['coef'].items())}",
        f"- term set chosen by leave-one-out MAPE on the fitting subnets: {b['selection']}", "",
        f"## {v['samples']} held-out random subnets (disjoint from the fit set)", "",
        "Errors in % of the measured latency (ratio to the interleaved reference; truth = mean of two passes).", "",
        "| predictor | MAPE | RMSPE | max | within 5% | within 10% | Kendall tau | Spearman rho |",
        "|---|---|---|---|---|---|---|---|",
        fmt_row("**LUT + Eq. 6 (ours)**", m),
        fmt_row("re-test noise floor (pass 2 vs pass 1)", noise),
    ]
    for name, row in v["ablations"].items():
        if name == "every_module_measured":
            lines.append(fmt_row(f"every module measured ({row['modules']}, table {row['table_seconds'] / 60:.1f} min)",
                                 row))
        elif name != "latency_model":
            lines.append(fmt_row(name.replace("_", " "), row))
    ent = v.get("imputed_entries")
    if ent:
        lines += ["", "Entries of this table against the same entries measured in the every-module table "
                      "(absolute difference, % of the measured value):", "",
                  "| entries | n | median | mean | p90 |", "|---|---|---|---|---|"]
        names = {"imputed": "imputed (not measured here)", "anchor_retest": "anchors (measured twice: noise floor)"}
        lines += [f"| {names[g]} | {e['n']} | {e['median_abs_pct']:.1f} | {e['mean_abs_pct']:.1f} | "
                  f"{e['p90_abs_pct']:.1f} |" for g, e in ent.items()]
    goals = res["goals"]
    lines += ["", f"Prediction error / re-test noise: {v['error_over_noise']:.2f} (goal <= 2)", "",
              "| goal | target | got | met |", "|---|---|---|---|"]
    lines += [f"| {g['name']} | {g['target']} | {g['value']:.3g} | {'yes' if g['met'] else 'NO'} |" for g in goals]
    t = res["throughput"]
    lines += ["", f"Prediction throughput ({t['archs']:,} archs in one call): {t['cold_archs_per_cpu_s']:,.0f} archs per "
                  f"CPU-second with a cold cache, {t['warm_archs_per_cpu_s']:,.0f} warm; per wall-clock second on the "
                  f"shared core {t['cold_archs_per_s']:,.0f} cold / {t['warm_archs_per_s']:,.0f} warm.", "",
              f"Plot: `latency_validation_{space}.png`.", ""]
    atomic_write_text(out, "\n".join(lines))


def run(space_name: str, fit_subnets: int, samples: int, rounds: int, subnet_rounds: int, out_dir: Path,
        lut_dir: Path, cache: str | None) -> dict:
    space = SearchSpace.builtin(space_name)
    cpu = pin_process()
    config = MeasureConfig(backend="ort", threads=1, rounds=rounds, cache_dir=cache)
    subnet_config = MeasureConfig(backend="ort", threads=1, rounds=subnet_rounds, cache_dir=cache)
    t0 = time.time()

    def progress(phase: str, done: int, total: int) -> None:
        if done == total or done % max(1, total // 5) == 0:
            print(f"[{time.time() - t0:7.1f}s] {space_name} {phase} {done}/{total}", flush=True)

    res_px = space.resolution[0]  # the space's deployment resolution (256 for the paper's, 224 for mnv4_s)
    model = profile_space(space, res_px, config, fit_subnets, seed=0, progress=progress, force=True,
                          subnet_config=subnet_config)
    lut_path = lut_dir / f"{space_name}_ort_1t_{res_px}.json"
    model.save(lut_path)
    table = model.table
    print(f"table written: {lut_path} in {table.meta['build_seconds']:.0f}s", flush=True)
    t_val = time.time()
    report = run_validation(model, space, samples, seed=1, config=subnet_config, progress=progress, mlp_ablation=True)
    report["validation_seconds"] = time.time() - t_val
    save_json(out_dir / f"latency_validation_{space_name}.json", {"space": space_name, "validation": report})
    report["ablations"]["every_module_measured"], report["imputed_entries"] = measure_everything(
        model, space, config, held_out_archs(space, model, report), np.asarray(report["measured_ratio"]), progress,
        out_dir / f"latency_validation_{space_name}_every_module_table.json")
    build = {"modules_measured": table.meta["modules_measured"], "modules_imputed": table.meta["modules_imputed"],
             "kinds": table.kind_counts(measured_only=True), "context_networks": table.meta["context_networks"],
             "fit_subnets": fit_subnets, "export_seconds": table.meta.get("export_seconds"),
             "fit_seconds": table.meta.get("fit_seconds"), "rounds": rounds, "subnet_rounds": subnet_rounds,
             "build_seconds": table.meta["build_seconds"], "reference_ms": table.reference_ms,
             "reference_spread": table.reference["spread"]}
    res = {"space": space_name, "fingerprint": table.fingerprint, "pinned_cpu": cpu, "build": build,
           "validation": report, "lut": os.path.relpath(lut_path, ROOT), "onnxruntime": onnxruntime.__version__,
           "torch": torch.__version__, "total_seconds": time.time() - t0}
    return finish(space_name, res, model, out_dir)


def held_out_archs(space: SearchSpace, model: LatencyModel, report: dict) -> list:
    """The held-out subnets of a validation report, regenerated from its seed (checked by key)."""
    fit_a, _ = fit_data(model)
    archs = [a.replace(resolution=model.table.resolution)
             for a in sample_distinct(space, report["samples"], report["seed"] + 1000, fit_a)]
    if [a.key() for a in archs] != report["archs"]:
        raise SystemExit("the regenerated held-out archs differ from the stored ones; re-run the benchmark")
    return archs


def measure_everything(model: LatencyModel, space: SearchSpace, config: MeasureConfig, archs: list,
                       truth: np.ndarray, progress, table_path: Path) -> tuple[dict, dict]:
    """The ablation "every block variant measured": that table (written to `table_path`), fitted on
    the same fitting subnets, scored on the same held-out subnets; plus imputed entries against
    their measurement and the anchors' re-measurement (the entry-level noise floor)."""
    built = build_table(space, model.table.resolution, config, model.table.num_classes,
                        lambda p, d, n: progress(f"all-{p}", d, n), force=True, measure="all")
    fit_a, fit_y = fit_data(model)
    full, selection = LatencyModel.fit_select(built.table, fit_a, fit_y)
    fit_mape = float(np.mean(np.abs(full.predict_ratio(fit_a) - fit_y) / fit_y) * 100)
    built.table.model = {**model.table.model, "coef": full.coef, "terms": list(full.coef), "selection": selection,
                         "fit_mape": fit_mape}
    built.table.save(table_path)
    row = {**error_metrics(full.predict_ratio(archs), truth), "modules": len(built.table.entries),
           "table_seconds": round(built.seconds, 1)}
    errors: dict[str, list[float]] = {"imputed": [], "anchor_retest": []}
    for key, e in model.table.entries.items():
        other = built.table.entries[key]["ratio_to_ref"]
        group = "imputed" if e.get("source") == "imputed" else "anchor_retest"
        errors[group].append(abs(e["ratio_to_ref"] - other) / abs(other) * 100)
    entry = {g: {"n": len(v), "median_abs_pct": float(np.median(v)), "mean_abs_pct": float(np.mean(v)),
                 "p90_abs_pct": float(np.percentile(v, 90))} for g, v in errors.items() if v}
    return row, entry


def finish(space_name: str, res: dict, model: LatencyModel, out_dir: Path) -> dict:
    """Goals, throughput, JSON, plot and markdown from a result dict and its fitted model."""
    build, report, table = res["build"], res["validation"], model.table
    build.update(coef=model.coef, selection=table.model.get("selection"), fit_mape=table.model["fit_mape"])
    m, n_mod, secs = report["metrics"], build["modules_measured"], build["build_seconds"]
    res["goals"] = [
        {"name": "modules measured", "target": "< 100", "value": n_mod, "met": n_mod < 100},
        {"name": "build time (min)", "target": "<= 10", "value": secs / 60, "met": secs <= 600},
        {"name": "MAPE (%)", "target": "<= 3", "value": m["mape"], "met": m["mape"] <= 3},
        {"name": "within +-5% (%)", "target": ">= 90", "value": m["within_5"], "met": m["within_5"] >= 90},
        {"name": "within +-10% (%)", "target": "100", "value": m["within_10"], "met": m["within_10"] >= 100},
        {"name": "Kendall tau", "target": ">= 0.9", "value": m["kendall_tau"], "met": m["kendall_tau"] >= 0.9},
        {"name": "error / re-test noise", "target": "<= 2", "value": report["error_over_noise"],
         "met": report["error_over_noise"] <= 2},
    ]
    res["throughput"] = throughput(model, SearchSpace.builtin(space_name))
    save_json(out_dir / f"latency_validation_{space_name}.json", res)
    plot_validation(report, out_dir / f"latency_validation_{space_name}.png",
                    f"AutoViT-{space_name.upper()} on {table.fingerprint['runtime']}, 1 thread: "
                    f"{report['samples']} held-out subnets")
    cmd = (f".venv/bin/python benchmarks/latency_validation.py --space {space_name} --rounds {build['rounds']} "
           f"--subnet-rounds {build['subnet_rounds']} --fit-subnets {build['fit_subnets']}")
    write_markdown(out_dir / f"latency_validation_{space_name}.md", space_name, res, cmd)
    print(json.dumps({g["name"]: [round(g["value"], 3), g["met"]] for g in res["goals"]}), flush=True)
    return res


def rewrite(space_name: str, out_dir: Path) -> dict:
    """Refits the model on the stored fitting measurements with the current term candidates
    (leave-one-out selection), rescores the stored held-out measurements and rewrites the table,
    JSON, markdown and plot. No new timing: table entries and measured subnets are reused."""
    path = out_dir / f"latency_validation_{space_name}.json"
    res = json.loads(path.read_text())
    pin_process()
    space = SearchSpace.builtin(space_name)
    lut_path = ROOT / res["lut"]
    old = LatencyModel.load(lut_path)
    fit_a, fit_y = fit_data(old)
    model, selection = LatencyModel.fit_select(old.table, fit_a, fit_y)
    pred = model.predict_ratio(fit_a)
    old.table.model.update(coef=model.coef, terms=list(model.coef), selection=selection,
                           method="nnls, relative error; term set chosen by leave-one-out MAPE",
                           fit_mape=float(np.mean(np.abs(pred - fit_y) / fit_y) * 100))
    model = LatencyModel(old.table, model.coef)
    model.save(lut_path)
    res["rewritten"] = True
    v = res["validation"]
    archs = held_out_archs(space, model, v)
    rows = prediction_rows(model, space, archs, np.asarray(v["measured_ratio"]))
    if "every_module_measured" in v["ablations"]:  # measured, not refittable without its table
        rows["every_module_measured"] = v["ablations"]["every_module_measured"]
    v.update(metrics=rows["latency_model"], ablations=rows,
             error_over_noise=rows["latency_model"]["mape"] / max(v["retest_noise"]["mape"], 1e-9),
             predicted_ratio=model.predict_ratio(archs).tolist())
    return finish(space_name, res, model, out_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", action="append", default=None)
    ap.add_argument("--fit-subnets", type=int, default=24)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=9, help="timing rounds per table network")
    ap.add_argument("--subnet-rounds", type=int, default=5, help="timing rounds per whole subnet")
    ap.add_argument("--onnx-cache", default=None, help="directory reusing ONNX exports across runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--luts", type=Path, default=ROOT / "luts")
    ap.add_argument("--rewrite", action="store_true",
                    help="only re-measure the prediction throughput and rewrite the markdown/plot from saved results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.rewrite:
        for name in args.space or ["xxs", "s"]:
            rewrite(name, args.out)
        return
    for name in args.space or ["xxs", "s"]:
        run(name, args.fit_subnets, args.samples, args.rounds, args.subnet_rounds, args.out, args.luts,
            args.onnx_cache)


if __name__ == "__main__":
    main()
