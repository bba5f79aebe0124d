"""`autovit bench`: params, MACs and CPU latency (onnxruntime or torch) of models side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from autovit.cli._common import console, err_console, make_table, print_json, print_problem


def bench(
    models: list[str] = typer.Argument(..., help="autovit_xxs|xs|s, an arch JSON path, or any timm model name."),
    resolution: int = typer.Option(256, "--resolution", "-r", help="Input side (square, batch 1)."),
    threads: int = typer.Option(1, "--threads", "-t", help="onnxruntime intra-op threads."),
    rounds: int = typer.Option(7, help="Rounds; every round times all models in turn."),
    runs: int = typer.Option(20, help="Timed inferences per model per round."),
    warmup: int = typer.Option(10, help="Untimed inferences per model before the first round."),
    reference: Optional[str] = typer.Option(None, help="Model the ratios refer to (default: the first)."),
    latency: bool = typer.Option(True, "--latency/--no-latency", help="Measure latency (else only params/MACs)."),
    num_classes: int = typer.Option(1000, "--num-classes", help="Classifier size."),
    pin: bool = typer.Option(True, "--pin/--no-pin", help="Pin the process to the last CPU while timing."),
    backend: str = typer.Option("ort", "--backend", help="ort (onnxruntime CPU) or torch (eager PyTorch)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the JSON report here."),
) -> None:
    """Compare our models and any timm model (reparameterized as deployed): params, MACs and measured CPU latency.

    A model that cannot run at --resolution is skipped with one line; the others are measured."""
    from autovit.api import BenchConfig, run_bench

    cfg = BenchConfig(models=tuple(models), resolution=resolution, threads=threads, rounds=rounds, runs=runs,
                      warmup=warmup, reference=reference, latency=latency, num_classes=num_classes, pin=pin,
                      backend=backend, out=out)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=as_json) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int, label: str) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, description=f"{stage:8s} {label}")

        report = run_bench(cfg, progress, warn=lambda line: print_problem("warning", line))
    if as_json:
        print_json(report.to_dict())
        return
    ref = report.settings["reference"]
    rows = []
    for r in report.rows:
        if r.skipped:
            rows.append([r.name, r.source, "-", "-", "-", "-", "skipped"])
            continue
        lat = ([f"{r.median_ms:.2f}", f"{r.iqr_ms:.2f}", f"{r.ratio_to_ref:.3f}"] if r.median_ms is not None
               else ["-", "-", "-"])
        source = " ".join([r.source] + (["rep."] if r.reparameterized else [])
                          + ([f"@{r.img_size}"] if r.img_size else []))
        rows.append([r.name, source, f"{r.params / 1e6:.3f}", f"{r.macs / 1e9:.3f}", *lat])
    title = (f"{resolution}x{resolution}, batch 1, {report.settings['backend']}, {threads} thread(s), {rounds} rounds x "
             f"{runs} runs")
    table = make_table(title, ["model", "source", "params M", "GMACs", "median ms", "IQR ms", "ratio"], rows)
    table.columns[0].no_wrap = True
    notes = [f"ratio: median per-round latency ratio to {ref}"]
    if any(r.reparameterized for r in report.rows):
        notes.append("rep.: reparameterized as deployed (timm reparameterize_model)")
    if any(r.img_size for r in report.rows):
        notes.append("@N: built for N px")
    if report.settings.get("skipped"):
        notes.append(f"skipped: {', '.join(report.settings['skipped'])} (see the warnings)")
    table.caption = "; ".join(notes)
    console.print(table)
    console.print(f"[dim]{report.machine.get('cpu')} | {report.machine.get('runtime')}"
                  + (f" | report: {out}" if out else "") + "[/]")


def register(app: typer.Typer) -> None:
    """Adds `autovit bench` to the main app."""
    app.command("bench")(bench)
