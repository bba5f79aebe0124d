"""Latency-aware coarse-to-fine search on the CIFAR-10 supernet, against random search and a
FLOPs-constrained search, under a latency budget equal to timm mobilevit_xxs's measured latency.

Inputs: the supernet of benchmarks/supernet_cifar10.py (runs/supernet_cifar10/) and the XXS latency
table profiled on this machine (luts/xxs_ort_1t_256.json: onnxruntime, 1 thread, 256x256).

1. Budget: mobilevit_xxs and the table's reference network are timed in interleaved rounds (same
   backend, threads and resolution as the table); budget = their latency ratio x the table's
   reference ms, so the budget and the predicted latencies share one unit on a drifting machine.
2. Search (coarse 10^5 samples, then evolution) with inherited-weight top-1 on the held-out
   validation split (never the test split), BN recalibrated per candidate.
3. Baselines with the same evaluator: random search with the same number of evaluations and
   budget; FLOPs-constrained search with MACs <= the winner's MACs and no latency budget.
4. The three winners and mobilevit_xxs are timed in interleaved rounds.

Writes the run folder (--run-dir) and benchmarks/results/search_cifar10.{json,md,png}.

    .venv/bin/python benchmarks/search_cifar10.py                 # the result (about 40 min on 2 shared vCPUs)
    .venv/bin/python benchmarks/search_cifar10.py --population 50 --generations 20 --parents 10   # paper 4.1
    .venv/bin/python benchmarks/search_cifar10.py --stand-in --out /tmp/standin   # smoke test, not a result
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BASELINE = "mobilevit_xxs"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", type=Path, default=ROOT / "runs" / "supernet_cifar10")
    p.add_argument("--lut", type=Path, default=ROOT / "luts" / "xxs_ort_1t_256.json")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--coarse-samples", type=int, default=100_000)
    p.add_argument("--val-images", type=int, default=1000, help="held-out validation images per evaluation")
    p.add_argument("--calib-images", type=int, default=256, help="BN recalibration images per evaluation")
    p.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    p.add_argument("--runs", type=int, default=20, help="timed inferences per model per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads for accuracy evaluation")
    p.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "search_cifar10")
    p.add_argument("--out", type=Path, default=RESULTS / "search_cifar10", help="results stem (.json/.md/.png)")
    p.add_argument("--stand-in", action="store_true",
                   help="prove the script on a briefly trained digits supernet (numbers are NOT a CIFAR-10 result)")
    return p.parse_args()


def stand_in_supernet(run_dir: Path) -> Path:
    """A few steps of `autovit supernet train` on the offline digits data (xxs space)."""
    out = run_dir / "standin_supernet"
    if not (out / "checkpoints" / "last.pt").is_file():
        cmd = [sys.executable, "-c", "from autovit.cli import main; main()", "supernet", "train", "--space", "xxs",
               "--dataset", "digits", "--max-steps", "40", "--batch-size", "32", "--out", str(out),
               "--set", "tensorboard=false", "--set", "progress=false", "--set", "ckpt_every_steps=40",
               "--set", "rand_augment="]
        subprocess.run(cmd, check=True)
    return out


def supernet_summary(path: Path) -> dict | None:
    """summary.json of the supernet training run (steps, time, final loss), when there is one."""
    import json

    file = (path if path.is_dir() else path.parent.parent) / "summary.json"
    return json.loads(file.read_text()) if file.is_file() else None


def main() -> None:
    args = parse_args()
    import torch

    from autovit.bench import versions
    from autovit.io_utils import atomic_write_text, save_json
    from autovit.latency.measure import device_fingerprint
    from autovit.latency.profile import reference_arch
    from autovit.search import SearchConfig, flops_constrained_search, latency_impact, random_search
    from autovit.search.coarse import coarse_search
    from autovit.search.evolution import EvolutionarySearch
    from autovit.search.measured import measure_archs
    from autovit.search.outputs import write_outputs
    from autovit.search.runner import load_latency_model, validation_evaluator
    from autovit.train.checkpoint import load_supernet_checkpoint

    torch.set_num_threads(args.threads)
    t_start = time.time()
    supernet_path = stand_in_supernet(args.run_dir) if args.stand_in else args.supernet
    if not args.lut.is_file():
        sys.exit(f"latency table not found: {args.lut} (build it with `autovit latency profile --space xxs "
                 f"--resolution 256 --threads 1 --out {args.lut}`)")
    loaded = load_supernet_checkpoint(supernet_path)
    latency_model = load_latency_model(args.lut, loaded.space)
    table = latency_model.table

    # 1. the budget: mobilevit_xxs vs the table's reference network, interleaved
    ref = reference_arch(table.resolution)
    timed = measure_archs({"reference": ref}, [BASELINE], resolution=table.resolution, threads=1,
                          rounds=args.rounds, runs=args.runs, num_classes=1000)
    budget_ms = timed[BASELINE] / timed["reference"] * table.reference_ms
    print(f"budget: {BASELINE} {timed[BASELINE]:.2f} ms / reference {timed['reference']:.2f} ms x table reference "
          f"{table.reference_ms:.2f} ms = {budget_ms:.2f} ms (table units)", flush=True)

    # 2. the search
    cfg = SearchConfig(latency_budget_ms=budget_ms, population=args.population, generations=args.generations,
                       parents=args.parents, coarse_samples=args.coarse_samples, coarse_top_k=args.population,
                       num_classes=loaded.num_classes, seed=args.seed)
    coarse = coarse_search(loaded.space, cfg, latency_model)
    evaluator, data_info = validation_evaluator(loaded, val_images=args.val_images, calib_images=args.calib_images,
                                                seed=args.seed)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    engine = EvolutionarySearch(loaded.space, evaluator, latency_model, cfg, args.run_dir / "search",
                                progress=lambda s, d, t: print(f"  {s} {d}/{t}", flush=True) if s == "fine" else None)
    result = engine.run(coarse=coarse)
    best = result.best
    print(f"search: {best.accuracy:.2f}% {best.latency_ms:.2f} ms {best.params / 1e6:.3f}M; "
          f"coarse {result.timing['coarse_s']:.1f} s, fine {result.timing['fine_s']:.1f} s", flush=True)

    # 3. baselines with the same evaluator
    t0 = time.perf_counter()
    rnd = random_search(loaded.space, evaluator, latency_model, cfg, result.evaluations)
    t_rnd = time.perf_counter() - t0
    t0 = time.perf_counter()
    flops = flops_constrained_search(loaded.space, evaluator, latency_model, cfg, best.macs)
    t_flops = time.perf_counter() - t0
    impact = latency_impact(best.arch, loaded.space, evaluator, engine.latency_of)

    # 4. real latency, interleaved with mobilevit_xxs
    runs = {"latency-aware search (ours)": result, "random search": rnd, "FLOPs-constrained search": flops}
    winners = {name: r.best.arch for name, r in runs.items() if r.best is not None}
    measured = measure_archs(winners, [BASELINE], resolution=table.resolution, threads=1, rounds=args.rounds,
                             runs=args.runs, num_classes=table.num_classes)
    rows = []
    for name, r in runs.items():
        b = r.best
        rows.append({"name": name, "accuracy": b.accuracy, "latency_ms": b.latency_ms, "measured_ms": measured[name],
                     "ratio_to_mobilevit_xxs": measured[name] / measured[BASELINE], "params": b.params,
                     "macs": b.macs, "evaluations": r.evaluations, "within_budget_predicted": b.latency_ms <= budget_ms,
                     "key": b.key, "arch": b.arch.to_dict()})
    rows.append({"name": BASELINE + " (timm, budget)", "accuracy": None, "latency_ms": budget_ms,
                 "measured_ms": measured[BASELINE], "ratio_to_mobilevit_xxs": 1.0, "params": None, "macs": None})
    write_outputs(args.run_dir / "search", result, result.cloud, {best.key: measured["latency-aware search (ours)"]},
                  impact, [{"name": BASELINE, "latency_ms": budget_ms, "accuracy": None}],
                  [r for r in rows if r["params"] is not None],
                  {"random search": rnd.history, "FLOPs-constrained": flops.history},
                  ["stand-in run on digits: NOT a CIFAR-10 result" if args.stand_in else
                   "accuracy: CIFAR-10 held-out validation split (from train), inherited weights"])

    # 5. results
    command = "python benchmarks/search_cifar10.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    body = {
        "stand_in": args.stand_in, "command": command.strip(), "wall_s": round(time.time() - t_start, 1),
        "machine": device_fingerprint("ort", 1, "all", table.resolution), "versions": versions(),
        "supernet": str(supernet_path), "lut": str(args.lut), "data": data_info,
        "budget": {"ms_table_units": budget_ms, "mobilevit_xxs_measured_ms": timed[BASELINE],
                   "reference_measured_ms": timed["reference"], "table_reference_ms": table.reference_ms},
        "settings": cfg.to_dict(),
        "timing_s": {"coarse": result.timing["coarse_s"], "fine": result.timing["fine_s"],
                     "random_search": t_rnd, "flops_constrained_search": t_flops},
        "coarse": result.coarse, "rows": rows, "impact": [r.to_dict() for r in impact],
        "supernet_summary": supernet_summary(supernet_path),
    }
    save_json(args.out.with_suffix(".json"), body)
    shutil.copyfile(args.run_dir / "search" / "search.png", args.out.with_suffix(".png"))
    atomic_write_text(args.out.with_suffix(".md"), markdown(body))
    print(markdown(body))


def markdown(body: dict) -> str:
    m, v, d = body["machine"], body["versions"], body["data"]
    lines = [
        "# Latency-aware search vs random and FLOPs-constrained search" + (" (STAND-IN, not a result)"
                                                                           if body["stand_in"] else ""), "",
        f"- Machine: {m.get('cpu')}, {m.get('cores')} vCPUs (shared); latency: onnxruntime {v['onnxruntime']}, "
        f"batch 1, 1 thread, {m.get('resolution')}px, interleaved rounds",
        f"- Versions: torch {v['torch']}, timm {v['timm']}, autovit {v['autovit']}",
        f"- Supernet: `{body['supernet']}`; latency table: `{body['lut']}`",
        f"- Accuracy: top-1 on {d['val_images']} held-out validation images of {d['dataset']} ({d['resolution']}px), "
        f"inherited weights, BN recalibrated on {d['calib_images']} training images per candidate",
        f"- Budget: {BASELINE} measured {body['budget']['mobilevit_xxs_measured_ms']:.2f} ms here = "
        f"{body['budget']['ms_table_units']:.2f} ms in latency-table units",
        f"- Command: `{body['command']}` (wall {body['wall_s']:.0f} s)", "",
        "| method | top-1 (%) | predicted (ms) | measured (ms) | ratio to mobilevit_xxs | params (M) | MACs (M) "
        "| evaluations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in body["rows"]:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        p = "-" if r["params"] is None else f"{r['params'] / 1e6:.3f}"
        mac = "-" if r["macs"] is None else f"{r['macs'] / 1e6:.1f}"
        lines.append(f"| {r['name']} | {acc} | {r['latency_ms']:.2f} | {r['measured_ms']:.2f} | "
                     f"{r['ratio_to_mobilevit_xxs']:.3f} | {p} | {mac} | {r.get('evaluations', '-')} |")
    t, c = body["timing_s"], body["coarse"]
    acc = body["rows"][0]["accuracy"] / 100
    noise = 100 * (acc * (1 - acc) / d["val_images"]) ** 0.5
    lines += ["", f"Search wall time: coarse {t['coarse']:.1f} s ({c.get('sampled')} archs sampled, "
                  f"{c.get('feasible')} within budget), fine {t['fine']:.1f} s; "
                  f"random search {t['random_search']:.1f} s, "
                  f"FLOPs-constrained search {t['flops_constrained_search']:.1f} s.", "",
              f"Noise: one top-1 figure on {d['val_images']} images has a binomial standard deviation of about "
              f"{noise:.1f} points, so accuracy differences below ~{2 * noise:.0f} points do not rank the methods. "
              "Measured latencies come from one interleaved session; the budget ratio (mobilevit_xxs / reference) "
              "itself drifts between sessions on this shared machine.", ""]
    if body.get("supernet_summary"):
        sn = body["supernet_summary"]
        lines += [f"Supernet state: {sn.get('steps')} training steps ({sn.get('train_time_s', 0) / 60:.0f} min, "
                  f"final loss {sn.get('final_loss', float('nan')):.2f}); how well its inherited-weight accuracies "
                  "rank subnets trained alone is measured in supernet_cifar10.md.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
