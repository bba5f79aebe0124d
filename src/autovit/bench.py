"""Side-by-side comparison of models: params, MACs and measured CPU latency (onnxruntime or torch).

Used by `autovit bench`, `benchmarks/bench_models.py` and the pipeline report. A model is named
either `autovit_xxs|xs|s`, the path of an arch JSON, or any timm model name (random weights;
nothing is downloaded). Latency is measured in rounds that interleave all models, so slow
drift of a shared machine hits every model alike; each model's figure is the median of its
per-round medians, the spread the IQR of those, and `ratio_to_ref` the median per-round ratio
to the reference model (the first one unless named).

timm models are compared as they ship: structurally reparameterized (`timm.utils.model.
reparameterize_model`: RepVGG-style branches and conv+BN pairs of RepViT, MobileOne, FastViT,
SHViT, ... fused into single layers) before costs are counted and the model is exported; a timm
model with a fixed input size (it takes `img_size`) that cannot run at the asked resolution is
built for it. A model that still cannot run (or be exported) is reported as skipped with the
reason, and the others are measured.
"""

from __future__ import annotations

import difflib
import inspect
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
# Callback for one line about a model that is skipped.
WarnFn = Callable[[str], None]


class ModelCannotRun(AutovitError):
    """A model that builds but cannot run (or be exported) at the asked resolution; `reason` is short."""

    def __init__(self, name: str, resolution: int, reason: str, what: str = "run") -> None:
        self.name, self.resolution, self.reason = name, resolution, reason
        self.summary = f"cannot {what} at {resolution} px ({reason})"
        super().__init__(f"{name}: {self.summary}",
                         hint="try another --resolution (e.g. the model's own input size, often 224)")


@dataclass
class BenchModel:
    """A model ready to compare: its name, where it comes from, the network and its arch (ours)."""

    name: str
    source: str  # "autovit" (paper model or arch JSON) or "timm"
    module: nn.Module
    arch: Arch | None = None
    reparameterized: int = 0          # modules timm's reparameterize_model fused or switched to deploy form
    img_size: int | None = None       # built for this input size (a timm model with a fixed one)


@dataclass
class BenchRow:
    """One model's result (latency fields are None when latency was not measured; params and MACs
    too when the model was skipped, with the reason in `skipped`)."""

    name: str
    source: str
    params: int | None
    macs: int | None
    median_ms: float | None = None
    iqr_ms: float | None = None
    ratio_to_ref: float | None = None
    rounds_ms: list[float] = field(default_factory=list)
    reparameterized: int = 0
    img_size: int | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "params": self.params, "macs": self.macs,
            "median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "ratio_to_ref": self.ratio_to_ref,
            "rounds_ms": self.rounds_ms, "reparameterized": self.reparameterized, "img_size": self.img_size,
            "skipped": self.skipped,
        }

    @property
    def notes(self) -> str:
        """What was done to the model to compare it fairly (empty for none), for tables."""
        return ", ".join(([f"reparameterized ({self.reparameterized} modules)"] if self.reparameterized else [])
                         + ([f"built for {self.img_size} px"] if self.img_size else []))


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


def resolve_model(name: str, num_classes: int = 1000, resolution: int | None = None,
                  deploy: bool = True) -> BenchModel:
    """Builds `autovit_*`, an arch JSON path or a timm model by name (random weights, eval mode); timm
    models reparameterized for inference (`reparameterize`) unless `deploy` is False (the training
    form: RepVGG-style branches kept). With `resolution`, the model is checked to run at it: a timm
    model that does not but takes `img_size` is built for it, otherwise `ModelCannotRun` is raised."""
    import timm

    from autovit.registry import MODEL_NAMES, resolve_arch
    from autovit.model import build_model

    if model_source(name) == "autovit":
        arch = resolve_arch(name)
        model = BenchModel(name, "autovit", build_model(arch, num_classes).eval(), arch)
        if resolution is not None:
            _check_runs(model.module, name, resolution)
        return model
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, sorted(set(MODEL_NAMES) | set(timm.list_models())), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise AutovitError(f"unknown model '{name}'",
                           hint=f"{hint}use {', '.join(MODEL_NAMES)}, the path of an arch JSON file, "
                                "or a timm model name (`timm.list_models()`)")
    module, img_size = _create_timm(name, num_classes), None
    if resolution is not None:
        try:
            _check_runs(module, name, resolution)
        except ModelCannotRun as err:
            if "img_size" not in inspect.signature(type(module).__init__).parameters:
                raise
            try:
                module, img_size = _create_timm(name, num_classes, img_size=resolution), resolution
            except AutovitError:  # it cannot be built for this size either
                raise err from None
            _check_runs(module, name, resolution)
    module, count = reparameterize(module) if deploy else (module, 0)
    return BenchModel(name, "timm", module.eval(), reparameterized=count, img_size=img_size)


def model_source(name: str) -> str:
    """'autovit' for a paper model name or an arch JSON path, else 'timm'."""
    from autovit.registry import MODEL_NAMES

    return "autovit" if name in MODEL_NAMES or name.endswith(".json") or Path(name).is_file() else "timm"


def _create_timm(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs).eval()
    except Exception as err:  # timm raises assorted errors for models it cannot build as asked
        raise AutovitError(f"timm could not build '{name}': {err}") from None


def _check_runs(module: nn.Module, name: str, resolution: int) -> None:
    """One batch-1 forward at `resolution`; `ModelCannotRun` with the error's first line if it fails."""
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, 3, resolution, resolution))
    except Exception as err:  # shape errors surface as RuntimeError, AssertionError, ValueError, ...
        raise ModelCannotRun(name, resolution, short_reason(err)) from None


def short_reason(err: BaseException, limit: int = 160) -> str:
    """`Type: first line of the message`, cut to `limit` characters (for one-line reports)."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


_REPARAM_METHODS = ("reparameterize", "switch_to_deploy")


def reparameterize(module: nn.Module) -> tuple[nn.Module, int]:
    """`module` as deployed: timm's `reparameterize_model` (in place) fuses every submodule that has a
    `fuse()` (replaced by its result) or `reparameterize()` / `switch_to_deploy()` (RepVGG-style
    branches, conv+BN); returns the module and how many submodules it changed (0: nothing to fuse,
    the call is a no-op)."""
    from timm.utils.model import reparameterize_model

    count = _count_reparameterizable(module)
    return reparameterize_model(module, inplace=True), count


def _count_reparameterizable(module: nn.Module) -> int:
    """The submodules `reparameterize_model` changes: it walks the children, replaces one with a
    `fuse` method by `fuse()`'s result (nothing below it stays in the model) and otherwise calls
    `reparameterize` / `switch_to_deploy` and walks on below."""
    count = 0
    for child in module.children():
        if hasattr(child, "fuse"):
            count += 1
        else:
            count += any(hasattr(child, m) for m in _REPARAM_METHODS) + _count_reparameterizable(child)
    return count


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
                 progress: ProgressFn | None = None, backend: str = "ort", warn: WarnFn | None = None) -> BenchReport:
    """Params, MACs and (optionally) CPU latency of each named model at batch 1, timed on `backend`
    ('ort': onnxruntime, 'torch': eager PyTorch) by the latency tables' timing path.

    A model that cannot run or be exported at `resolution` gets a row with `skipped` (the reason)
    and one line through `warn`; the others are measured. Raises `AutovitError` when no model could
    be measured, or when the named `reference` was skipped (its ratios are the point)."""
    from autovit.latency.measure import MeasureConfig, measure_interleaved, timing_process

    names = list(dict.fromkeys(names))  # drop repeats, keep order
    if not names:
        raise AutovitError("no models to compare", hint="name at least one model, e.g. autovit_xxs mobilevit_xxs")
    _check_settings(resolution, threads, rounds, runs, warmup)
    if reference is not None and reference not in names:
        raise AutovitError(f"the reference '{reference}' is not among the models compared",
                           hint="pass --reference one of: " + ", ".join(names))
    step = progress or (lambda *_: None)
    timing = MeasureConfig(backend=backend, threads=threads, opt_level=opt_level)
    skipped: list[ModelCannotRun] = []

    def skip(i: int, err: ModelCannotRun) -> None:
        rows[i] = BenchRow(names[i], model_source(names[i]), None, None, skipped=err.summary)
        models[i] = None
        skipped.append(err)
        if warn:
            warn(f"{err.message}; skipped")

    models: list[BenchModel | None] = [None] * len(names)
    rows: list[BenchRow | None] = [None] * len(names)
    for i, name in enumerate(names):
        step("build", i, len(names), name)
        try:
            model = resolve_model(name, num_classes, resolution)
            params, macs = model_costs(model, resolution, num_classes)
        except ModelCannotRun as err:
            skip(i, err)
            continue
        models[i] = model
        rows[i] = BenchRow(name, model.source, params, macs, reparameterized=model.reparameterized,
                           img_size=model.img_size)
    step("build", len(names), len(names), "")

    cpu = None
    if latency:
        with timing_process(pin=pin) as cpu:  # the torch backend sets the thread count: restored after
            runners: dict[int, Callable[[], None]] = {}
            for i, model in enumerate(models):
                step("export", i, len(models), names[i])
                if model is None:
                    continue
                try:
                    runners[i] = timing.runner(model.module, (1, 3, resolution, resolution))
                except Exception as err:  # an op the exporter or the runtime does not support
                    what = "be exported to ONNX" if backend == "ort" else f"run on {backend}"
                    skip(i, ModelCannotRun(names[i], resolution, short_reason(err), what))
            step("export", len(models), len(models), "")
            _check_measured(names, models, skipped, resolution)
            reference = _reference(reference, names, models)
            per_round: dict[int, list[float]] = {i: [] for i in runners}
            for r in range(rounds):
                step("measure", r, rounds, f"round {r + 1}/{rounds}")
                timings = measure_interleaved(list(runners.values()), None, warmup if r == 0 else 0, 1, runs)
                for i, t in zip(runners, timings):
                    per_round[i].append(t.median_ms)
            step("measure", rounds, rounds, "")
        ref = np.asarray(per_round[names.index(reference)])
        for i, samples in per_round.items():
            row = rows[i]
            q1, q3 = np.percentile(samples, [25, 75])
            row.median_ms = float(np.median(samples))
            row.iqr_ms = float(q3 - q1)
            row.ratio_to_ref = float(np.median(np.asarray(samples) / ref))
            row.rounds_ms = [round(s, 4) for s in samples]
    else:
        _check_measured(names, models, skipped, resolution)
        reference = _reference(reference, names, models)

    settings = dict(resolution=resolution, threads=threads, rounds=rounds, runs=runs, warmup=warmup,
                    reference=reference, latency=latency, num_classes=num_classes, batch=1,
                    backend={"ort": "onnxruntime"}.get(backend, backend), graph_optimization=opt_level, pinned_cpu=cpu,
                    macs="FlopCounterMode FLOPs / 2 (closed form for autovit models)",
                    reparameterization="timm.utils.model.reparameterize_model on every timm model before costs "
                                       "and export", skipped=[e.name for e in skipped])
    machine = timing.fingerprint(resolution)
    return BenchReport([r for r in rows if r is not None], settings, machine, versions())


def _check_measured(names: Sequence[str], models: Sequence[BenchModel | None], skipped: Sequence[ModelCannotRun],
                    resolution: int) -> None:
    if all(m is None for m in models):
        raise AutovitError(f"no model could be measured at {resolution} px: "
                           + "; ".join(f"{e.name}: {e.reason}" for e in skipped),
                           hint="try another --resolution (e.g. the models' own input size, often 224)")


def _reference(reference: str | None, names: Sequence[str], models: Sequence[BenchModel | None]) -> str:
    """The named reference (an error if it was skipped), else the first model measured."""
    if reference is not None:
        if models[names.index(reference)] is None:
            raise AutovitError(f"the reference '{reference}' could not be measured (see the line above)",
                               hint="pass another --reference or another --resolution")
        return reference
    return next(n for n, m in zip(names, models) if m is not None)


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
        if r.skipped:
            lines.append(f"| {r.name} | {r.source} | - | - | skipped: {r.skipped.replace('|', '/')} | | |")
            continue
        lat = (f"{r.median_ms:.2f} | {r.iqr_ms:.2f} | {r.ratio_to_ref:.3f}" if r.median_ms is not None
               else "- | - | -")
        source = f"{r.source} ({r.notes})" if r.notes else r.source
        lines.append(f"| {r.name} | {source} | {r.params / 1e6:.3f} | {r.macs / 1e9:.3f} | {lat} |")
    return "\n".join(lines)
