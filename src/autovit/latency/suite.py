"""Profiling another device: export every measurement network, import the timings.

`export_suite` writes, for every measured block variant of a space (by default the anchors of
`autovit.latency.imputation`; the rest is imputed at import), the in-context pair (the context
network with the block, and the shared context network without it) plus the block alone, the
reference network and the fitting subnets, as ONNX (optionally TFLite via litert-torch and
Core ML via coremltools), with a manifest. Time each file on the device (e.g. LiteRT
`benchmark_model`, onnxruntime's perf test, Xcode performance reports) and list the medians in
a CSV ``file,median_ms[,iqr_ms,count]``; `import_measurements` turns that into a table for
that device, fitted when the subnets were timed too.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.export import to_coreml, to_tflite
from autovit.io_utils import atomic_write_text, save_json
from autovit.latency.blocks import BlockSig, context_key, context_pair, space_blocks, standalone_block
from autovit.latency.imputation import DEFAULT_PER_FEATURE, blocks_to_measure, impute_entries
from autovit.latency.lut import LatencyTable, clamp_negative_costs, fingerprint_id
from autovit.latency.predictor import LatencyModel, table_terms
from autovit.latency.profile import Progress, fit_archs, reference_arch, seeded_model
from autovit.onnx_export import export_onnx
from autovit.space import SearchSpace

SUITE_FORMAT = "autovit-latency-suite"
FORMATS = ("onnx", "tflite", "coreml")


class SuiteError(AutovitError):
    """A suite manifest or measurement CSV is missing, malformed or incomplete."""


def _converters(formats: Sequence[str]) -> tuple[dict[str, Callable], list[str]]:
    """Available extra exporters and notes about the ones that are not."""
    conv: dict[str, Callable] = {}
    notes: list[str] = []
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise SuiteError(f"unknown export format(s) {bad}", hint=f"use any of {', '.join(FORMATS)}")
    if "tflite" in formats:
        if importlib.util.find_spec("litert_torch") or importlib.util.find_spec("ai_edge_torch"):
            conv["tflite"] = lambda module, shape, path: to_tflite(module, torch.randn(*shape), path)
        else:
            notes.append("TFLite/LiteRT export skipped: `pip install litert-torch` (converts without TensorFlow; "
                         "time the files with LiteRT's benchmark_model on the device)")
    if "coreml" in formats:
        if importlib.util.find_spec("coremltools"):
            # Core ML's default FLOAT16 compute: what the device runs
            conv["coreml"] = lambda module, shape, path: to_coreml(module, torch.randn(*shape), path, float32=False)
            notes.append("Core ML packages are converted here but cannot run on Linux: time them on a Mac/iPhone "
                         "(Xcode performance report, median prediction time)")
        else:
            notes.append("Core ML export skipped: `pip install coremltools` (conversion works on Linux; timing "
                         "needs macOS/iOS)")
    return conv, notes


def export_suite(space: SearchSpace, out: str | Path, resolution: int | None = None, fit_subnets: int = 30,
                 formats: Sequence[str] = ("onnx",), num_classes: int = 1000, seed: int = 0,
                 progress: Progress | None = None, measure: str = "anchors",
                 anchors_per_feature: int = DEFAULT_PER_FEATURE, standalone: bool = True) -> dict[str, Any]:
    """Writes the measurement networks of `space` plus manifest.json / manifest.csv / a CSV template.

    With ``measure="anchors"`` only the anchor blocks are exported; the manifest lists the other
    signatures, which `import_measurements` imputes (see `autovit.latency.imputation`).
    ``standalone=False`` skips the isolated copies of the blocks (not needed for the table)."""
    out = Path(out)
    res = resolution or space.resolution[0]
    all_sigs = space_blocks(space, res, num_classes)
    sigs = blocks_to_measure(all_sigs, measure, anchors_per_feature)
    extra, notes = _converters([f for f in formats if f != "onnx"])
    measured = {str(s) for s in sigs}
    imputed = [str(s) for s in all_sigs if str(s) not in measured]
    size = (1, 3, res, res)
    files: list[dict[str, Any]] = []
    failures: list[str] = []

    def write(module: torch.nn.Module, shape: tuple[int, ...], stem: str, kind: str, **info: Any) -> str:
        export_onnx(module, out / f"{stem}.onnx", shape)
        for fmt, fn in extra.items():
            suffix = ".tflite" if fmt == "tflite" else ".mlpackage"
            try:
                fn(module, shape, out / f"{stem}{suffix}")
            except Exception as err:  # noqa: BLE001 - converter coverage varies; report, keep going
                failures.append(f"{fmt} {stem}: {type(err).__name__}: {str(err)[:120]}")
        files.append({"file": stem, "kind": kind, "input_shape": list(shape), **info})
        return stem

    torch.manual_seed(0)
    ref = write(seeded_model(reference_arch(res), 1000), size, "reference", "reference")
    contexts: dict[str, str] = {}
    blocks = []
    steps = len(sigs) + fit_subnets
    for i, sig in enumerate(sigs):
        with_net, without, copies = context_pair(sig, space.layout)
        ctx = context_key(sig)
        if ctx not in contexts:
            contexts[ctx] = write(without, size, f"contexts/ctx{len(contexts):03d}", "context", context=ctx)
        w = write(with_net, size, f"blocks/b{i:03d}_with", "block_with", signature=str(sig))
        entry = {"signature": str(sig), "with": w, "context": contexts[ctx], "copies": copies}
        if standalone:
            alone, shape = standalone_block(sig, space.layout)
            entry["standalone"] = write(alone, shape, f"standalone/b{i:03d}", "standalone", signature=str(sig))
        blocks.append(entry)
        if progress:
            progress("export", i + 1, steps)
    subnets = []
    for j, arch in enumerate(fit_archs(space, fit_subnets, seed) if fit_subnets else []):
        arch = arch.replace(resolution=res)
        f = write(seeded_model(arch, num_classes), size, f"subnets/fit{j:02d}", "subnet", arch=arch.key())
        subnets.append({"file": f, "arch": arch.to_dict()})
        if progress:
            progress("export", len(sigs) + j + 1, steps)
    manifest = {"format": SUITE_FORMAT, "version": 1, "space": space.name, "resolution": res,
                "num_classes": num_classes, "layout": space.layout.to_dict(), "reference": ref,
                "blocks": blocks, "imputed": imputed, "subnets": subnets, "formats": ["onnx"] + sorted(extra),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "how_to": "time every file at batch 1 on the device; write file,median_ms[,iqr_ms,count] to a CSV "
                          "(file = the path without extension, as listed here); then `autovit latency import`"}
    save_json(out / "manifest.json", manifest)
    rows = ["file,kind,signature,input_shape"] + [
        f"{f['file']},{f['kind']},\"{f.get('signature', f.get('arch', ''))}\",\"{'x'.join(map(str, f['input_shape']))}\""
        for f in files]
    atomic_write_text(out / "manifest.csv", "\n".join(rows) + "\n")
    timed = [f["file"] for f in files if f["kind"] != "standalone"]
    atomic_write_text(out / "measurements_template.csv", "file,median_ms,iqr_ms,count\n"
                      + "".join(f"{name},,,\n" for name in timed))
    if failures:
        notes.append(f"{len(failures)} conversions failed (first: {failures[0]})")
    return {"out": str(out), "files": len(files), "blocks": len(blocks), "imputed": len(imputed),
            "contexts": len(contexts),
            "subnets": len(subnets), "manifest": str(out / "manifest.json"),
            "csv_template": str(out / "measurements_template.csv"), "formats": manifest["formats"],
            "notes": notes, "conversion_failures": failures}


def read_measurements(path: str | Path) -> dict[str, dict[str, float]]:
    """file (extension stripped) -> {median_ms, iqr_ms, count} from a measurement CSV."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"measurement CSV not found: {path}",
                         hint="fill in measurements_template.csv from the export-suite directory")
    out: dict[str, dict[str, float]] = {}
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SuiteError(f"{path} is not a CSV text file (it holds binary data)",
                         hint="write the timings as text: file,median_ms[,iqr_ms,count]") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "file" not in reader.fieldnames or "median_ms" not in reader.fieldnames:
        raise SuiteError(f"{path} needs the columns file,median_ms (optional iqr_ms,count)",
                         hint="start from measurements_template.csv in the export-suite folder")
    try:
        for line, row in enumerate(reader, start=2):
            if not (row.get("median_ms") or "").strip():
                continue
            value = _number(row, "median_ms", None, path, line)
            if not value > 0:
                raise SuiteError(f"{path} line {line}: median_ms must be > 0, got {value}")
            iqr = _number(row, "iqr_ms", 0.0, path, line)
            if iqr < 0:
                raise SuiteError(f"{path} line {line}: iqr_ms must be >= 0, got {iqr}")
            count = _number(row, "count", 1.0, path, line)
            if count < 1 or count != int(count):
                raise SuiteError(f"{path} line {line}: count must be a whole number >= 1, got {row['count']!r}")
            name = (row["file"] or "").strip()
            for ext in (".onnx", ".tflite", ".mlpackage"):
                name = name.removesuffix(ext)
            out[name] = {"median_ms": value, "iqr_ms": iqr, "count": int(count)}
    except csv.Error as err:
        raise SuiteError(f"{path} is not a readable CSV ({err})",
                         hint="write the timings as text: file,median_ms[,iqr_ms,count]") from None
    return out


def _number(row: dict[str, Any], column: str, default: float | None, path: Path, line: int) -> float:
    """A finite number from a CSV cell (`default` when the cell is empty)."""
    text = (row.get(column) or "").strip()
    if not text and default is not None:
        return default
    hint = f"write {column} as a plain number" + ("" if default is None else ", or leave the cell empty")
    try:
        value = float(text)
    except ValueError:
        raise SuiteError(f"{path} line {line}: {column} {text!r} is not a number", hint=hint) from None
    if not math.isfinite(value):
        raise SuiteError(f"{path} line {line}: {column} {text!r} is not a finite number", hint=hint)
    return value


_MANIFEST_KEYS = ("space", "resolution", "layout", "reference", "blocks")
_BLOCK_KEYS = ("signature", "with", "context", "copies")


def _read_manifest(path: Path) -> dict[str, Any]:
    """The suite manifest, with its required keys checked."""
    if not path.is_file():
        raise SuiteError(f"suite manifest not found: {path}",
                         hint="pass the manifest.json written by `autovit latency export-suite`")
    hint = "pass the manifest.json written by `autovit latency export-suite` (re-export it if it was edited)"
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SuiteError(f"{path} is not an autovit latency suite manifest (not JSON)", hint=hint) from None
    if not isinstance(manifest, dict) or manifest.get("format") != SUITE_FORMAT:
        raise SuiteError(f"{path} is not an autovit latency suite manifest (no '{SUITE_FORMAT}' format tag)",
                         hint=hint)
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    blocks = manifest.get("blocks")
    if not missing and not isinstance(blocks, list):
        missing = ["blocks (a list)"]
    for i, b in enumerate(blocks if isinstance(blocks, list) and not missing else []):
        absent = [k for k in _BLOCK_KEYS if not isinstance(b, dict) or k not in b]
        if absent:
            missing = [f"blocks[{i}].{k}" for k in absent]
            break
        if not isinstance(b["copies"], int) or b["copies"] < 1:
            raise SuiteError(f"{path}: blocks[{i}].copies must be a whole number >= 1, got {b['copies']!r}",
                             hint=hint)
    subnets = manifest.get("subnets", [])
    if not missing and not (isinstance(subnets, list)
                            and all(isinstance(x, dict) and "file" in x and "arch" in x for x in subnets)):
        missing = ["subnets[].file / subnets[].arch"]
    if missing:
        raise SuiteError(f"{path} is an incomplete suite manifest: missing {', '.join(missing)}", hint=hint)
    if not isinstance(manifest["resolution"], int) or manifest["resolution"] < 8:
        raise SuiteError(f"{path}: resolution must be a whole number >= 8, got {manifest['resolution']!r}", hint=hint)
    return manifest


def import_measurements(manifest_path: str | Path, csv_path: str | Path, device: str = "unknown device",
                        runtime: str = "unknown runtime", threads: int = 1) -> LatencyModel:
    """A table (fitted when every subnet was timed) from device timings of an exported suite."""
    manifest_path = Path(manifest_path)
    manifest = _read_manifest(manifest_path)
    meas = read_measurements(csv_path)
    ref = manifest["reference"]
    if ref not in meas:
        raise SuiteError(f"the CSV has no timing of the reference network '{ref}'",
                         hint="time reference.onnx too: every block is stored as a ratio to it")
    ref_ms = meas[ref]["median_ms"]
    missing = [f for b in manifest["blocks"] for f in (b["with"], b["context"]) if f not in meas]
    if missing:
        raise SuiteError(f"{len(set(missing))} block networks have no timing in the CSV (first: {missing[0]})",
                         hint="time every file listed in measurements_template.csv (standalone/ files are optional)")
    res = int(manifest["resolution"])
    fp = {"cpu": device, "cores": None, "os": None, "backend": "external", "runtime": runtime, "threads": threads,
          "resolution": res}
    fid = fingerprint_id(fp)
    entries = {}
    for b in manifest["blocks"]:
        w, c = meas[b["with"]], meas[b["context"]]
        diff = (w["median_ms"] - c["median_ms"]) / b["copies"]
        sig = str(BlockSig.parse(b["signature"]))
        entries[sig] = {"median_ms": diff, "iqr_ms": (w["iqr_ms"] + c["iqr_ms"]) / b["copies"],
                        "count": min(w["count"], c["count"]), "ratio_to_ref": diff / ref_ms, "copies": b["copies"],
                        "with_ms": w["median_ms"], "without_ms": c["median_ms"], "fingerprint": fid}
    try:
        to_impute = [BlockSig.parse(k) for k in manifest.get("imputed", [])]
    except AutovitError as err:
        raise SuiteError(f"{manifest_path}: {err.message}", hint="re-export the suite with `autovit latency "
                                                                 "export-suite`") from None
    measured_sigs = [BlockSig.parse(k) for k in entries]
    entries, imputation = impute_entries(entries, measured_sigs + to_impute, ref_ms, fid)
    clamped = clamp_negative_costs(entries)
    if clamped:
        warnings.warn(f"{len(clamped)} of {len(entries)} block costs came out negative and were set to 0 "
                      f"(first: {clamped[0]}): the network with the block was timed faster than its context "
                      f"network without it, i.e. the timing noise is larger than these blocks. Time the files "
                      f"with more runs (and pinned to one core) for a trustworthy table", stacklevel=2)
    table = LatencyTable(space=manifest["space"], resolution=res, fingerprint=fp, entries=entries,
                         num_classes=int(manifest.get("num_classes", 1000)),
                         reference={"arch": reference_arch(res).to_dict(), "median_ms": ref_ms,
                                    "iqr_ms": meas[ref]["iqr_ms"], "count": meas[ref]["count"]},
                         meta={"layout": manifest["layout"], "method": "imported device timings (in-context pairs)",
                               "modules_measured": len(measured_sigs), "modules_imputed": len(to_impute),
                               "imputation": imputation, "source": str(csv_path), "clamped_negative": clamped})
    model = LatencyModel(table)
    timed = [s for s in manifest.get("subnets", []) if s["file"] in meas]
    if timed and len(timed) == len(manifest.get("subnets", [])) and len(timed) >= len(table_terms(table)):
        layout = table.layout
        archs = [Arch.from_dict(s["arch"], layout) for s in timed]
        y = np.array([meas[s["file"]]["median_ms"] / ref_ms for s in timed])
        model = LatencyModel.fit(table, archs, y)
        pred = model.predict_ratio(archs)
        table.model = {"coef": model.coef, "terms": list(model.coef), "method": "nnls, relative error",
                       "fit": {"archs": [a.to_dict() for a in archs], "ratio": y.tolist(),
                               "ms": [meas[s["file"]]["median_ms"] for s in timed]},
                       "fit_mape": float(np.mean(np.abs(pred - y) / y) * 100)}
    return model
