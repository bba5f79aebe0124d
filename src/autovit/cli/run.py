"""`autovit run CONFIG.yaml`: the whole pipeline, resumable stage by stage."""

from __future__ import annotations

from pathlib import Path

import typer

from autovit.cli._common import console, phase_progress


def run(config: Path = typer.Argument(..., help="Pipeline YAML, e.g. configs/quickstart.yaml."),
        out: Path = typer.Option(None, "--out", "-o", help="Run folder (default: the config's `out`)."),
        fresh: bool = typer.Option(False, "--fresh", help="Delete the run folder first instead of resuming (only a "
                                                          "folder autovit created, see docs/pipeline.md).")) -> None:
    """Profile (or reuse) a latency table, train (or reuse) the supernet, search, export, report.

    Stages whose outputs exist for the same config are skipped, so rerunning after a crash resumes."""
    import dataclasses

    from autovit.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig.load(config)
    if out is not None:
        cfg = dataclasses.replace(cfg, out=str(out))
    from rich.markup import escape

    with phase_progress() as progress:
        pipeline = Pipeline(cfg, log=lambda msg: console.print(f"[bold cyan]{escape(msg)}[/]"),  # checks the config
                            console=console, progress=progress)
        if fresh:
            from autovit.run_folder import delete_run_folder

            delete_run_folder(cfg.out, keep=[p for p in (cfg.latency.table, cfg.supernet.checkpoint) if p])
        report = pipeline.run()
    console.print(f"\n[bold green]Report:[/] {report}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
