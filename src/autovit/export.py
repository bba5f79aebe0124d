"""Deployment export of a chosen subnet: safetensors + arch JSON, TorchScript, ONNX, and Core ML /
TFLite (LiteRT) where those packages are installed. Every format that can run here is reloaded and
compared numerically with the PyTorch model; the report records each max |difference|."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from autovit.errors import AutovitError
from autovit.io_utils import atomic_write, save_json
from autovit.model import AutoViT

FORMATS = ("safetensors", "torchscript", "onnx", "coreml", "tflite")
DEFAULT_FORMATS = ("safetensors", "torchscript", "onnx")
ATOL = 1e-4


@dataclass
class FormatResult:
    format: str
    status: str  # ok | skipped | failed
    path: str | None = None
    max_abs_diff: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportReport:
    out_dir: str
    arch_key: str
    input_size: tuple[int, ...]
    results: list[FormatResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "arch_key": self.arch_key, "input_size": list(self.input_size),
                "atol": ATOL, "formats": [r.to_dict() for r in self.results]}

    def result(self, fmt: str) -> FormatResult:
        return next(r for r in self.results if r.format == fmt)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    aliases = {"ts": "torchscript", "litert": "tflite", "mlpackage": "coreml", "pt": "torchscript"}
    names = [aliases.get(n, n) for n in names]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise AutovitError(f"unknown export format '{bad[0] if bad else text}'",
                           hint=f"use any of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(names))


def _max_diff(a: torch.Tensor, b: Any) -> float:
    return float((a - torch.as_tensor(b)).abs().max())


def _check(fmt: str, diff: float, atol: float) -> None:
    if not math.isfinite(diff) or diff > atol:
        raise AutovitError(f"the {fmt} export differs from PyTorch by {diff:.2e} (> {atol:.0e})",
                           hint="report this as a bug with the arch JSON")


def _safetensors(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor,
                 meta: Mapping[str, Any]) -> FormatResult:
    from autovit.subnet_io import load_subnet, save_subnet

    save_subnet(model, out, extra_meta=meta)
    with torch.no_grad():
        diff = _max_diff(ref, load_subnet(out)(x))
    _check("safetensors", diff, 0.0)
    return FormatResult("safetensors", "ok", str(out / "model.safetensors"), diff, "reloaded with load_subnet")


def _torchscript(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor, atol: float) -> FormatResult:
    path = out / "model.torchscript.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn_like(x))
        atomic_write(path, lambda p: torch.jit.save(traced, str(p)))
        diff = _max_diff(ref, torch.jit.load(str(path))(x))
    _check("TorchScript", diff, atol)
    return FormatResult("torchscript", "ok", str(path), diff, "torch.jit.trace, reloaded with torch.jit.load")


def _onnx(model: AutoViT, out: Path, x: torch.Tensor, atol: float) -> FormatResult:
    from autovit.onnx_export import export_onnx, onnx_max_abs_diff

    path = out / "model.onnx"
    data = export_onnx(model, None, tuple(x.shape))
    from autovit.io_utils import atomic_write_bytes

    atomic_write_bytes(path, data)
    diff = onnx_max_abs_diff(model, path, x)
    _check("ONNX", diff, atol)
    return FormatResult("onnx", "ok", str(path), diff, "onnxruntime CPU vs PyTorch")


def _coreml(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor, atol: float) -> FormatResult:
    try:
        import coremltools as ct
    except ImportError:
        return FormatResult("coreml", "skipped", message="coremltools is not installed (pip install coremltools)")
    path = out / "model.mlpackage"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch.export, not tracing: the traced graph's shape arithmetic does not convert.
        program = torch.export.export(model, (x,)).run_decompositions({})
        mlmodel = ct.convert(program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32)
    mlmodel.save(str(path))  # a directory (.mlpackage): cannot be renamed into place atomically
    try:
        name = mlmodel.get_spec().description.input[0].name
        pred = mlmodel.predict({name: x.numpy()})
    except Exception as err:  # Core ML runs only on macOS; elsewhere the package is written but not run
        return FormatResult("coreml", "ok", str(path), None,
                            f"written, not verified here (Core ML runs only on macOS: {str(err)[:80]})")
    diff = _max_diff(ref, next(iter(pred.values())))
    _check("Core ML", diff, max(atol, 1e-3))
    return FormatResult("coreml", "ok", str(path), diff, "Core ML vs PyTorch")


def _tflite(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor, atol: float) -> FormatResult:
    try:
        import litert_torch as converter
    except ImportError:
        try:
            import ai_edge_torch as converter
        except ImportError:
            return FormatResult("tflite", "skipped",
                                message="litert-torch is not installed (pip install litert-torch; "
                                        "it pulls in JAX, transformers and torchao)")
    path = out / "model.tflite"
    edge = converter.convert(model.eval(), (x,))
    edge.export(str(path))
    diff = _max_diff(ref, edge(x))
    _check("TFLite", diff, max(atol, 1e-3))
    return FormatResult("tflite", "ok", str(path), diff, "LiteRT interpreter vs PyTorch")


def export_subnet(model: AutoViT, out_dir: str | Path, formats: Sequence[str] = DEFAULT_FORMATS,
                  atol: float = ATOL, meta: Mapping[str, Any] | None = None, seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> ExportReport:
    """Writes `model` in each of `formats` into `out_dir` and checks every reloadable format against
    PyTorch on a seeded random batch-1 input (`atol` for ONNX/TorchScript, exact for safetensors).
    Optional formats whose package is missing are skipped with a message; any numerical mismatch
    raises `AutovitError`. Writes `export.json` (the report) as well."""
    if not isinstance(model, AutoViT):
        raise AutovitError(f"export needs a static AutoViT network, got {type(model).__name__}",
                           hint="extract the subnet from the supernet first (Supernet.extract(arch))")
    formats = parse_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    in_chans = int(model.stem.conv.weight.shape[1])
    x = torch.randn(1, in_chans, model.arch.resolution, model.arch.resolution,
                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x)
    report = ExportReport(str(out), model.arch.key(), tuple(x.shape))
    for fmt in formats:
        if progress:
            progress(fmt)
        if fmt == "safetensors":
            res = _safetensors(model, out, x, ref, dict(meta or {}))
        elif fmt == "torchscript":
            res = _torchscript(model, out, x, ref, atol)
        elif fmt == "onnx":
            res = _onnx(model, out, x, atol)
        else:
            convert = _coreml if fmt == "coreml" else _tflite
            try:
                res = convert(model, out, x, ref, atol)
            except AutovitError:
                raise
            except Exception as err:  # optional converters fail in many ways; the other formats still count
                res = FormatResult(fmt, "failed", message=f"conversion failed: {type(err).__name__}: {str(err)[:200]}")
        report.results.append(res)
    if "safetensors" not in formats:  # the arch JSON always travels with the exported files
        model.arch.save(out / "arch.json")
    save_json(out / "export.json", report.to_dict())
    return report


def load_export_report(out_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "export.json").read_text())
