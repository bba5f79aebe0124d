"""Timing harness: onnxruntime (default) and torch eager, batch 1, fixed threads.

Shared machines drift 10-16% between runs, so `measure_interleaved` times every model in rounds
interleaved with a fixed reference model; ratios to the reference are stable where absolute
milliseconds are not (shared/references/anchors-latency.md, section 5).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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
    """Pin this process to one CPU (the last one by default) where the OS allows; for scripts that own
    their process. Library code times inside `timing_process`, which restores the affinity."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1] if cpu is None else cpu
    try:
        os.sched_setaffinity(0, {target})
    except OSError:
        return None
    return target


@contextlib.contextmanager
def timing_process(cpu: int | None = None, pin: bool = True) -> Iterator[int | None]:
    """The process-wide state of a timing, scoped: pins this process to one CPU (the last by default;
    `pin=False` leaves the affinity alone) and yields that CPU (None where the OS does not allow it);
    on exit restores the affinity and torch's intra-op thread count (`torch_runner` sets it), so the
    code after a timing (e.g. training) gets every CPU and thread back."""
    import torch

    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    threads = torch.get_num_threads()
    try:
        yield pin_process(cpu) if pin else None
    finally:
        if before is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


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


def calibrate_runs(run: Callable[[], None], target_ms: float = 15.0, lo: int = 2, hi: int = 50,
                   warmup: int = 3) -> tuple[int, float]:
    """Warms `run` up and picks how many calls one timing takes (~`target_ms` per timing).
    Returns (runs, estimated ms per call)."""
    for _ in range(warmup):
        run()
    est = time_runner(run, 3)
    return int(min(hi, max(lo, round(target_ms / max(est, 1e-3))))), est


@dataclass
class RoundTimes:
    """Per-round medians of every named runner, each paired with the reference time of its round."""

    ms: dict[str, list[float]]
    ref_ms: dict[str, list[float]]
    reference_ms: list[float]
    paired_ratio: dict[str, list[float]] | None = None  # per-round median of call-by-call ratios

    def ratios(self, name: str) -> np.ndarray:
        if self.paired_ratio is not None:
            return np.asarray(self.paired_ratio[name])
        return np.asarray(self.ms[name]) / np.asarray(self.ref_ms[name])

    def timing(self, name: str) -> Timing:
        return summarize(self.ms[name], float(np.median(self.ratios(name))))

    @property
    def reference_spread(self) -> float:
        """Relative IQR of the reference over the whole measurement (stability of the machine)."""
        q1, q3 = np.percentile(self.reference_ms, [25, 75])
        return float((q3 - q1) / np.median(self.reference_ms))


class MeasureLog:
    """Timings taken so far, saved atomically to a JSON file keyed by the settings they depend on,
    so an interrupted `latency profile` / `latency validate` continues where it stopped.

    A file holding another key (other settings, device or autovit version), or an unreadable one,
    is ignored and replaced. Saves at most every `save_every_s` seconds, and on every exit of a
    measurement (including Ctrl-C); a kill -9 loses at most the last `save_every_s` seconds."""

    FORMAT = "autovit-partial-timings"

    def __init__(self, path: str | Path, settings: dict[str, Any], save_every_s: float = 1.0) -> None:
        import hashlib
        import json

        self.path = Path(path)
        self.key = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        self.settings = settings
        self.save_every_s = save_every_s
        self.phases: dict[str, dict[str, Any]] = {}
        self._saved_at = time.monotonic()
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("format") == self.FORMAT and data.get("key") == self.key:
            self.phases = data.get("phases") or {}
        self.reused = self.count()

    def count(self) -> int:
        """Timings (groups or pairs) stored so far."""
        return sum(len(p.get("units", [])) for p in self.phases.values())

    def phase(self, name: str, plan: Any) -> dict[str, Any]:
        """The mutable state of one measurement; reset when its `plan` (JSON data) changed."""
        import json

        plan = json.loads(json.dumps(plan))  # the form it has after a round trip through the file
        state = self.phases.get(name)
        if not isinstance(state, dict) or state.get("plan") != plan:
            state = self.phases[name] = {"plan": plan, "units": []}
        return state

    def tick(self) -> None:
        """Saves when `save_every_s` passed since the last save."""
        if time.monotonic() - self._saved_at >= self.save_every_s:
            self.save()

    def save(self) -> None:
        from autovit.io_utils import save_json

        save_json(self.path, {"format": self.FORMAT, "key": self.key, "settings": self.settings,
                              "phases": self.phases})
        self._saved_at = time.monotonic()

    def discard(self) -> None:
        """Deletes the file (call once the result it feeds is saved)."""
        self.path.unlink(missing_ok=True)


def _warm(run: Callable[[], None], calls: int) -> None:
    for _ in range(calls):
        run()


def measure_rounds(runners: dict[str, Callable[[], None]], reference: Callable[[], None],
                   groups: Sequence[Sequence[str]] | None = None, rounds: int = 7,
                   target_ms: float = 15.0, warmup: int = 3,
                   progress: Callable[[int, int], None] | None = None,
                   log: MeasureLog | None = None, phase: str = "rounds") -> RoundTimes:
    """Times every runner in `rounds` rounds; within a round, each group (names measured back to
    back, e.g. a network with and without a block) is preceded by a reference timing, so every
    figure has a reference time from the same moment and differences within a group are paired.

    `progress(done, total)` is called after every timed group. With a `log`, the calibration and
    every timed group are checkpointed under `phase`, and timings already in the log are reused.
    """
    groups = [list(g) for g in (groups or [[n] for n in runners])]
    state = log.phase(phase, {"groups": groups, "rounds": rounds, "target_ms": target_ms}) if log else {"units": []}
    units: list[dict[str, Any]] = state["units"]
    total = rounds * len(groups)
    try:
        if len(units) < total:
            if "runs" in state:  # calibrated before the interruption: only warm up again
                for run in [reference, *runners.values()]:
                    _warm(run, warmup)
            else:
                ref_runs, _ = calibrate_runs(reference, target_ms, warmup=warmup)
                runs = {name: calibrate_runs(run, target_ms, warmup=warmup)[0] for name, run in runners.items()}
                state.update(ref_runs=ref_runs, runs=runs)
        ms: dict[str, list[float]] = {n: [] for n in runners}
        ref_of: dict[str, list[float]] = {n: [] for n in runners}
        refs: list[float] = []
        done = 0
        for _ in range(rounds):
            for group in groups:
                if done == len(units):
                    ref = time_runner(reference, state["ref_runs"])
                    units.append({"ref": ref, "ms": [time_runner(runners[n], state["runs"][n]) for n in group]})
                    if log:
                        log.tick()
                unit = units[done]
                refs.append(unit["ref"])
                for name, value in zip(group, unit["ms"]):
                    ms[name].append(value)
                    ref_of[name].append(unit["ref"])
                done += 1
                if progress:
                    progress(done, total)
    finally:
        if log:
            log.save()
    return RoundTimes(ms, ref_of, refs)


def measure_paired(runners: dict[str, Callable[[], None]], reference: Callable[[], None], rounds: int = 5,
                   target_ms: float = 300.0, warmup: int = 2,
                   progress: Callable[[int, int], None] | None = None,
                   log: MeasureLog | None = None, phase: str = "paired") -> RoundTimes:
    """Times each runner call by call alternated with the reference (ref, run, ref, run, ...), so
    every call has a reference call tens of milliseconds away; a round's ratio is the median of
    its per-pair ratios. For whole networks on busy machines, where the CPU share a process gets
    changes within a second and per-group references lag behind it.

    With a `log`, every timed runner-round is checkpointed under `phase` and reused on a rerun.
    """
    names = list(runners)
    state = log.phase(phase, {"names": names, "rounds": rounds, "target_ms": target_ms}) if log else {"units": []}
    units: list[dict[str, Any]] = state["units"]
    total = rounds * len(names)
    try:
        if len(units) < total:
            _warm(reference, warmup)
            if "pairs" in state:
                for run in runners.values():
                    _warm(run, warmup)
            else:
                pairs = {}
                for name, run in runners.items():
                    _, est = calibrate_runs(run, warmup=warmup)
                    pairs[name] = int(min(20, max(3, round(target_ms / max(est, 1e-3)))))
                state["pairs"] = pairs
        ms: dict[str, list[float]] = {n: [] for n in runners}
        ref_of: dict[str, list[float]] = {n: [] for n in runners}
        ratio: dict[str, list[float]] = {n: [] for n in runners}
        refs: list[float] = []
        done = 0
        for _ in range(rounds):
            for name in names:
                if done == len(units):
                    r_ms, n_ms = [], []
                    for _ in range(state["pairs"][name]):
                        r_ms.append(time_runner(reference, 1))
                        n_ms.append(time_runner(runners[name], 1))
                    units.append({"ref": r_ms, "ms": n_ms})
                    if log:
                        log.tick()
                r_ms, n_ms = units[done]["ref"], units[done]["ms"]
                refs.extend(r_ms)
                ms[name].append(float(np.median(n_ms)))
                ref_of[name].append(float(np.median(r_ms)))
                ratio[name].append(float(np.median(np.asarray(n_ms) / np.asarray(r_ms))))
                done += 1
                if progress:
                    progress(done, total)
    finally:
        if log:
            log.save()
    return RoundTimes(ms, ref_of, refs, ratio)


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


# Fingerprint fields that change timings; a table measured with different values is refused.
FINGERPRINT_KEYS = ("cpu", "cores", "backend", "runtime", "threads", "graph_optimization", "resolution")


def fingerprint_mismatch(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Human-readable differences in the timing-relevant fingerprint fields."""
    return [f"{k}: table has {expected.get(k)!r}, here {actual.get(k)!r}"
            for k in FINGERPRINT_KEYS if k in expected and k in actual and expected.get(k) != actual.get(k)]


@dataclass(frozen=True)
class MeasureConfig:
    """How to time networks: backend ('ort' or 'torch'), threads, ORT graph optimisation level,
    rounds and the target milliseconds of one timing (runs per timing are derived from it)."""

    backend: str = "ort"
    threads: int = 1
    opt_level: str = "all"
    rounds: int = 7
    target_ms: float = 15.0
    warmup: int = 3
    cache_dir: str | None = None  # reuse ONNX exports across runs (keyed by the caller's cache key)

    def __post_init__(self) -> None:
        from autovit.errors import AutovitError

        if self.backend not in ("ort", "torch"):
            raise AutovitError(f"unknown latency backend '{self.backend}'", hint="use 'ort' (onnxruntime) or 'torch'")
        if self.threads < 1 or self.rounds < 1:
            raise AutovitError("threads and rounds must be >= 1")

    def runner(self, module: Any, input_size: Sequence[int], cache_key: str | None = None) -> Callable[[], None]:
        """A batch-1 runner of `module` on this backend (ONNX export first for onnxruntime).

        With `cache_dir` set and a `cache_key` naming the module's structure, the ONNX export
        (seconds per network on a busy CPU) is reused across runs."""
        if self.backend == "torch":
            return torch_runner(module, input_size, self.threads)
        return ort_runner(self.onnx_bytes(module, input_size, cache_key), self.threads, self.opt_level)

    def onnx_bytes(self, module: Any, input_size: Sequence[int], cache_key: str | None = None) -> bytes:
        import hashlib
        from pathlib import Path

        from autovit.onnx_export import export_onnx

        path = None
        if self.cache_dir and cache_key:
            digest = hashlib.sha1(f"{cache_key}|{tuple(input_size)}".encode()).hexdigest()[:16]
            path = Path(self.cache_dir) / f"{digest}.onnx"
            if path.is_file():
                return path.read_bytes()
        data = export_onnx(module, None, tuple(input_size))
        if path is not None:
            from autovit.io_utils import atomic_write_bytes

            atomic_write_bytes(path, data)
        return data

    def fingerprint(self, resolution: int | None) -> dict[str, Any]:
        return device_fingerprint(self.backend, self.threads, self.opt_level, resolution)
