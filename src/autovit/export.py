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
RTOL = 1e-4  # max |diff| / max |PyTorch output| (see autovit.onnx_export.RTOL)
MOBILE_RTOL = 1e-3  # Core ML / LiteRT kernels round more


@dataclass
class FormatResult:
    format: str
    status: str  # ok | skipped | failed
    path: str | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None  # max_abs_diff / max |PyTorch output|
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
                "rtol": RTOL, "formats": [r.to_dict() for r in self.results]}

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


def _check(fmt: str, ref: torch.Tensor, out: Any, rtol: float) -> tuple[float, float]:
    """(max abs diff, relative diff) of `out` against PyTorch's `ref`; raises beyond `rtol`."""
    from autovit.onnx_export import relative_diff

    diff, rel = relative_diff(ref, torch.as_tensor(out))
    if not (math.isfinite(rel) and rel <= rtol):
        raise AutovitError(f"the {fmt} export differs from PyTorch by {diff:.2e} ({rel:.1e} of the largest "
                           f"output; > {rtol:.0e})", hint="report this as a bug with the arch JSON")
    return diff, rel


def _safetensors(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor,
                 meta: Mapping[str, Any]) -> FormatResult:
    from autovit.subnet_io import load_subnet, save_subnet

    save_subnet(model, out, extra_meta=meta)
    with torch.no_grad():
        diff, rel = _check("safetensors", ref, load_subnet(out)(x), 0.0)
    return FormatResult("safetensors", "ok", str(out / "model.safetensors"), diff, rel, "reloaded with load_subnet")


def _torchscript(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor, rtol: float) -> FormatResult:
    path = out / "model.torchscript.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn_like(x))
        atomic_write(path, lambda p: torch.jit.save(traced, str(p)))
        diff, rel = _check("TorchScript", ref, torch.jit.load(str(path))(x), rtol)
    return FormatResult("torchscript", "ok", str(path), diff, rel, "torch.jit.trace, reloaded with torch.jit.load")


def _onnx(model: AutoViT, out: Path, x: torch.Tensor, rtol: float) -> FormatResult:
    from autovit.io_utils import atomic_write_bytes
    from autovit.onnx_export import check_onnx, export_onnx

    path = out / "model.onnx"
    data = export_onnx(model, None, tuple(x.shape))
    atomic_write_bytes(path, data)
    diff, rel = check_onnx(model, path, x, rtol)
    return FormatResult("onnx", "ok", str(path), diff, rel, "onnx.checker passed; onnxruntime CPU vs PyTorch")


def tflite_converter() -> Any | None:
    """The LiteRT converter package (litert-torch, or its former name ai-edge-torch); None when neither
    is installed."""
    import importlib

    for name in ("litert_torch", "ai_edge_torch"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def to_tflite(module: torch.nn.Module, example: torch.Tensor, path: str | Path) -> Any:
    """Converts `module` with LiteRT and writes the .tflite file; returns the converted model (callable
    on tensors, run by the LiteRT interpreter)."""
    converter = tflite_converter()
    if converter is None:
        raise AutovitError("litert-torch is not installed", hint="pip install litert-torch")
    edge = converter.convert(module.eval(), (example,))
    edge.export(str(path))
    return edge


def to_coreml(module: torch.nn.Module, example: torch.Tensor, path: str | Path, float32: bool = True) -> Any:
    """Converts `module` to a Core ML ML Program (FLOAT32 compute, or Core ML's default FLOAT16) and
    writes the .mlpackage; returns the coremltools model."""
    import coremltools as ct

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch.export, not tracing: the traced graph's shape arithmetic (unfold/fold) does not convert.
        program = torch.export.export(module.eval(), (example,)).run_decompositions({})
        precision = {"compute_precision": ct.precision.FLOAT32} if float32 else {}
        mlmodel = ct.convert(program, convert_to="mlprogram", **precision)
    mlmodel.save(str(path))  # a directory (.mlpackage): cannot be renamed into place atomically
    return mlmodel


def _coreml(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor, rtol: float) -> FormatResult:
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return FormatResult("coreml", "skipped", message="coremltools is not installed (pip install coremltools)")
    path = out / "model.mlpackage"
    mlmodel = to_coreml(model, x, path)
    try:
        name = mlmodel.get_spec().description.input[0].name
        pred = mlmodel.predict({name: x.numpy()})
    except Exception as err:  # Core ML runs only on macOS; elsewhere the package is written but not run
        return FormatResult("coreml", "ok", str(path), None, None,
                            f"written, not verified here (Core ML runs only on macOS: {str(err)[:80]})")
    diff, rel = _check("Core ML", ref, next(iter(pred.values())), max(rtol, MOBILE_RTOL))
    return FormatResult("coreml", "ok", str(path), diff, rel, "Core ML vs PyTorch")


def _tflite(model: AutoViT, out: Path, x: torch.Tensor, ref: torch.Tensor, rtol: float) -> FormatResult:
    if tflite_converter() is None:
        return FormatResult("tflite", "skipped",
                            message="litert-torch is not installed (pip install litert-torch; "
                                    "it pulls in JAX, transformers and torchao)")
    path = out / "model.tflite"
    edge = to_tflite(model, x, path)
    diff, rel = _check("TFLite", ref, edge(x), max(rtol, MOBILE_RTOL))
    return FormatResult("tflite", "ok", str(path), diff, rel, "LiteRT interpreter vs PyTorch")


def export_subnet(model: AutoViT, out_dir: str | Path, formats: Sequence[str] = DEFAULT_FORMATS,
                  rtol: float = RTOL, meta: Mapping[str, Any] | None = None, seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> ExportReport:
    """Writes `model` in each of `formats` into `out_dir` and checks every reloadable format against
    PyTorch on a seeded random batch-1 input: exact for safetensors, else max |diff| within `rtol`
    of the largest PyTorch output (float32 rounding grows with the logits' scale); ONNX graphs
    also pass `onnx.checker`.
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
            res = _torchscript(model, out, x, ref, rtol)
        elif fmt == "onnx":
            res = _onnx(model, out, x, rtol)
        else:
            convert = _coreml if fmt == "coreml" else _tflite
            try:
                res = convert(model, out, x, ref, rtol)
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
