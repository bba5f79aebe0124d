"""`autovit search` (coarse-to-fine latency-aware search) and `autovit export` (deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from autovit.cli._common import console, err_console, make_table, print_json


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
        baselines=baselines, force_table=force_table, device=device)
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
    from autovit.errors import AutovitError
    from autovit.export import export_subnet, parse_formats
    from autovit.io_utils import ensure_writable_dir

    fmts = parse_formats(formats)
    ensure_writable_dir(out)
    if (supernet is None) == (subnet is None):
        raise AutovitError("pass exactly one of --supernet (with --arch) or --subnet")
    meta: dict[str, Any] = {}
    if supernet is not None and arch is None:
        raise AutovitError("--supernet needs --arch", hint="pass the arch JSON to extract, e.g. runs/search/best.json")
    if finetune_steps > 0:
        if supernet is None:
            raise AutovitError("--finetune-steps needs --supernet and --arch (it starts from the inherited weights)")
        subnet, supernet = _finetune(supernet, arch, out / "finetune", finetune_steps, finetune_args), None
    if supernet is not None:
        model, meta = _extract(supernet, arch, calib_data, calib_images)
    elif (subnet / "arch.json").is_file():  # a saved subnet folder (autovit.subnet_io)
        from autovit.subnet_io import load_subnet

        model = load_subnet(subnet)
        meta = {"source": str(subnet)}
    else:  # a training checkpoint of one subnet
        from autovit.train.checkpoint import load_model_from_checkpoint

        model = load_model_from_checkpoint(subnet)
        if not hasattr(model, "arch"):
            raise AutovitError(f"{subnet} holds a supernet", hint="use --supernet CKPT --arch ARCH.json")
        meta = {"source": str(subnet)}
    with _progress_bar(as_json) as bar:
        task = bar.add_task("export", total=len(fmts))
        report = export_subnet(model, out, fmts, meta=meta,
                               progress=lambda f: bar.update(task, advance=0, description=f"export {f}"))
        bar.update(task, completed=len(fmts))
    if as_json:
        print_json(report.to_dict())
        return
    rows = [[r.format, r.status, "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}",
             "-" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}", r.path or "-", r.message]
            for r in report.results]
    console.print(make_table(f"export of {report.arch_key}", ["format", "status", "max |diff|", "relative",
                                                              "file", "note"], rows))


def _finetune(supernet: Path, arch: str, out: Path, steps: int, extra: str | None) -> Path:
    """Runs the standalone trainer (same recipe as the supernet) from the inherited weights; returns
    the folder of the fine-tuned subnet."""
    import shlex
    import subprocess
    import sys

    from autovit.errors import AutovitError

    from autovit.train.checkpoint import read_checkpoint
    from autovit.train.config import TrainConfig

    cmd = [sys.executable, "-c", "from autovit.cli import main; main()", "train", "--arch", str(arch),
           "--supernet", str(supernet), "--max-steps", str(steps), "--out", str(out)]
    saved = read_checkpoint(supernet).get("config")
    if isinstance(saved, dict):  # the supernet's own recipe and data, with a step budget instead of a time budget
        fields = TrainConfig.__dataclass_fields__
        cfg = TrainConfig.from_dict({**{k: v for k, v in saved.items() if k in fields}, "time_budget_s": None,
                                     "init_from": None})
        out.mkdir(parents=True, exist_ok=True)
        cfg.save_yaml(out / "finetune_config.yaml")
        cmd += ["--config", str(out / "finetune_config.yaml")]
    cmd += shlex.split(extra or "")
    err_console.print(f"[dim]fine-tuning: autovit {' '.join(cmd[3:])}[/]")
    if subprocess.run(cmd).returncode != 0:
        raise AutovitError("fine-tuning failed (see the messages above)", hint="fix the `autovit train` flags "
                                                                                "given with --finetune-args")
    return out / "subnet"


def _extract(supernet: Path, arch_path: str, calib_data: str | None,
             calib_images: int | None) -> tuple[Any, dict[str, Any]]:
    """The subnet `arch_path` of the supernet checkpoint with inherited weights, BN recalibrated on the
    training data (the supernet's shared BN statistics do not fit a single subnet). With a search's
    best.json, the recalibration repeats the search's (same images, batching and seed), so the
    exported model is the one whose accuracy the search reported."""
    from autovit.search.runner import calibration_set, load_supernet_checkpoint, search_calibration

    loaded = load_supernet_checkpoint(supernet)
    arch = loaded.supernet.space.parse_arch(arch_path)
    meta: dict[str, Any] = {"supernet": str(supernet), "space": loaded.space.name, "bn_recalibrated_images": 0}
    searched = search_calibration(arch_path)
    recipe = dict(searched or {"dataset": None, "data_dir": None, "images": 2000, "batch_size": 64, "seed": 0})
    if calib_data is not None:
        recipe["dataset"], recipe["data_dir"] = calib_data, None
    if calib_images is not None:
        recipe["images"] = calib_images
    if recipe["images"] > 0:
        from autovit.supernet import recalibrate_bn

        batches = calibration_set(loaded, recipe)
        loaded.supernet.set_active(arch)
        recalibrate_bn(loaded.supernet, batches)
        meta["bn_recalibrated_images"] = sum(len(b[1]) for b in batches)
        meta["dataset"] = recipe["dataset"] or (loaded.train_config or {}).get("dataset")
        meta["bn_calibration"] = {**recipe, "as_in_search": searched is not None and recipe == searched}
        if searched is not None and recipe != searched:
            err_console.print("[yellow]warning:[/] BN is recalibrated with other settings than the search used "
                              "(--calib-data/--calib-images): the exported model's accuracy will differ from "
                              "the one best.json reports")
    return loaded.supernet.extract(arch).eval(), meta


def register(app: typer.Typer) -> None:
    """Adds `autovit search` and `autovit export` to the main app."""
    app.command("search")(search)
    app.command("export")(export)
