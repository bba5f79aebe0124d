"""Does the returned model keep its latency budget on this machine, measured? (issue 12)

Runs the pipeline (`autovit run`) several times with a small quickstart variant
(`benchmarks/configs/budget_contract.yaml`: XXS space at 32 px, digits) under different seeds and
budgets, one of them with another process loading the CPU the timing is pinned to. The first run
profiles the latency table and trains the supernet; the others reuse both (so they also test a
table measured minutes to an hour earlier, under whatever load the machine had then) and skip the
latency validation. For each run it records the resolved budget, the search's verification
(predicted vs measured ratio of each front candidate) and the final benchmark: the searched
model's per-round latency over its budget model's, interleaved. The contract holds when that
fraction is <= 1 + 2 x the budget model's measured spread (relative IQR of its rounds).

One JSON per finished run in benchmarks/results/budget_contract/ (a rerun skips finished runs and
resumes an unfinished one from its run folder under runs/budget_contract/), then a markdown summary:

    PYTHONPATH=src python benchmarks/budget_contract.py            # all runs
    PYTHONPATH=src python benchmarks/budget_contract.py --only run2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _log import log  # noqa: E402

from autovit.errors import AutovitError  # noqa: E402
from autovit.io_utils import atomic_write_text, save_json  # noqa: E402
from autovit.pipeline.config import LatencySection, PipelineConfig, SearchSection, SupernetSection  # noqa: E402
from autovit.pipeline.run import run_pipeline  # noqa: E402
from autovit.search.budget import bench_contract  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "configs" / "budget_contract.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "budget_contract"
RUNS = ROOT / "runs" / "budget_contract"
# name: (seed, budget, extra load on the timing CPU)
PLAN = {
    "run0": (0, "mobilevit_xxs", False),
    "run1": (1, "mobilevit_xxs", False),
    "run2": (2, "0.8x:mobilevit_xxs", False),
    "run3": (3, "mobilevit_xxs", True),
    "run4": (4, "1.2x:mobilevit_xxs", False),
    "run5": (5, "0.9x:mobilevit_xxs", True),
    "run6": (6, "0.7x:mobilevit_xxs", False),
    "run7": (7, "0.4x:mobilevit_xxs", False),  # below the fastest subnet: refused before searching
}


NOTES = """Reading the table:

- `budget ms now / at table time`: the same budget in ms through the reference timed in the search
  stage and through the reference stored in the table (profiled in run0). They differ by up to 2.5x
  (run2) on this shared machine; the budget in reference units is what the search compares, so
  that drift no longer moves the result (before issue 12 the budget was absolute ms from one stage
  divided by the table's reference time from another).
- run5 and run6 end 0.5% and 1.4% over 1.0, inside their measured noise (12.6%, 2.2%); the search's
  verification had timed the same models at 0.969x and 0.994x their budget.
- Earlier passes of these runs: (1) with the table profiled at timm's default 1000-class head
  (`budget_contract_head1000/`): every contract held, but predictions ran ~28% slow for the
  10-class models that ship, so the returned models sat at 0.66-0.87x their budget; hence
  `latency.num_classes: 10`. (2) With the contract taken only from `autovit bench` in the final
  stage (20 calls of one model, then 20 of the other, per round): run3 and run5 (extra load) gave
  1.244x and 1.061x and run6 1.014x, over limits from the budget model's round spread (1.204,
  1.049, 1.013). Load swings between the two blocks of calls; the final stage now times the
  contract call by call like the verification does (the `bench` column is the re-run bench).
"""


def _burn(cpu: int) -> None:  # pragma: no cover - a load generator
    os.sched_setaffinity(0, {cpu})
    x = 0
    while True:
        x = (x * 31 + 7) % 1000003


def config_for(name: str) -> PipelineConfig:
    seed, budget, _ = PLAN[name]
    base = PipelineConfig.load(CONFIG)
    cfg = replace(base, out=str(RUNS / name), seed=seed,
                  search=replace(base.search, latency_budget=budget))
    if name != "run0":  # reuse run0's table and supernet
        first = RUNS / "run0"
        cfg = replace(cfg, latency=replace(cfg.latency, table=str(first / "latency" / "table.json"),
                                           validate_samples=0),
                      supernet=replace(cfg.supernet, checkpoint=str(first / "supernet" / "supernet.pt")))
    return cfg


def summarize_run(name: str, cfg: PipelineConfig, wall_s: float, error: str | None) -> dict:
    root = Path(cfg.out)

    def load(rel: str) -> dict:
        path = root / rel
        return json.loads(path.read_text()) if path.is_file() else {}

    budget, bench, best = load("search/budget.json"), load("final_bench/bench.json"), load("search/best.json")
    stages = sorted(root.glob("*/stage.json"))
    out = {"name": name, "seed": cfg.seed, "budget": cfg.search.latency_budget, "extra_load": PLAN[name][2],
           "wall_s": round(wall_s, 1), "error": error,
           "stage_wall_s": {p.parent.name: json.loads(p.read_text())["summary"].get("wall_s") for p in stages}, "resolved": budget.get("resolved"),
           "verification": budget.get("verification"), "best_key": best.get("key"),
           "validation_groups": load("latency_validation/validation.json").get("groups")}
    searched = next((r["name"] for r in bench.get("models", []) if str(r["name"]).endswith("arch.json")), None)
    contract = load("final_bench/contract.json")
    if contract:
        limit = 1.0 + 2 * contract["reference_spread"]
        out["final_bench"] = {**contract, "limit": limit, "within_limit": contract["fraction"] <= limit}
    if budget.get("resolved") and searched:  # the `autovit bench` figure (20 runs per model in turn), for reference
        out["bench_figure"] = {**(bench_contract(bench, budget["resolved"], searched) or {}),
                               "models": bench["models"]}
    ver = budget.get("verification") or {}
    chosen = next((c for c in ver.get("candidates", []) if c["key"] == ver.get("chosen")), None)
    if chosen:
        out["returned_prediction_error_pct"] = chosen["error_pct"]
    if ver.get("candidates"):
        out["winner_prediction_error_pct"] = ver["candidates"][0]["error_pct"]
    return out


def run_one(name: str) -> dict:
    cfg = config_for(name)
    load = None
    if PLAN[name][2]:
        cpu = sorted(os.sched_getaffinity(0))[-1]  # the CPU the latency timing pins itself to
        load = mp.Process(target=_burn, args=(cpu,), daemon=True)
        load.start()
        log(f"{name}: extra load process {load.pid} on CPU {cpu}")
    t0, error = time.time(), None
    try:
        run_pipeline(cfg, log=lambda m: log(f"{name} {m}"))
    except AutovitError as err:
        error = f"{err.message} ({err.hint})" if err.hint else err.message
        log(f"{name}: {error}")
    finally:
        if load is not None:
            load.terminate()
            load.join()
    return summarize_run(name, cfg, time.time() - t0, error)


def _wall(row: dict) -> float:
    return sum(v or 0 for v in (row.get("stage_wall_s") or {}).values()) or row["wall_s"]


def write_markdown(rows: list[dict], command: str) -> Path:
    from autovit.bench import versions
    from autovit.latency.measure import device_fingerprint

    fp = device_fingerprint("ort", 1, "all", 32)
    lines = ["# Latency budget contract (`benchmarks/budget_contract.py`)", "",
             f"- Machine: {fp['cpu']}, {fp['cores']} cores, shared with other engineers' test runs (loaded); "
             f"{fp['os']}", f"- Versions: {json.dumps(versions())}",
             f"- Command: `{command}`",
             "- Config: `benchmarks/configs/budget_contract.yaml` (XXS at 32 px, digits, 10 supernet epochs, "
             "population 12 x 3 generations); run0 profiles the table and trains the supernet, the others reuse them.",
             f"- Wall time (sum of each run's pipeline stages): {sum(_wall(r) for r in rows):.0f} s in all ("
             + ", ".join(f"{r['name']} {_wall(r):.0f} s" for r in rows) + "); run0's includes the table "
             "(and its 10-epoch supernet, trained before under heavier load)",
             "",
             "Final benchmark stage: the returned model timed call by call alternated with the reference network, "
             "and the budget model likewise in the same rounds (`final_bench/contract.json`); returned / budget is "
             "the ratio of their median ratios to the reference. The contract holds at <= 1 + 2 x the reference's "
             "measured spread (relative IQR of its per-round medians). `bench` column: the same fraction from "
             "`autovit bench` (20 runs of each model in turn per round, 5 rounds), which load swings between "
             "models more. Prediction error: predicted vs measured ratio to the reference network in the "
             "search's verification.",
             "",
             "| run | seed | budget | extra load | budget (x ref) | budget ms now / at table time | "
             "returned / budget (final bench) | noise | limit | kept | bench | candidates timed | "
             "winner pred. error | returned pred. error | wall (s) |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    errs = []
    refused = [f"- {r['name']}: {r['error']}" for r in rows if r.get("error")]
    for r in rows:
        fb, res, ver = r.get("final_bench") or {}, r.get("resolved") or {}, r.get("verification") or {}
        kept = "yes" if fb.get("within_limit") else ("**no**" if fb else "refused (below)" if r.get("error") else
                                                     "no result")
        lines.append(
            f"| {r['name']} | {r['seed']} | `{r['budget']}` | {'yes' if r['extra_load'] else 'no'} | "
            f"{res.get('ratio', float('nan')):.3f} | {res.get('ms_now') or float('nan'):.3f} / "
            f"{res.get('ms_table', float('nan')):.3f} | {fb.get('fraction', float('nan')):.3f} | "
            f"{fb.get('noise', float('nan')):.1%} | {fb.get('limit', float('nan')):.3f} | {kept} | "
            f"{(r.get('bench_figure') or {}).get('fraction', float('nan')):.3f} | {len(ver.get('candidates', []))} | "
            f"{r.get('winner_prediction_error_pct', float('nan')):+.1f}% | "
            f"{r.get('returned_prediction_error_pct', float('nan')):+.1f}% | {_wall(r):.0f} |")
        errs += [c["error_pct"] for c in ver.get("candidates", [])]
    if errs:
        a = np.abs(errs)
        lines += ["", f"Prediction error over all {len(errs)} timed front candidates: mean |error| {a.mean():.1f}%, "
                      f"max {a.max():.1f}%, mean signed {np.mean(errs):+.1f}% (negative: predicted faster than "
                      "measured)."]
    if refused:
        lines += ["", "Refused runs (exit 2 before searching, as asked for an infeasible budget):", "", *refused]
    groups = next((r["validation_groups"] for r in rows if r.get("validation_groups")), None)
    if groups:
        lines += ["", "Latency validation of run0 beside its random subnets: " + "; ".join(
            f"{k.replace('_', ' ')} ({g['n']} subnets) MAPE {g['mape']:.1f}%, max {g['max_error']:.1f}%, "
            f"bias {g['bias']:+.1f}%" for k, g in groups.items()) + "."]
    lines += ["", NOTES]
    path = RESULTS.parent / "budget_contract.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="run only these (names in PLAN)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(PLAN):
        path = RESULTS / f"{name}.json"
        if path.is_file():
            log(f"{name}: done before, skipped")
            continue
        log(f"{name}: starting ({PLAN[name]})")
        save_json(path, {**run_one(name), "python": platform.python_version()})
        log(f"{name}: written {path}")
    rows = [json.loads((RESULTS / f"{n}.json").read_text()) for n in PLAN if (RESULTS / f"{n}.json").is_file()]
    log(f"summary: {write_markdown(rows, 'PYTHONPATH=src python benchmarks/budget_contract.py')}")


if __name__ == "__main__":
    main()
