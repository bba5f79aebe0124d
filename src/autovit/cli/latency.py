"""`autovit latency`: profile lookup tables, predict, validate, export suites for other devices."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from autovit.cli._common import console, err_console, make_table, phase_progress, print_json, print_problem

latency_app = typer.Typer(help="Latency lookup tables, the Eq. 6 latency model and its validation.",
                          no_args_is_help=True)


@latency_app.command("profile")
def profile(
    space: str = typer.Option("xxs", help="Search space: xxs, xs, s, mnv4_s, mnv4_m or a YAML path."),
    out: Path = typer.Option(..., help="Where to write the table JSON (e.g. luts/xxs_ort_1t_256.json)."),
    backend: str = typer.Option("ort", help="ort (onnxruntime CPU) or torch (eager)."),
    threads: int = typer.Option(1, help="Intra-op threads."),
    resolution: Optional[int] = typer.Option(None, help="Input resolution (default: the space's)."),
    opt_level: str = typer.Option("all", help="onnxruntime graph optimisation: disable|basic|extended|all."),
    rounds: int = typer.Option(7, help="Timing rounds per network (each with the reference)."),
    fit_subnets: int = typer.Option(30, help="Whole subnets measured to fit the Eq. 6 terms (0: raw table)."),
    seed: int = typer.Option(0, help="Seed of the fitting subnets."),
    num_classes: int = typer.Option(1000, help="Classifier size of the measured head."),
    cpu: Optional[int] = typer.Option(None, help="CPU to pin to (default: the last one)."),
    max_spread: float = typer.Option(0.4, help="Refuse when the reference timings spread more (IQR/median)."),
    force: bool = typer.Option(False, "--force-unstable", help="Write the table even on an unstable machine."),
    measure: str = typer.Option("anchors", "--blocks", help="anchors: time a few variants per block kind and impute "
                                                            "the rest from operator counts; all: time every variant."),
    anchors_per_feature: int = typer.Option(3, help="Anchors per cost-model term of a block kind (--blocks anchors)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Measure block variants in context, fit the latency model, write the table."""
    from autovit.api import ProfileConfig, profile_latency

    cfg = ProfileConfig(out=out, space=space, backend=backend, threads=threads, resolution=resolution,
                        opt_level=opt_level, rounds=rounds, fit_subnets=fit_subnets, seed=seed,
                        num_classes=num_classes, cpu=cpu, max_spread=max_spread, force_unstable=force,
                        blocks=measure, anchors_per_feature=anchors_per_feature)
    with phase_progress(not as_json) as progress:
        result = profile_latency(cfg, progress, warn=_print_warning, note=err_console.print)
    model, pinned = result.model, result.pinned_cpu
    t = model.table
    spreads = reference_spreads(t)
    summary = {"out": str(out), "space": t.space, "resolution": t.resolution, "modules": len(t.entries),
               "modules_measured": t.meta["modules_measured"], "modules_imputed": t.meta["modules_imputed"],
               "build_seconds": t.meta["build_seconds"], "reference_ms": t.reference_ms,
               "reference_spread": spreads, "pinned_cpu": pinned, "coef": model.coef,
               "fit_mape": (t.model or {}).get("fit_mape"), "table_share": (t.model or {}).get("table_share"),
               "warnings": t.meta.get("warnings", [])}
    if as_json:
        print_json(summary)
        return
    console.print(f"[green]wrote[/] {out}: {len(t.entries)} modules ({summary['modules_measured']} measured, "
                  f"{summary['modules_imputed']} imputed), {t.meta['build_seconds']:.0f}s, "
                  f"reference {t.reference_ms:.2f} ms")
    console.print("reference IQR/median: " + ", ".join(f"{v:.1%} {SPREAD_LABELS[k]}" for k, v in spreads.items()
                                                        if v is not None))
    if t.model and "fit_mape" in t.model:  # --fit-subnets 0 stores the raw sum, with no fit
        console.print(f"fit on {fit_subnets} subnets: MAPE {t.model['fit_mape']:.2f}%; coefficients "
                      + ", ".join(f"{k}={v:.3g}" for k, v in model.coef.items()))


# The reference network's IQR / median at each phase of a table build (keys of `reference_spreads`).
SPREAD_LABELS = {"precheck": "in the stability check before measuring", "blocks": "over the block timings",
                 "fit": "over the fitting-subnet timings"}


def reference_spreads(table: Any) -> dict[str, Optional[float]]:
    """The three stability figures stored with a table (None where that phase did not run)."""
    fit = (table.model or {}).get("fit") or {}
    return {"precheck": table.reference.get("precheck_spread"), "blocks": table.reference.get("spread"),
            "fit": fit.get("reference_spread")}


def _print_warning(message: str) -> None:
    print_problem("warning", message)


def _load_model(lut: Path) -> Any:
    from autovit.latency.predictor import LatencyModel

    return LatencyModel.load(lut)


def _parse_archs(model: Any, archs: list[str], force: bool) -> list[Any]:
    """Arch JSON files or paper model names, validated against the table's space."""
    from autovit.arch import Arch
    from autovit.errors import ArchError, AutovitError
    from autovit.latency.lut import LatencyTableError
    from autovit.registry import resolve_arch
    from autovit.space import ALL_BUILTIN_SPACES, SearchSpace

    # The table's space at the table's resolution (a space file names only its default resolution).
    space = (SearchSpace.builtin(model.space_name).with_resolution(model.table.resolution)
             if model.space_name in ALL_BUILTIN_SPACES else None)
    out = []
    for text in archs:
        if Path(text).is_file():
            arch = Arch.load(text, model.layout)
        else:
            arch = resolve_arch(text)
        if space is not None and not space.contains(arch):
            try:
                space.validate(arch)
            except ArchError as err:
                reason = err.message
            msg = f"the arch {text} is not in the space '{model.space_name}' the latency table was built for: {reason}"
            if not force:
                raise LatencyTableError(msg, hint="use the table of the arch's space, or --force-arch to predict anyway "
                                                  "(blocks missing from the table are still refused)")
            _print_warning(msg)
        if arch.resolution != model.table.resolution and force:
            _print_warning(f"predicting {text} at the table's {model.table.resolution}px")
            arch = arch.replace(resolution=model.table.resolution)
        out.append(arch)
    if not out:
        raise AutovitError("no arch given", hint="pass arch JSON files or names such as autovit_xxs")
    return out


@latency_app.command("predict")
def predict(
    archs: list[str] = typer.Argument(..., help="Arch JSON files or names (autovit_xxs, ...)."),
    lut: Path = typer.Option(..., help="Latency table JSON (from `latency profile` or `latency import`)."),
    breakdown: bool = typer.Option(False, help="Also list the per-block contributions."),
    reference_ms: Optional[float] = typer.Option(
        None, help="Convert ratios to ms with this reference time (e.g. from `autovit latency check`) instead of "
                   "the one measured with the table."),
    force: bool = typer.Option(False, "--force-arch", help="Predict archs outside the table's space or resolution "
                                                           "(warning)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Predicted batch-1 latency (ms on the table's device) of one or more archs."""
    model = _load_model(lut)
    if reference_ms is not None:
        model = model.with_reference_ms(reference_ms)
    parsed = _parse_archs(model, archs, force)
    ms = model.predict(parsed)
    rows = [{"arch": name, "key": a.key(), "latency_ms": float(v)} for name, a, v in zip(archs, parsed, ms)]
    if breakdown:
        for row, a in zip(rows, parsed):
            row["blocks"] = model.breakdown(a)
    if as_json:
        print_json({"lut": str(lut), "device": model.fingerprint, "fitted": model.fitted, "predictions": rows})
        return
    fp = model.fingerprint
    console.print(make_table(f"predicted latency on {fp.get('cpu')} / {fp.get('runtime')}, {fp.get('threads')} thread(s)",
                             ["arch", "ms"], [[r["arch"], f"{r['latency_ms']:.2f}"] for r in rows]))
    if breakdown:
        for r in rows:
            console.print(make_table(r["arch"], ["block", "count", "ms"],
                                     [[b["block"], b["count"], f"{b['ms']:.3f}"] for b in r["blocks"]]))


@latency_app.command("validate")
def validate(
    lut: Path = typer.Option(..., help="Fitted latency table JSON."),
    samples: int = typer.Option(50, help="Held-out random subnets to measure (twice)."),
    seed: int = typer.Option(1, help="Seed of the held-out sample."),
    rounds: int = typer.Option(7, help="Timing rounds per subnet."),
    plot: Optional[Path] = typer.Option(None, help="Write the predicted-vs-measured scatter PNG here."),
    out: Optional[Path] = typer.Option(None, help="Write the full report JSON here."),
    cpu: Optional[int] = typer.Option(None, help="CPU to pin to (default: the last one)."),
    force: bool = typer.Option(False, "--force-table", help="Validate a table from another device/runtime (warning)."),
    mlp_ablation: bool = typer.Option(False, "--mlp-ablation", help="Also train and score the HAT-style MLP "
                                                                    "predictor (minutes; off by default)."),
    extremes: bool = typer.Option(True, "--extremes/--no-extremes", help="Also time the space's corner subnets "
                                                                         "(scored separately)."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="Also time subnets predicted just "
                                                                               "under this budget (scored "
                                                                               "separately), e.g. mobilevit_xxs."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Measure held-out subnets here and score the model, the ablations and the noise floor."""
    from autovit.api import ValidateConfig, validate_latency

    cfg = ValidateConfig(lut=lut, samples=samples, seed=seed, rounds=rounds, plot=plot, out=out, cpu=cpu,
                         force_table=force, mlp_ablation=mlp_ablation, extremes=extremes,
                         latency_budget=latency_budget)
    with phase_progress(not as_json) as progress:
        report = validate_latency(cfg, progress, warn=_print_warning, note=err_console.print).report
    summary = {k: report[k] for k in ("space", "samples", "metrics", "retest_noise", "error_over_noise",
                                      "reference_ms_now", "reference_ms_table")}
    summary["ablations"], summary["groups"] = report["ablations"], report["groups"]
    if as_json:
        print_json(summary)
        return
    cols = ["predictor", "MAPE %", "RMSPE %", "max %", "<=5%", "<=10%", "tau", "rho"]

    def row(name: str, m: dict) -> list[str]:
        return [name] + [f"{m[k]:.2f}" if k in m else "-" for k in ("mape", "rmspe", "max_error", "within_5",
                                                                   "within_10", "kendall_tau", "spearman_rho")]

    rows = [row("latency model", report["metrics"]), row("re-test noise", report["retest_noise"])]
    rows += [row(k.replace("_", " "), v) for k, v in report["ablations"].items() if k != "latency_model"]
    rows += [row(f"{k.replace('_', ' ')} ({v['n']} subnets)", v) for k, v in report["groups"].items()]
    console.print(make_table(f"{samples} held-out subnets of '{report['space']}'", cols, rows))
    console.print(f"error / noise floor: {report['error_over_noise']:.2f}" + (f"; plot: {plot}" if plot else ""))


@latency_app.command("check")
def check(
    threads: int = typer.Option(1, help="Intra-op threads."),
    resolution: int = typer.Option(256, help="Reference input resolution."),
    rounds: int = typer.Option(15, help="Reference timings."),
    max_spread: float = typer.Option(0.4, help="Fail above this spread (IQR/median)."),
    cpu: Optional[int] = typer.Option(None, help="CPU to pin to (default: the last one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Stability check: time the reference network and fail (exit 2) if it spreads too much."""
    from autovit.latency.measure import MeasureConfig, timing_process
    from autovit.latency.profile import check_stability, reference_stability

    with timing_process(cpu) as pinned:
        median_ms, spread = reference_stability(MeasureConfig(threads=threads, rounds=rounds), resolution, rounds)
    data = {"reference_ms": median_ms, "spread": spread, "pinned_cpu": pinned, "max_spread": max_spread}
    if as_json:
        print_json(data)
    else:
        console.print(f"reference {median_ms:.2f} ms, IQR/median {spread:.1%} over {rounds} back-to-back timings "
                      f"(limit {max_spread:.0%})")
    check_stability(spread, max_spread, False)


@latency_app.command("export-suite")
def export_suite_cmd(
    space: str = typer.Option("xxs", help="Search space: xxs, xs, s, mnv4_s, mnv4_m or a YAML path."),
    out: Path = typer.Option(..., help="Output directory."),
    resolution: Optional[int] = typer.Option(None, help="Input resolution (default: the space's)."),
    fit_subnets: int = typer.Option(30, help="Whole subnets to include for fitting on the device."),
    formats: str = typer.Option("onnx", help="Comma-separated: onnx, tflite, coreml."),
    measure: str = typer.Option("anchors", "--blocks", help="anchors: export the anchor blocks only (the rest is "
                                                            "imputed at import); all: export every block variant."),
    anchors_per_feature: int = typer.Option(3, help="Anchors per cost-model term of a block kind (--blocks anchors)."),
    standalone: bool = typer.Option(True, help="Also write every block alone (isolated timings; not needed for the "
                                               "table)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write the block variants to time (with/without context networks, standalone block), the reference
    and the fitting subnets as ONNX (optionally TFLite / Core ML) plus a manifest, for timing on a device."""
    from autovit.io_utils import ensure_writable_dir
    from autovit.latency.suite import export_suite
    from autovit.space import SearchSpace

    ensure_writable_dir(out)
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    with phase_progress(not as_json) as progress:
        summary = export_suite(SearchSpace.load(space), out, resolution, fit_subnets, fmts, progress=progress,
                               measure=measure, anchors_per_feature=anchors_per_feature, standalone=standalone)
    if as_json:
        print_json(summary)
        return
    console.print(f"[green]wrote[/] {summary['files']} model files to {out} ({summary['blocks']} blocks to time, "
                  f"{summary['imputed']} imputed at import) "
                  f"(manifest {summary['manifest']}, CSV template {summary['csv_template']})")
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")


@latency_app.command("import")
def import_cmd(
    manifest: Path = typer.Option(..., help="manifest.json written by export-suite."),
    csv: Path = typer.Option(..., help="CSV of measurements: file,median_ms[,iqr_ms,count]."),
    out: Path = typer.Option(..., help="Table JSON to write."),
    device: str = typer.Option("unknown device", help="Device name for the fingerprint."),
    runtime: str = typer.Option("unknown runtime", help="Runtime and version, e.g. 'tflite 2.16 xnnpack'."),
    threads: int = typer.Option(1, help="Threads used on the device."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Build a latency table (and fit the model when subnets were timed) from device measurements."""
    from autovit.io_utils import ensure_writable_file
    from autovit.latency.suite import import_measurements

    ensure_writable_file(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = import_measurements(manifest, csv, device=device, runtime=runtime, threads=threads)
    for w in caught:
        _print_warning(str(w.message))
    model.save(out)
    meta = model.table.meta
    summary = {"out": str(out), "modules": len(model.table.entries), "modules_measured": meta["modules_measured"],
               "modules_imputed": meta["modules_imputed"], "fitted": model.table.model is not None,
               "coef": model.coef, "fingerprint": model.fingerprint}
    if as_json:
        print_json(summary)
        return
    console.print(f"[green]wrote[/] {out}: {summary['modules']} modules ({summary['modules_measured']} measured, "
                  f"{summary['modules_imputed']} imputed), "
                  + ("fitted on the timed subnets" if summary["fitted"] else "raw table sum (no subnets timed)"))


@latency_app.command("show")
def show(
    lut: Path = typer.Argument(..., help="Latency table JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Summary of a latency table: device, modules per kind, reference, fitted coefficients."""
    from autovit.latency.lut import LatencyTable

    t = LatencyTable.load(lut)
    measured = sum(t.kind_counts(measured_only=True).values())
    data = {"space": t.space, "resolution": t.resolution, "fingerprint": t.fingerprint, "modules": len(t.entries),
            "modules_measured": measured, "modules_imputed": len(t.entries) - measured, "kinds": t.kind_counts(),
            "reference": {k: v for k, v in t.reference.items() if k != "arch"},
            "coef": (t.model or {}).get("coef"), "fit_mape": (t.model or {}).get("fit_mape"), "meta": t.meta}
    if as_json:
        print_json(data)
        return
    console.print(json.dumps(data, indent=2, default=str))


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the main app."""
    app.add_typer(latency_app, name="latency")
