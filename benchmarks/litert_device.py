"""A second runtime as "another device": the export-suite -> time -> import path, end to end.

Exports the XXS suite (anchor blocks, contexts, reference, fitting subnets) as TFLite with
litert-torch, times every file in LiteRT's interpreter (XNNPACK, 1 thread, pinned to the last
CPU, each file interleaved with the reference), writes the measurement CSV, builds the table
with `import_measurements`, then times held-out random subnets converted the same way and
scores the imported table on them. This is what a user does for a phone, with LiteRT on this
CPU standing in for the phone. Needs the optional extra: `pip install -e ".[tflite]"`.

    taskset -c 1 python benchmarks/litert_device.py --space xxs --resolution 256 --samples 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from autovit.export import to_tflite
from autovit.io_utils import atomic_write_text, save_json
from autovit.latency.measure import pin_process
from autovit.latency.predictor import LatencyModel
from autovit.latency.profile import fit_archs, sample_distinct, seeded_model
from autovit.latency.suite import export_suite, import_measurements
from autovit.latency.validate import error_metrics
from autovit.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


class LiteRTTimer:
    """Times .tflite files (batch 1, random input) as ratios to an interleaved reference file."""

    def __init__(self, reference: Path, threads: int, runs: int, rounds: int) -> None:
        self.threads, self.runs, self.rounds = threads, runs, rounds
        self.reference = self._load(reference)
        self.reference_ms: list[float] = []

    def _load(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=self.threads)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], np.random.default_rng(0).random(inp["shape"], dtype=np.float32))
        for _ in range(3):
            it.invoke()
        return it

    def _time(self, it) -> float:
        times = []
        for _ in range(self.runs):
            t = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1000

    def ratio(self, path: Path) -> float:
        """Median ratio to the reference of one file over `rounds` interleaved rounds."""
        it = self._load(path)
        ratios = []
        for _ in range(self.rounds):
            ref = self._time(self.reference)
            self.reference_ms.append(ref)
            ratios.append(self._time(it) / ref)
        return float(np.median(ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="xxs")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--fit-subnets", type=int, default=24)
    ap.add_argument("--samples", type=int, default=30, help="held-out subnets timed to score the imported table")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5, help="invocations per timing (median)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per file (median)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "litert_device")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu = pin_process()
    space = SearchSpace.builtin(args.space)
    res, t0 = args.resolution, time.time()
    suite_dir = args.work / "suite"
    done = args.work / "export_summary.json"
    if done.is_file():  # resume: the suite of an interrupted run is reused (conversion is the slow part)
        summary = json.loads(done.read_text())
    else:
        summary = export_suite(space, suite_dir, res, args.fit_subnets, ("onnx", "tflite"), standalone=False,
                               progress=lambda p, d, n: print(f"[{time.time() - t0:6.0f}s] {p} {d}/{n}", flush=True))
        if summary["conversion_failures"]:
            raise SystemExit(f"TFLite conversion failed: {summary['conversion_failures'][:3]}")
        summary["export_seconds"] = round(time.time() - t0)
        save_json(done, summary)
    export_s = summary["export_seconds"]
    timer = LiteRTTimer(suite_dir / "reference.tflite", args.threads, args.runs, args.rounds)
    files = [line.split(",")[0] for line in (suite_dir / "measurements_template.csv").read_text().splitlines()[1:]]
    t1 = time.time()
    rows = []
    ratios = {}
    for i, name in enumerate(files):
        ratios[name] = timer.ratio(suite_dir / f"{name}.tflite")
        if (i + 1) % 20 == 0:
            print(f"[{time.time() - t0:6.0f}s] timed {i + 1}/{len(files)}", flush=True)
    ref_ms = float(np.median(timer.reference_ms))
    for name, r in ratios.items():
        rows.append(f"{name},{(ref_ms if name == 'reference' else r * ref_ms):.6f},,{args.rounds}")
    csv = args.work / "litert_times.csv"
    atomic_write_text(csv, "file,median_ms,iqr_ms,count\n" + "\n".join(rows) + "\n")
    table_s = time.time() - t1
    model = import_measurements(suite_dir / "manifest.json", csv, device="this CPU (LiteRT stand-in for a phone)",
                                runtime="ai-edge-litert XNNPACK", threads=args.threads)
    lut = args.work / f"{args.space}_litert_{args.threads}t_{res}.json"
    model.save(lut)
    # held-out subnets, disjoint from the fitting ones, converted and timed the same way
    fit = [a.replace(resolution=res) for a in fit_archs(space, args.fit_subnets, 0)]
    held = [a.replace(resolution=res) for a in sample_distinct(space, args.samples, 1001, fit)]
    truth = []
    for j, arch in enumerate(held):
        path = args.work / "heldout" / f"{arch.key()}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            tmp = path.with_suffix(".tmp.tflite")
            to_tflite(seeded_model(arch, 1000), torch.randn(1, 3, res, res), tmp)
            tmp.replace(path)
        truth.append(timer.ratio(path))
        print(f"[{time.time() - t0:6.0f}s] held-out {j + 1}/{len(held)}", flush=True)
    truth_arr = np.asarray(truth)
    raw = LatencyModel(model.table)
    result = {
        "space": args.space, "resolution": res, "threads": args.threads, "pinned_cpu": cpu,
        "runtime": "ai-edge-litert (XNNPACK)", "converter": "litert-torch", "torch": torch.__version__,
        "blocks_timed": summary["blocks"], "blocks_imputed": summary["imputed"], "contexts": summary["contexts"],
        "fit_subnets": summary["subnets"], "export_seconds": round(export_s), "timing_seconds": round(table_s),
        "reference_ms": ref_ms, "coef": model.coef, "fitted": model.table.model is not None,
        "heldout": {"archs": [a.key() for a in held], "measured_ratio": truth_arr.tolist(),
                    "predicted_ratio": model.predict_ratio(held).tolist()},
        "metrics": error_metrics(model.predict_ratio(held), truth_arr),
        "raw_table_sum": error_metrics(raw.predict_ratio(held), truth_arr),
        "total_seconds": round(time.time() - t0),
    }
    try:
        ort = LatencyModel.load(ROOT / "luts" / f"{args.space}_ort_1t_{res}.json")
        result["onnxruntime_table_on_litert"] = error_metrics(ort.predict_ratio(held), truth_arr)
    except Exception as err:  # noqa: BLE001 - the comparison row is optional
        result["onnxruntime_table_on_litert"] = {"error": str(err)}
    save_json(args.out / f"litert_device_{args.space}.json", result)
    m, r, o = result["metrics"], result["raw_table_sum"], result["onnxruntime_table_on_litert"]
    import ai_edge_litert
    import litert_torch

    def row(name: str, x: dict) -> str:
        if "mape" not in x:
            return f"| {name} | - | - | - | - | - |"
        return (f"| {name} | {x['mape']:.2f} | {x['max_error']:.2f} | {x['within_5']:.0f} | {x['within_10']:.0f} | "
                f"{x['kendall_tau']:.3f} |")

    lines = [
        f"# Another runtime through export-suite / import: LiteRT on this CPU ({args.space.upper()})", "",
        f"Machine: this 2-core AMD EPYC VM, pinned to CPU {cpu}; ai-edge-litert {ai_edge_litert.__version__} "
        f"(XNNPACK, {args.threads} thread), litert-torch {getattr(litert_torch, '__version__', '?')}, "
        f"torch {torch.__version__}; {res}x{res}, batch 1.", "",
        f"Command: `taskset -c 1 python benchmarks/litert_device.py --space {args.space} --resolution {res} "
        f"--samples {args.samples}` (in a venv with `pip install -e \".[tflite]\"`)", "",
        f"- suite: {summary['blocks']} anchor blocks timed in context ({summary['imputed']} imputed at import), "
        f"{summary['contexts']} context networks, the reference, {summary['subnets']} fitting subnets; "
        f"TFLite conversion {export_s / 60:.1f} min, timing {table_s / 60:.1f} min",
        f"- reference network on LiteRT: {ref_ms:.2f} ms; Eq. 6 coefficients: "
        + ", ".join(f"{k}={v:.3g}" for k, v in model.coef.items()), "",
        f"{args.samples} held-out random subnets (not in the fitting set), converted and timed the same way:", "",
        "| predictor | MAPE | max | within 5% | within 10% | Kendall tau |", "|---|---|---|---|---|---|",
        row("**imported LiteRT table + Eq. 6**", m), row("imported LiteRT table, raw sum", r),
        row("the onnxruntime table of this CPU (wrong runtime)", o), "",
        "The last row is why a table is per device and runtime: the same CPU under another runtime has "
        "other relative block costs.", ""]
    atomic_write_text(args.out / f"litert_device_{args.space}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
