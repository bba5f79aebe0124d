"""Timing harness: onnxruntime (default) and torch eager, batch 1, fixed threads.

Shared machines drift 10-16% between runs, so `measure_interleaved` times every model in rounds
interleaved with a fixed reference model; ratios to the reference are stable where absolute
milliseconds are not (shared/references/anchors-latency.md, section 5).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Summary of repeated timings of one model (milliseconds)."""

    median_ms: float
    iqr_ms: float
    count: int
    ratio_to_ref: float | None = None
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples_ms")
        return d


def summarize(samples_ms: Sequence[float], ratio: float | None = None) -> Timing:
    q1, q3 = np.percentile(samples_ms, [25, 75])
    return Timing(float(np.median(samples_ms)), float(q3 - q1), len(samples_ms), ratio, tuple(samples_ms))


def pin_process(cpu: int | None = None) -> int | None:
    """Pin this process to one CPU (the last one by default) where the OS allows."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1] if cpu is None else cpu
    try:
        os.sched_setaffinity(0, {target})
    except OSError:
        return None
    return target


def ort_session(model: bytes | str, threads: int = 1, opt_level: str = "all") -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opt_level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def ort_runner(model: bytes | str, threads: int = 1, opt_level: str = "all") -> Callable[[], None]:
    """A zero-argument callable that runs one batch-1 inference."""
    sess = ort_session(model, threads, opt_level)
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feed = {inp.name: x}
    return lambda: sess.run(None, feed)


def torch_runner(module: Any, input_size: Sequence[int], threads: int = 1) -> Callable[[], None]:
    import torch

    torch.set_num_threads(threads)
    module = module.eval()
    x = torch.randn(*input_size)

    def run() -> None:
        with torch.inference_mode():
            module(x)

    return run


def time_runner(run: Callable[[], None], runs: int) -> float:
    """Median milliseconds of `runs` calls."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def measure_interleaved(runners: Sequence[Callable[[], None]], reference: Callable[[], None] | None = None,
                        warmup: int = 10, rounds: int = 7, runs: int = 20) -> list[Timing]:
    """Time each runner in `rounds` rounds; each round also times `reference` right before it.

    Every round yields one median per runner; the reported figure is the median of the round
    medians, and `ratio_to_ref` the median of per-round ratios.
    """
    for run in list(runners) + ([reference] if reference else []):
        for _ in range(warmup):
            run()
    per_model: list[list[float]] = [[] for _ in runners]
    ratios: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, run in enumerate(runners):
            ref_ms = time_runner(reference, runs) if reference else None
            ms = time_runner(run, runs)
            per_model[i].append(ms)
            if ref_ms:
                ratios[i].append(ms / ref_ms)
    return [summarize(s, float(np.median(r)) if r else None) for s, r in zip(per_model, ratios)]


def device_fingerprint(backend: str = "ort", threads: int = 1, opt_level: str = "all",
                       resolution: int | None = None) -> dict[str, Any]:
    """What a measurement depends on: CPU, cores, OS, runtime and versions, threads, resolution."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fp: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "backend": backend, "threads": threads, "resolution": resolution,
    }
    if backend == "ort":
        import onnxruntime as ort

        fp.update(runtime=f"onnxruntime {ort.__version__}", graph_optimization=opt_level)
    else:
        import torch

        fp.update(runtime=f"torch {torch.__version__}")
    return fp
