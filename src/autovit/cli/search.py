"""`autovit search` (coarse-to-fine latency-aware search) and `autovit export` (deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from autovit.cli._common import console, err_console, make_table, print_json, print_problem, usage_errors


def _progress_bar(disable: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=disable)


def search(
    supernet: Path = typer.Option(..., "--supernet", help="Supernet checkpoint (.pt or the training run folder)."),
    lut: Optional[Path] = typer.Option(None, "--lut", help="Latency table JSON (`autovit latency profile`)."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="L_max: a time (12ms, 0.012s) or a "
                                                 "model timed here as a ratio (mobilevit_xxs, 0.8x:mobilevit_xxs)."),
    params_budget: Optional[str] = typer.Option(None, "--params-budget", help="Max params, e.g. 2M or 2e6."),
    macs_budget: Optional[str] = typer.Option(None, "--macs-budget", help="Max MACs, e.g. 300M."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Sweep: best arch per budget, e.g. 8ms,10ms,12ms."),
    objective: str = typer.Option("eq2", "--objective", help="eq2 (max acc s.t. L<=L_max) | eq3 (min L+lambda*C) | "
                                                              "eq8 (acc vs size Pareto under L_max)."),
    cost_lambda: float = typer.Option(1.0, "--lambda", help="Eq. 3 weight: ms per million params (or MACs)."),
    cost_metric: str = typer.Option("params", "--cost-metric", help="Eq. 3 C(s): params | macs."),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Eq. 3 accuracy floor (top-1 %)."),
    space: Optional[str] = typer.Option(None, "--space", help="Expected space (checked against the checkpoint)."),
    data: Optional[str] = typer.Option(None, "--dataset", help="Dataset (default: the supernet's training data)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Dataset folder."),
    val_images: Optional[int] = typer.Option(None, "--val-images", help="Use only the first N held-out val images."),
    calib_images: Optional[int] = typer.Option(None, "--calib-images", help="BN recalibration images (default: "
                                                                            "the training config's)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Evaluation batch size."),
    population: int = typer.Option(50, help="Population per generation (paper: 50)."),
    generations: int = typer.Option(20, help="Generations (paper: 20)."),
    parents: int = typer.Option(10, help="Top-k parents (paper: 10)."),
    p_depth: float = typer.Option(0.2, "--p-depth", help="P_d, depth mutation probability."),
    p_block: float = typer.Option(0.4, "--p-block", help="P_m, per-block mutation probability."),
    p_crossover: float = typer.Option(0.5, "--p-crossover", help="P_c, crossover probability (Eq. 9)."),
    coarse_samples: int = typer.Option(100_000, "--coarse-samples", help="Archs sampled by the coarse stage."),
    coarse_top_k: int = typer.Option(50, "--coarse-top-k", help="Skeletons kept by the coarse stage."),
    coarse_rank: str = typer.Option("auto", "--coarse-rank", help="cost (Eq. 3) | closeness (to the budget) | "
                                                                   "auto (cost for eq3, else closeness)."),
    seed: int = typer.Option(0, "--seed", help="Fixes the whole search."),
    out: Path = typer.Option(Path("runs/search"), "--out", "-o", help="Run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Time the budget and the winner here "
                                                                       "(--no-measure: trust the table's ms)."),
    verify_candidates: int = typer.Option(6, "--verify-candidates", help="Front candidates timed after the search; "
                                                                         "the most accurate that measures within "
                                                                         "the latency budget is returned."),
    compare: bool = typer.Option(False, "--compare/--no-compare", help="Also run random-search and "
                                                                        "FLOPs-constrained baselines."),
    impact: bool = typer.Option(True, "--impact/--no-impact", help="Eq. 7 latency impact of the winner's modules."),
    baselines: Optional[Path] = typer.Option(None, "--baselines", help="`autovit bench --json` output to plot."),
    force_table: bool = typer.Option(False, "--force-table", help="Use a latency table of another device anyway."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (accuracy evaluation)."),
    eval_dtype: str = typer.Option("float32", "--eval-dtype", help="float32 | bfloat16 | float16: accuracy "
                                                                   "evaluation under autocast (bfloat16: ~1.7x "
                                                                   "faster on CPUs with native bf16)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Latency-aware coarse-to-fine search of a trained supernet (paper Algorithm 1)."""
    import os

    from autovit.search.session import SearchRunConfig, run_search

    cfg = SearchRunConfig(
        supernet=supernet, out=out, lut=lut, latency_budget=latency_budget, params_budget=params_budget,
        macs_budget=macs_budget, budgets_ms=budgets or (), objective=objective, cost_lambda=cost_lambda,
        cost_metric=cost_metric, min_accuracy=min_accuracy, space=space, dataset=data, data_dir=data_dir,
        val_images=val_images, calib_images=calib_images, batch_size=batch_size, population=population,
        generations=generations, parents=parents, p_depth=p_depth, p_block=p_block, p_crossover=p_crossover,
        coarse_samples=coarse_samples, coarse_top_k=coarse_top_k, coarse_rank=coarse_rank, seed=seed,
        resume=resume, measure=measure, verify_candidates=verify_candidates, compare=compare, impact=impact,
        baselines=baselines, force_table=force_table, device=device, eval_dtype=eval_dtype)
    with _progress_bar(as_json or int(os.environ.get("RANK", "0")) != 0) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        run = run_search(cfg, progress)
    if run.summary is None:  # not rank 0 under torchrun
        return
    if as_json:
        print_json(run.summary)
    else:
        _print_summary(run.result, run.summary, out)
    run.check_budget()


def _print_summary(result: Any, summary: dict[str, Any], out: Path) -> None:
    b = result.best

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    rows = [["winner", f"{b.accuracy:.2f}", ms(summary["predicted_ms"]), ms(summary["measured_ms"]),
             f"{b.params / 1e6:.3f}", f"{b.macs / 1e6:.1f}"]]
    for k, v in result.best_per_budget.items():
        rows.append([f"best <= {k:g} ms", "-", "-", "-", "-", "-"] if v is None else
                    [f"best <= {k:g} ms", f"{v.accuracy:.2f}", ms(v.latency_ms), "-", f"{v.params / 1e6:.3f}",
                     f"{v.macs / 1e6:.1f}"])
    for row in summary["comparison"][1:]:
        rows.append([row["name"], f"{row['accuracy']:.2f}", ms(row["latency_ms"]), ms(row["measured_ms"]),
                     f"{row['params'] / 1e6:.3f}", f"{row['macs'] / 1e6:.1f}"])
    t = result.timing
    title = (f"{result.evaluations} candidates evaluated; coarse {t.get('coarse_s', 0):.1f} s, "
             f"fine {t.get('fine_s', 0):.1f} s")
    console.print(make_table(title, ["", "top-1 %", "predicted ms (table)", "measured ms (now)", "params M", "MMACs"],
                             rows))
    console.print(f"[dim]{b.key}[/]")
    budget = summary.get("latency_budget")
    if budget:
        ver = budget["verification"]
        fraction = next((c["budget_fraction"] for c in ver["candidates"] if c["key"] == ver["chosen"]), None)
        verdict = ("[bold red]NO candidate measures within budget[/]" if fraction is None else
                   f"the returned one measures {fraction:.3f}x the budget")
        console.print(f"latency budget {budget['resolved']['description']}: {len(ver['candidates'])} front "
                      f"candidates timed, {verdict}")
    console.print(f"outputs in [bold]{out}[/] (best.json, pareto.json/csv, history.csv, search.png, report.md)")


def export(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    supernet: Optional[Path] = typer.Option(None, "--supernet", help="Supernet checkpoint to take the weights from."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Arch JSON (e.g. the search's best.json)."),
    subnet: Optional[Path] = typer.Option(None, "--subnet", help="Instead of --supernet: a saved subnet folder, or a "
                                                                  "checkpoint of `autovit train` (.pt or run folder)."),
    formats: str = typer.Option("safetensors,torchscript,onnx", "--formats",
                                help="Any of safetensors,torchscript,onnx,coreml,tflite."),
    calib_data: Optional[str] = typer.Option(None, "--dataset", help="Recalibrate BN on this dataset first "
                                                                      "(default: the supernet's training data)."),
    calib_images: Optional[int] = typer.Option(None, "--calib-images", help="Images for BN recalibration (0: skip; "
                                                                            "default: the search's, from best.json, "
                                                                            "else 2000)."),
    finetune_steps: int = typer.Option(0, "--finetune-steps", help="Fine-tune the subnet from its inherited weights "
                                                                    "first (`autovit train --arch --supernet`)."),
    finetune_args: Optional[str] = typer.Option(None, "--finetune-args", help="More `autovit train` flags, quoted, "
                                                                              "e.g. '--dataset cifar10 --lr 5e-4'."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export a subnet with its inherited weights for deployment, each format checked against PyTorch."""
    from autovit.api import ExportConfig, export_model
    from autovit.export import parse_formats

    fmts = parse_formats(formats)
    cfg = ExportConfig(out=out, supernet=supernet, arch=arch, subnet=subnet, formats=fmts, dataset=calib_data,
                       calib_images=calib_images, finetune_steps=finetune_steps,
                       finetune=finetune_settings(finetune_args))
    with _progress_bar(as_json) as bar:
        task = bar.add_task("export", total=len(fmts))
        report = export_model(cfg, progress=lambda f: bar.update(task, advance=0, description=f"export {f}"),
                              warn=lambda message: print_problem("warning", message),
                              console=err_console)
        bar.update(task, completed=len(fmts))
    if as_json:
        print_json(report.to_dict())
        return
    rows = [[r.format, r.status, "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}",
             "-" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}", r.path or "-", r.message]
            for r in report.results]
    console.print(make_table(f"export of {report.arch_key}", ["format", "status", "max |diff|", "relative",
                                                              "file", "note"], rows))


def finetune_settings(flags: str | None) -> dict[str, Any]:
    """`--finetune-args '--lr 5e-4 --set mixup=0'` -> the TrainConfig fields those `autovit train`
    flags set (parsed by that command's own options, so spellings and values are checked alike)."""
    import shlex

    from autovit.cli.supernet import build_config, config_flags, train_standalone
    from autovit.errors import AutovitError

    if not flags:
        return {}
    app = typer.Typer(add_completion=False)
    app.command()(train_standalone)
    command = typer.main.get_command(app)
    try:
        ctx = command.make_context("train", ["--arch", "-", *shlex.split(flags)], resilient_parsing=False)
    except usage_errors() as err:
        raise AutovitError(f"--finetune-args: {getattr(err, 'format_message', err.__str__)()}",
                           hint="pass `autovit train` flags, e.g. '--dataset cifar10 --lr 5e-4'") from None
    params = ctx.params
    given = {k: v for k, v in config_flags(params).items() if v is not None}
    base = build_config(params.get("config"), params.get("preset_name"), {}, params.get("sets"))
    from autovit.train.config import TrainConfig

    defaults = TrainConfig().to_dict()
    return {**{k: v for k, v in base.to_dict().items() if v != defaults.get(k)}, **given}


def register(app: typer.Typer) -> None:
    """Adds `autovit search` and `autovit export` to the main app."""
    app.command("search")(search)
    app.command("export")(export)
