"""Side-by-side comparison of models: params, MACs and measured CPU latency (onnxruntime or torch).

Used by `autovit bench`, `benchmarks/bench_models.py` and the pipeline report. A model is named
either `autovit_xxs|xs|s`, the path of an arch JSON, or any timm model name (random weights;
nothing is downloaded). Latency is measured in rounds that interleave all models, so slow
drift of a shared machine hits every model alike; each model's figure is the median of its
per-round medians, the spread the IQR of those, and `ratio_to_ref` the median per-round ratio
to the reference model (the first one unless named).
"""

from __future__ import annotations

import difflib
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from autovit.arch import Arch
from autovit.errors import AutovitError

# Callback for long work: (stage, done, total, label).
ProgressFn = Callable[[str, int, int, str], None]


@dataclass
class BenchModel:
    """A model ready to compare: its name, where it comes from, the network and its arch (ours)."""

    name: str
    source: str  # "autovit" (paper model or arch JSON) or "timm"
    module: nn.Module
    arch: Arch | None = None


@dataclass
class BenchRow:
    """One model's result (latency fields are None when latency was not measured)."""

    name: str
    source: str
    params: int
    macs: int
    median_ms: float | None = None
    iqr_ms: float | None = None
    ratio_to_ref: float | None = None
    rounds_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "params": self.params, "macs": self.macs,
            "median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "ratio_to_ref": self.ratio_to_ref,
            "rounds_ms": self.rounds_ms,
        }


@dataclass
class BenchReport:
    """All rows plus what the numbers depend on (machine, versions, settings)."""

    rows: list[BenchRow]
    settings: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "machine": self.machine, "versions": self.versions,
                "models": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchReport":
        """Inverse of `to_dict` (e.g. to re-render a saved report)."""
        rows = [BenchRow(**{k: m[k] for k in BenchRow.__dataclass_fields__ if k in m}) for m in data["models"]]
        return cls(rows, data["settings"], data["machine"], data["versions"])

    def wins(self, name: str, other: str) -> int:
        """In how many rounds `name` was faster than `other`."""
        a, b = self.row(name).rounds_ms, self.row(other).rounds_ms
        return sum(x < y for x, y in zip(a, b))

    def row(self, name: str) -> BenchRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)


def resolve_model(name: str, num_classes: int = 1000) -> BenchModel:
    """Builds `autovit_*`, an arch JSON path or a timm model by name (random weights, eval mode)."""
    import timm

    from autovit.registry import MODEL_NAMES, resolve_arch
    from autovit.model import build_model

    if name in MODEL_NAMES or name.endswith(".json") or Path(name).is_file():
        arch = resolve_arch(name)
        return BenchModel(name, "autovit", build_model(arch, num_classes).eval(), arch)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, sorted(set(MODEL_NAMES) | set(timm.list_models())), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise AutovitError(f"unknown model '{name}'",
                           hint=f"{hint}use {', '.join(MODEL_NAMES)}, the path of an arch JSON file, "
                                "or a timm model name (`timm.list_models()`)")
    try:
        module = timm.create_model(name, pretrained=False, num_classes=num_classes)
    except Exception as err:  # timm raises assorted errors for models it cannot build as asked
        raise AutovitError(f"timm could not build '{name}': {err}") from None
    return BenchModel(name, "timm", module.eval())


def measured_costs(module: nn.Module, resolution: int) -> tuple[int, int]:
    """(params, MACs) of any module at batch 1, MACs = FlopCounterMode FLOPs / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(torch.zeros(1, 3, resolution, resolution))
    return params, counter.get_total_flops() // 2


def model_costs(model: BenchModel, resolution: int, num_classes: int = 1000) -> tuple[int, int]:
    """(params, MACs): closed form for our archs (exactly equal to counting), counted for timm."""
    if model.arch is not None:
        from autovit.costs import count_macs, count_params

        arch = model.arch.replace(resolution=resolution)
        return count_params(arch, num_classes), count_macs(arch, num_classes)
    return measured_costs(model.module, resolution)


def versions() -> dict[str, str]:
    import onnxruntime
    import timm

    import autovit

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "autovit": autovit.__version__}


def bench_models(names: Sequence[str], resolution: int = 256, threads: int = 1, rounds: int = 7,
                 runs: int = 20, warmup: int = 10, reference: str | None = None, latency: bool = True,
                 num_classes: int = 1000, opt_level: str = "all", pin: bool = True,
                 progress: ProgressFn | None = None, backend: str = "ort") -> BenchReport:
    """Params, MACs and (optionally) CPU latency of each named model at batch 1, timed on `backend`
    ('ort': onnxruntime, 'torch': eager PyTorch) by the latency tables' timing path."""
    from autovit.latency.measure import MeasureConfig, measure_interleaved, timing_process

    names = list(dict.fromkeys(names))  # drop repeats, keep order
    if not names:
        raise AutovitError("no models to compare", hint="name at least one model, e.g. autovit_xxs mobilevit_xxs")
    _check_settings(resolution, threads, rounds, runs, warmup)
    if reference is not None and reference not in names:
        raise AutovitError(f"the reference '{reference}' is not among the models compared",
                           hint="pass --reference one of: " + ", ".join(names))
    reference = reference or names[0]
    step = progress or (lambda *_: None)

    models: list[BenchModel] = []
    rows: list[BenchRow] = []
    for i, name in enumerate(names):
        step("build", i, len(names), name)
        model = resolve_model(name, num_classes)
        params, macs = model_costs(model, resolution, num_classes)
        models.append(model)
        rows.append(BenchRow(name, model.source, params, macs))
    step("build", len(names), len(names), "")

    timing = MeasureConfig(backend=backend, threads=threads, opt_level=opt_level)
    cpu = None
    if latency:
        with timing_process(pin=pin) as cpu:  # the torch backend sets the thread count: restored after
            runners = []
            for i, model in enumerate(models):
                step("export", i, len(models), model.name)
                runners.append(timing.runner(model.module, (1, 3, resolution, resolution)))
            step("export", len(models), len(models), "")
            per_round: list[list[float]] = [[] for _ in runners]
            for r in range(rounds):
                step("measure", r, rounds, f"round {r + 1}/{rounds}")
                timings = measure_interleaved(runners, None, warmup if r == 0 else 0, 1, runs)
                for samples, t in zip(per_round, timings):
                    samples.append(t.median_ms)
            step("measure", rounds, rounds, "")
        ref = np.asarray(per_round[names.index(reference)])
        for row, samples in zip(rows, per_round):
            q1, q3 = np.percentile(samples, [25, 75])
            row.median_ms = float(np.median(samples))
            row.iqr_ms = float(q3 - q1)
            row.ratio_to_ref = float(np.median(np.asarray(samples) / ref))
            row.rounds_ms = [round(s, 4) for s in samples]

    settings = dict(resolution=resolution, threads=threads, rounds=rounds, runs=runs, warmup=warmup,
                    reference=reference, latency=latency, num_classes=num_classes, batch=1,
                    backend={"ort": "onnxruntime"}.get(backend, backend), graph_optimization=opt_level, pinned_cpu=cpu,
                    macs="FlopCounterMode FLOPs / 2 (closed form for autovit models)")
    machine = timing.fingerprint(resolution)
    return BenchReport(rows, settings, machine, versions())


def _check_settings(resolution: int, threads: int, rounds: int, runs: int, warmup: int) -> None:
    if resolution < 32:
        raise AutovitError(f"resolution must be >= 32, got {resolution}")
    if threads < 1:
        raise AutovitError(f"threads must be >= 1, got {threads}")
    if rounds < 1 or runs < 1 or warmup < 0:
        raise AutovitError(f"need rounds >= 1, runs >= 1 and warmup >= 0, got {rounds}, {runs}, {warmup}")


def markdown_table(report: BenchReport) -> str:
    """The report as a GitHub markdown table."""
    ref = report.settings["reference"]
    lines = [f"| model | source | params (M) | MACs (G) | median (ms) | IQR (ms) | ratio to {ref} |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in report.rows:
        lat = (f"{r.median_ms:.2f} | {r.iqr_ms:.2f} | {r.ratio_to_ref:.3f}" if r.median_ms is not None
               else "- | - | -")
        lines.append(f"| {r.name} | {r.source} | {r.params / 1e6:.3f} | {r.macs / 1e9:.3f} | {lat} |")
    return "\n".join(lines)
