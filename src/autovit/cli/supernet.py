"""`autovit supernet info|train|eval` and the top-level `autovit train` (one subnet, same recipe).

Training options come from `--config cfg.yaml` (a TrainConfig), then the flags below, then any
`--set key=value` (every TrainConfig field). Under `torchrun` every process runs the same command;
only rank 0 prints and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from autovit.cli._common import console, err_console, make_table, print_json

supernet_app = typer.Typer(help="Weight-sharing supernets: inspect, train, evaluate subnets.", no_args_is_help=True)


# ----------------------------------------------------------------------------- config assembly
def build_config(config: Optional[Path], preset_name: Optional[str], flags: dict[str, Any],
                 sets: Optional[list[str]]) -> Any:
    """TrainConfig from preset -> YAML -> explicit flags -> --set key=value (later wins)."""
    from autovit.errors import AutovitError
    from autovit.train.config import TrainConfig, preset

    cfg = preset(preset_name) if preset_name else TrainConfig()
    if config is not None:
        cfg = cfg.replace(**TrainConfig.from_yaml(config).to_dict())
    cfg = cfg.replace(**{k: v for k, v in flags.items() if v is not None})
    extra = {}
    for item in sets or []:
        if "=" not in item:
            raise AutovitError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        extra[key.strip()] = None if value.strip().lower() in ("none", "null") else value.strip()
    return cfg.replace(**extra) if extra else cfg


# CLI flag names that differ from the TrainConfig field they set.
_FLAG_FIELDS = {"time_budget": "time_budget_s", "teacher": "teacher_model", "teacher_ckpt": "teacher_checkpoint"}


def config_flags(params: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields among a command's parameters (its `locals()`)."""
    from dataclasses import fields

    from autovit.train.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    return {_FLAG_FIELDS.get(k, k): v for k, v in params.items() if _FLAG_FIELDS.get(k, k) in names}


def _names(csv: Optional[str]) -> tuple[str, ...]:
    return tuple(n.strip() for n in csv.split(",") if n.strip()) if csv else ()


def print_training(result: Any, as_json: bool) -> None:
    """The summary of a finished training run (rank 0 only)."""
    if not result.is_main:
        return
    summary = {"out": str(result.out), "steps": result.steps, "train_time_s": result.train_time_s,
               "final_loss": result.final_loss}
    if result.val is not None:
        summary["val"] = result.val
    if as_json:
        print_json(summary)
        return
    if result.val is not None:
        console.print(f"val top-1 {result.val['top1']:.2f}%  top-5 {result.val['top5']:.2f}%")
    console.print(f"[green]done[/]: {result.steps} steps in {result.train_time_s:.0f}s -> {result.out}")


# Options shared by `supernet train` and `train` (typer needs them spelled out per command).
_CONFIG = typer.Option(None, "--config", "-c", help="TrainConfig YAML (see docs/training.md).")
_PRESET = typer.Option(None, "--preset", help="Start from a named recipe: tiny, cifar-cpu, deit.")
_DATASET = typer.Option(None, "--dataset", help="digits (offline default) | cifar10 | imagefolder.")
_DATA_DIR = typer.Option(None, "--data-dir", help="cifar10: .npz folder or torchvision root; imagefolder: root.")
_DOWNLOAD = typer.Option(None, "--download/--no-download", help="cifar10: let torchvision download into --data-dir.")
_RES = typer.Option(None, "--resolution", "-r", help="Input side in pixels.")
_EPOCHS = typer.Option(None, "--epochs", help="Training epochs.")
_MAX_STEPS = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps (overrides epochs).")
_BUDGET = typer.Option(None, "--time-budget", help="Stop after this many seconds of training (LR schedule fits it).")
_BS = typer.Option(None, "--batch-size", "-b", help="Images per process and step.")
_LR = typer.Option(None, "--lr", help="Peak learning rate.")
_SEED = typer.Option(None, "--seed", help="Seed of data order, augmentation and subnet sampling.")
_DEVICE = typer.Option(None, "--device", help="auto | cpu | cuda.")
_KD = typer.Option(None, "--kd", help="Distillation: none | soft (Eq. 10) | hard (Eq. 11).")
_TEACHER = typer.Option(None, "--teacher", help="timm model name of the teacher.")
_TEACHER_CKPT = typer.Option(None, "--teacher-ckpt", help="Teacher weights, autovit subnet dir or checkpoint.")
_TEACHER_ARCH = typer.Option(None, "--teacher-arch", help="Arch JSON when --teacher-ckpt is a supernet.")
_RESUME = typer.Option(False, "--resume", help="Continue the run in --out (OUT/checkpoints/last.pt).")
_RESUME_FROM = typer.Option(None, "--resume-from", help="Continue from this checkpoint (.pt or run folder) instead.")
_ALLOW_CHANGED = typer.Option(None, "--allow-changed", help="With --resume: settings you change on purpose "
                                                            "(e.g. lr after a divergence), comma-separated.")
_SET = typer.Option(None, "--set", help="Any TrainConfig field: --set mixup=0 --set clip_grad=1.0 (repeatable).")
_JSON = typer.Option(False, "--json", help="Print a JSON summary.")


@supernet_app.command("info")
def info(
    space: str = typer.Argument(..., help="xxs | xs | s or a space YAML."),
    num_classes: int = typer.Option(1000, "--num-classes", help="Classifier size."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Supernet size and weight-sharing efficiency E (paper Eq. 1) of a space."""
    from autovit.costs import count_params
    from autovit.space import SearchSpace, log10_cardinality
    from autovit.supernet.efficiency import weight_sharing_stats

    sp = SearchSpace.load(space)
    stats = weight_sharing_stats(sp, num_classes)
    data = {**stats.to_dict(), "num_classes": num_classes,
            "largest_subnet_params": count_params(sp.largest(), num_classes),
            "smallest_subnet_params": count_params(sp.smallest(), num_classes),
            "log10_subnets": round(log10_cardinality(sp), 3)}
    if as_json:
        print_json(data)
        return
    rows = [["supernet params (stored)", f"{stats.supernet_params:,}"],
            ["largest subnet params", f"{data['largest_subnet_params']:,}"],
            ["smallest subnet params", f"{data['smallest_subnet_params']:,}"],
            ["separate weights per candidate", f"{stats.separate_params:,}"],
            ["weight-sharing efficiency E (Eq. 1)", f"{stats.efficiency:.4f}"],
            ["layers / candidate blocks", f"{stats.num_layers} / {stats.num_candidates}"],
            ["subnets (log10)", f"{data['log10_subnets']}"]]
    console.print(make_table(f"supernet '{sp.name}' ({num_classes} classes)", ["", "value"], rows))


@supernet_app.command("train")
def train_supernet(
    space: str = typer.Option("xxs", "--space", "-s", help="xxs | xs | s or a space YAML."),
    out: Path = typer.Option(Path("runs/supernet"), "--out", "-o", help="Run directory."),
    config: Optional[Path] = _CONFIG, preset_name: Optional[str] = _PRESET, dataset: Optional[str] = _DATASET,
    data_dir: Optional[str] = _DATA_DIR, download: Optional[bool] = _DOWNLOAD, resolution: Optional[int] = _RES,
    epochs: Optional[int] = _EPOCHS, max_steps: Optional[int] = _MAX_STEPS, time_budget: Optional[float] = _BUDGET,
    batch_size: Optional[int] = _BS, lr: Optional[float] = _LR, seed: Optional[int] = _SEED,
    device: Optional[str] = _DEVICE,
    sampling: Optional[str] = typer.Option(None, "--sampling", help="uniform (Eq. 4-5) | sandwich."),
    inplace_kd: Optional[bool] = typer.Option(None, "--inplace-kd/--no-inplace-kd",
                                              help="Sandwich: distil subnets from the largest subnet."),
    init_from: Optional[str] = typer.Option(None, "--supernet", help="Start from this trained (larger) supernet "
                                                                   "checkpoint, its weights sliced to --space."),
    kd: Optional[str] = _KD, teacher: Optional[str] = _TEACHER, teacher_ckpt: Optional[str] = _TEACHER_CKPT,
    teacher_arch: Optional[str] = _TEACHER_ARCH, resume: bool = _RESUME, resume_from: Optional[str] = _RESUME_FROM,
    allow_changed: Optional[str] = _ALLOW_CHANGED, sets: Optional[list[str]] = _SET, as_json: bool = _JSON,
) -> None:
    """Train a weight-sharing supernet (one sampled subnet per step, or the sandwich rule)."""
    from autovit import api

    cfg = build_config(config, preset_name, config_flags(locals()), sets)
    result = api.train_supernet(api.TrainSupernetConfig(cfg, space, out, resume_from or ("auto" if resume else None),
                                                        _names(allow_changed)),
                                console=err_console if as_json else console)  # --json: stdout holds only the JSON
    print_training(result, as_json)


@supernet_app.command("eval")
def eval_subnet(
    ckpt: Path = typer.Option(..., "--supernet", help="Supernet checkpoint (supernet.pt, checkpoints/last.pt or "
                                                        "run folder)."),
    arch: Optional[list[str]] = typer.Option(None, "--arch", help="Arch JSON file(s); also 'largest', 'smallest'."),
    split: str = typer.Option("val", "--split", help="val (held out from train) | test."),
    dataset: Optional[str] = _DATASET, data_dir: Optional[str] = _DATA_DIR, resolution: Optional[int] = _RES,
    calib_images: Optional[int] = typer.Option(None, "--calib-images", help="BN recalibration images."),
    batch_size: Optional[int] = _BS, sets: Optional[list[str]] = _SET,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """top-1/top-5 of subnets with inherited weights, after BN recalibration."""
    from autovit.data import build_datasets, eval_loader
    from autovit.errors import AutovitError
    from autovit.supernet.evaluate import SubnetEvaluator
    from autovit.train.checkpoint import load_model_from_checkpoint, read_checkpoint
    from autovit.train.config import TrainConfig

    raw = read_checkpoint(ckpt)
    base = TrainConfig.from_dict(raw["config"]) if "config" in raw else TrainConfig()
    cfg = build_config(None, None, {**base.to_dict(), **dict(dataset=dataset, data_dir=data_dir,
                                                             resolution=resolution, calib_images=calib_images,
                                                             batch_size=batch_size)}, sets)
    supernet = load_model_from_checkpoint(ckpt)
    if not hasattr(supernet, "set_active"):
        raise AutovitError(f"{ckpt} holds a single subnet, not a supernet", hint="pass a supernet checkpoint (runs/<name>/supernet.pt or checkpoints/last.pt)")
    if split not in ("val", "test"):
        raise AutovitError(f"unknown split '{split}'", hint="use val or test")
    data = build_datasets(cfg)
    if data.num_classes != supernet.num_classes:
        raise AutovitError(f"the dataset has {data.num_classes} classes, the supernet {supernet.num_classes}")
    from autovit.supernet.bn_calibration import calibration_batches

    evaluator = SubnetEvaluator(supernet.eval(), calibration_batches(data.train_eval, cfg.calib_images, cfg.batch_size,
                                                                     cfg.seed),
                                eval_loader(data.val if split == "val" else data.test, cfg.batch_size))
    names = arch or ["largest", "smallest"]
    rows = []
    for name in names:
        a = {"largest": supernet.space.largest, "smallest": supernet.space.smallest}.get(name)
        a = a() if a else supernet.space.parse_arch(Path(name))
        rows.append({"arch": name, "key": a.key(), **evaluator.evaluate(a)})
    if as_json:
        print_json({"ckpt": str(ckpt), "split": split, "calib_images": cfg.calib_images, "results": rows})
        return
    console.print(make_table(f"inherited weights, BN recalibrated on {cfg.calib_images} images, {split} split",
                             ["arch", "top-1 (%)", "top-5 (%)", "loss"],
                             [[r["arch"], f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{r['loss']:.4f}"] for r in rows]))


def train_standalone(
    arch: str = typer.Option(..., "--arch", "-a", help="Arch JSON (e.g. the search's best.json) or autovit_xxs|xs|s."),
    space: Optional[str] = typer.Option(None, "--space", help="Validate the arch against this space."),
    out: Path = typer.Option(Path("runs/standalone"), "--out", "-o", help="Run directory."),
    config: Optional[Path] = _CONFIG, preset_name: Optional[str] = _PRESET, dataset: Optional[str] = _DATASET,
    data_dir: Optional[str] = _DATA_DIR, download: Optional[bool] = _DOWNLOAD, resolution: Optional[int] = _RES,
    epochs: Optional[int] = _EPOCHS, max_steps: Optional[int] = _MAX_STEPS, time_budget: Optional[float] = _BUDGET,
    batch_size: Optional[int] = _BS, lr: Optional[float] = _LR, seed: Optional[int] = _SEED,
    device: Optional[str] = _DEVICE,
    init_from: Optional[str] = typer.Option(None, "--supernet", help="Start from inherited weights: a supernet "
                                                                   "checkpoint (--arch is extracted) or a subnet folder."),
    kd: Optional[str] = _KD, teacher: Optional[str] = _TEACHER, teacher_ckpt: Optional[str] = _TEACHER_CKPT,
    teacher_arch: Optional[str] = _TEACHER_ARCH, resume: bool = _RESUME, resume_from: Optional[str] = _RESUME_FROM,
    allow_changed: Optional[str] = _ALLOW_CHANGED, sets: Optional[list[str]] = _SET, as_json: bool = _JSON,
) -> None:
    """Train (or fine-tune) one subnet alone with the supernet recipe; writes OUT/subnet/."""
    from autovit import api

    cfg = build_config(config, preset_name, config_flags(locals()), sets)
    result = api.train_subnet(api.TrainSubnetConfig(cfg, arch, space, out, resume_from or ("auto" if resume else None),
                                                    _names(allow_changed)),
                              console=err_console if as_json else console)
    print_training(result, as_json)


def register(app: typer.Typer) -> None:
    """Adds `autovit supernet ...` and the top-level `autovit train`."""
    app.add_typer(supernet_app, name="supernet")
    app.command("train")(train_standalone)
