"""Benchmark the three AutoViT models against timm's MobileViT and MobileNet baselines.

Params, MACs and onnxruntime CPU latency at 256x256, batch 1, 1 thread, all models interleaved
round by round (autovit.bench). Writes benchmarks/results/bench_models.{json,md}.

    .venv/bin/python benchmarks/bench_models.py            # full run (about 10 min here)
    .venv/bin/python benchmarks/bench_models.py --rounds 2 --runs 5   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from autovit.bench import BenchReport, bench_models, markdown_table
from autovit.io_utils import atomic_write_text, save_json
from autovit.registry import PAPER_NUMBERS

MODELS = ("autovit_xxs", "autovit_xs", "autovit_s", "mobilevit_xxs", "mobilevit_xs", "mobilevit_s",
          "mobilenetv2_100", "mobilenetv3_large_100")
RESULTS = Path(__file__).resolve().parent / "results"
# Paper Table 2 (iPhone 13, CoreML): params (M), FLOPs (G), latency (ms) of the baselines we compare.
PAPER_TABLE2 = {
    "mobilevit_xxs": (1.3, 0.2, 14.7), "mobilevit_xs": (2.3, 0.6, 26.5), "mobilevit_s": (5.6, 1.1, 35.7),
    "mobilenetv2_100": (2.6, 0.2, 10.7), "mobilenetv3_large_100": (5.4, 0.2, 26.5),
    **{f"autovit_{k}": (v["params_m"], v["flops_g"], v["latency_ms"]) for k, v in PAPER_NUMBERS.items()},
}


def render_markdown(data: dict) -> str:
    """The results page, from the saved JSON (so it can be re-rendered with --render-only)."""
    report = BenchReport.from_dict(data)
    s, m, v = report.settings, report.machine, report.versions
    xxs, mvit = report.row("autovit_xxs"), report.row("mobilevit_xxs")
    faster = "faster" if xxs.median_ms < mvit.median_ms else "slower"
    load = data.get("loadavg_1m_before_after", ["?", "?"])
    lines = [
        "# AutoViT vs timm baselines: params, MACs, onnxruntime CPU latency",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} vCPUs (shared), {m['os']}; process pinned to CPU {s['pinned_cpu']}",
        f"- Versions: python {v['python']}, torch {v['torch']}, timm {v['timm']}, onnxruntime {v['onnxruntime']}, "
        f"autovit {v['autovit']}",
        f"- Setting: {s['resolution']}x{s['resolution']}, batch 1, {s['threads']} thread, graph optimisation "
        f"'{s['graph_optimization']}', {s['rounds']} interleaved rounds x {s['runs']} runs (+{s['warmup']} "
        "warm-up); median and IQR of the per-round medians; ratio = median per-round ratio to "
        f"{s['reference']}. Random weights (latency does not depend on them).",
        f"- Command: `{data['command']}` (wall {data['wall_s']:.0f} s)",
        f"- Load: 1-min load average {load[0]} before and {load[1]} after, on {m['cores']} vCPUs shared with "
        "other jobs, so absolute milliseconds are inflated and noisy; compare the interleaved ratios.",
        "- MACs: FlopCounterMode FLOPs / 2 (conv, linear, matmul/attention); closed form for autovit models.",
        "",
        markdown_table(report),
        "",
        f"**autovit_xxs vs mobilevit_xxs here:** {xxs.median_ms:.2f} ms vs {mvit.median_ms:.2f} ms, median "
        f"per-round ratio {xxs.ratio_to_ref:.3f}; autovit_xxs was faster in "
        f"{report.wins('autovit_xxs', 'mobilevit_xxs')} of {len(xxs.rounds_ms)} rounds. So autovit_xxs is {faster} than mobilevit_xxs on this CPU "
        "(paper, iPhone 13: 10.2 vs 14.7 ms, ratio 0.69).",
        "",
        "Paper Table 2 (iPhone 13, CoreML) for reference:",
        "",
        "| model | params (M) | FLOPs (G) | iPhone latency (ms) |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {p} | {f} | {ms} |" for k, (p, f, ms) in PAPER_TABLE2.items()],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_models")
    parser.add_argument("--render-only", action="store_true", help="Re-render the .md from the saved .json.")
    args = parser.parse_args()
    if args.render_only:
        data = json.loads(args.out.with_suffix(".json").read_text())
        atomic_write_text(args.out.with_suffix(".md"), render_markdown(data))
        return

    start = time.time()
    load_before = os.getloadavg()

    def progress(stage: str, done: int, total: int, label: str) -> None:
        if done < total:
            print(f"[{time.time() - start:6.0f}s] {stage} {done + 1}/{total} {label}", flush=True)

    report = bench_models(MODELS, resolution=args.resolution, threads=args.threads, rounds=args.rounds,
                          runs=args.runs, warmup=args.warmup, reference="mobilevit_xxs", progress=progress)
    data = report.to_dict()
    data["command"] = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0].split("/work/main/")[-1],
                                                                     *sys.argv[1:]])
    data["wall_s"] = round(time.time() - start, 1)
    data["loadavg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    data["paper_table2"] = {k: dict(params_m=p, flops_g=f, iphone_ms=ms) for k, (p, f, ms) in PAPER_TABLE2.items()}
    save_json(args.out.with_suffix(".json"), data)
    md = render_markdown(data)
    atomic_write_text(args.out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
