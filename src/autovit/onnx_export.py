"""Export to ONNX and check the exported graph against PyTorch."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autovit.errors import AutovitError
from autovit.io_utils import atomic_write_bytes

DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path | None, input_size: tuple[int, ...],
                opset: int = DEFAULT_OPSET) -> bytes:
    """Export `model` (eval mode, batch-1 static shape) to ONNX; returns the bytes, also
    written to `path` when given. Uses the TorchScript exporter (10x faster than dynamo on
    these small graphs) and falls back to the dynamo exporter if it fails."""
    model = model.eval()
    dummy = torch.randn(*input_size)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (dummy,), buf, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamo=False)
        except Exception:  # pragma: no cover - depends on the model's ops
            buf = io.BytesIO()
            program = torch.onnx.export(model, (dummy,), dynamo=True, opset_version=max(opset, 18),
                                        input_names=["input"], output_names=["output"], verbose=False)
            program.save(buf)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


# Exported graphs are compared relative to the output's scale: float32 kernels (onnxruntime's fused
# ops, TorchScript) differ from eager PyTorch by ~1e-6 of the largest output, so an absolute bound
# fails on large logits (1.45e-4 on logits of ~76) while a real conversion bug is off by O(1).
RTOL = 1e-4


def relative_diff(ref: np.ndarray | torch.Tensor, out: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(max |out - ref|, that divided by max |ref|): the absolute and scale-relative difference."""
    ref_a = np.asarray(ref.detach().cpu() if isinstance(ref, torch.Tensor) else ref, dtype=np.float64)
    out_a = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    diff = float(np.abs(out_a - ref_a).max()) if ref_a.size else 0.0
    scale = float(np.abs(ref_a).max()) if ref_a.size else 0.0
    return diff, (diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))


def validate_onnx(onnx_model: bytes | str | Path) -> None:
    """`onnx.checker` (with shape inference) on the graph; raises `AutovitError` if it is invalid."""
    import onnx

    try:
        proto = onnx.load_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx.load(str(onnx_model))
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise AutovitError(f"the exported ONNX graph is invalid: {str(err).splitlines()[0][:300]}",
                           hint="report this as a bug with the arch JSON") from None


def onnx_outputs(onnx_model: bytes | str | Path, x: torch.Tensor) -> np.ndarray:
    """The first output of the ONNX graph on input `x` (onnxruntime, CPU)."""
    import onnxruntime as ort

    src = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def onnx_max_abs_diff(model: nn.Module, onnx_model: bytes | str | Path, x: torch.Tensor) -> float:
    """Max |PyTorch - onnxruntime| on input `x`."""
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    return relative_diff(ref, onnx_outputs(onnx_model, x))[0]


def check_onnx(model: nn.Module, onnx_model: bytes | str | Path, x: torch.Tensor | tuple[int, ...],
               rtol: float = RTOL) -> tuple[float, float]:
    """Checks the graph with `onnx.checker`, then that onnxruntime's output on `x` (or a random input
    of that size) matches PyTorch's within `rtol` of the output's largest magnitude; returns
    (max abs diff, relative diff)."""
    validate_onnx(onnx_model)
    x = x if isinstance(x, torch.Tensor) else torch.randn(*x)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    diff, rel = relative_diff(ref, onnx_outputs(onnx_model, x))
    if not rel <= rtol:
        raise AutovitError(f"ONNX output differs from PyTorch by {diff:.2e} ({rel:.1e} of the largest output "
                           f"{np.abs(ref).max():.3g}; > {rtol:.0e})", hint="report this as a bug with the arch JSON")
    return diff, rel
