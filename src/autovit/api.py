"""The Python API: one typed config and one function per job, each returning a result object.

    profile_latency(ProfileConfig)   -> ProfileResult     build a latency table on this machine
    validate_latency(ValidateConfig) -> ValidationResult  score a table against fresh timings
    train_supernet(TrainSupernetConfig) / train_subnet(TrainSubnetConfig) -> TrainResult
    run_search(SearchRunConfig)      -> SearchRunResult   (autovit.search.session)
    export_model(ExportConfig)       -> ExportReport      extract (optionally fine-tune) and export
    run_bench(BenchConfig)           -> BenchReport       params, MACs and latency side by side

The `autovit` commands build these configs from their options and print the results; `autovit run`
(autovit.pipeline) calls the functions directly. Long jobs checkpoint and resume as their commands
do. Process-wide state (CPU pinning, thread counts) is set only inside `timing_process`, which
restores it. Optional callbacks: `progress(phase, done, total)`, `warn(message)`, `note(message)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from autovit.errors import AutovitError
from autovit.search.session import SearchRunConfig, SearchRunResult, run_search

if TYPE_CHECKING:
    from autovit.bench import BenchReport
    from autovit.export import ExportReport
    from autovit.latency.predictor import LatencyModel
    from autovit.train.config import TrainConfig

Progress = Callable[[str, int, int], None]
Message = Callable[[str], None]

__all__ = ["BenchConfig", "ExportConfig", "ProfileConfig", "ProfileResult", "SearchRunConfig", "SearchRunResult",
           "TrainResult", "TrainSubnetConfig", "TrainSupernetConfig", "ValidateConfig", "ValidationResult",
           "export_model", "profile_latency", "run_bench", "run_search", "train_subnet", "train_supernet", "validate_latency"]


def _quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------------------------- latency
@dataclass(frozen=True)
class ProfileConfig:
    """How to build a latency table (`autovit latency profile`, docs/latency.md)."""

    out: Path
    space: str = "xxs"
    backend: str = "ort"                  # ort (onnxruntime CPU) | torch (eager)
    threads: int = 1
    resolution: int | None = None         # default: the space's
    opt_level: str = "all"
    rounds: int = 7
    fit_subnets: int = 30                 # 0: raw table sum, no fit
    seed: int = 0
    num_classes: int = 1000
    cpu: int | None = None                # CPU to pin to (default: the last one)
    max_spread: float = 0.4
    force_unstable: bool = False
    blocks: str = "anchors"               # anchors (impute the rest from operator counts) | all
    anchors_per_feature: int = 3


@dataclass
class ProfileResult:
    out: Path
    model: "LatencyModel"
    pinned_cpu: int | None
    reused_timings: int                   # timings taken from the checkpoint of an interrupted build


def profile_latency(cfg: ProfileConfig, progress: Progress | None = None, warn: Message = _quiet,
                    note: Message = _quiet) -> ProfileResult:
    """Measures block variants in context, fits the latency model and writes the table to `cfg.out`
    (resuming the timings of an interrupted build of the same settings)."""
    from autovit.io_utils import ensure_writable_file
    from autovit.latency.measure import MeasureConfig, timing_process
    from autovit.latency.profile import UnstableMachineError, profile_log, profile_space
    from autovit.space import SearchSpace

    out = Path(cfg.out)
    ensure_writable_file(out)
    space = SearchSpace.load(cfg.space)
    with timing_process(cfg.cpu) as pinned:
        config = MeasureConfig(backend=cfg.backend, threads=cfg.threads, opt_level=cfg.opt_level, rounds=cfg.rounds)
        log = profile_log(out, space, cfg.resolution, config, cfg.fit_subnets, cfg.seed, cfg.num_classes, cfg.blocks,
                          cfg.anchors_per_feature)
        if log.reused:
            note(f"resuming: {log.reused} timings reused from {log.path}")
        try:
            model = profile_space(space, cfg.resolution, config, cfg.fit_subnets, cfg.seed, cfg.num_classes, progress,
                                  cfg.max_spread, cfg.force_unstable, measure=cfg.blocks,
                                  anchors_per_feature=cfg.anchors_per_feature, log=log, warn=warn)
        except UnstableMachineError:
            log.discard()  # timings from an unstable machine are not worth resuming
            raise
    model.save(out)
    log.discard()
    return ProfileResult(out, model, pinned, log.reused)


@dataclass(frozen=True)
class ValidateConfig:
    """How to validate a fitted latency table (`autovit latency validate`)."""

    lut: Path
    samples: int = 50                     # held-out random subnets, each measured twice
    seed: int = 1
    rounds: int = 7
    plot: Path | None = None              # predicted-vs-measured scatter PNG
    out: Path | None = None               # the full report JSON
    cpu: int | None = None
    force_table: bool = False             # a table of another device/runtime (warning)
    mlp_ablation: bool = False
    extremes: bool = True                 # also time the space's corner subnets
    latency_budget: Any = None            # a LatencyBudget (or its text): also time subnets just under it


@dataclass
class ValidationResult:
    report: dict[str, Any]
    out: Path | None
    plot: Path | None


def validate_latency(cfg: ValidateConfig, progress: Progress | None = None, warn: Message = _quiet,
                     note: Message = _quiet) -> ValidationResult:
    """Measures held-out subnets here and scores the table's model, its ablations and the noise floor."""
    import os
    import warnings

    from autovit.io_utils import ensure_writable_file, save_json
    from autovit.latency.measure import MeasureConfig, timing_process
    from autovit.latency.predictor import LatencyModel
    from autovit.latency.profile import partial_path
    from autovit.latency.validate import plot_validation, run_validation, validation_log
    from autovit.search.budget import LatencyBudget, validation_groups
    from autovit.space import SearchSpace

    lut = Path(cfg.lut)
    if cfg.out is not None:
        ensure_writable_file(cfg.out)
    if cfg.plot is not None:
        ensure_writable_file(cfg.plot, "--plot")
    budget = LatencyBudget.parse(cfg.latency_budget) if cfg.latency_budget is not None else None
    model = LatencyModel.load(lut)
    fp = model.fingerprint
    config = MeasureConfig(backend=fp.get("backend", "ort"), threads=int(fp.get("threads", 1)),
                           opt_level=fp.get("graph_optimization", "all"), rounds=cfg.rounds)
    with warnings.catch_warnings():  # passed to `warn` as one clean line each, not as Python warnings
        warnings.simplefilter("ignore")
        problems = model.table.check_compatible(fingerprint=config.fingerprint(model.table.resolution),
                                                force=cfg.force_table)
    for problem in problems:
        warn(f"using a mismatched latency table: {problem}")
    space = SearchSpace.load(model.space_name)
    with timing_process(cfg.cpu):
        # Checkpoint of the timings: next to `out`, else next to the table (when that folder is writable).
        where = partial_path(cfg.out) if cfg.out else lut.with_name(lut.name + ".validate.partial.json")
        groups = validation_groups(model, space, cfg.extremes, budget)
        log = (validation_log(where, model, space, cfg.samples, cfg.seed, config, groups)
               if cfg.out or os.access(lut.parent, os.W_OK) else None)
        if log and log.reused:
            note(f"resuming: {log.reused} timings reused from {log.path}")
        report = run_validation(model, space, cfg.samples, cfg.seed, config, progress, groups, log,
                                mlp_ablation=cfg.mlp_ablation)
    if cfg.out:
        save_json(cfg.out, report)
    if log:
        log.discard()
    if cfg.plot:
        plot_validation(report, cfg.plot)
    return ValidationResult(report, cfg.out, cfg.plot)


# ------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainSupernetConfig:
    """A supernet training run (`autovit supernet train`): the space, the run folder and the recipe."""

    train: "TrainConfig"
    space: str = "xxs"
    out: Path = Path("runs/supernet")
    resume: str | None = None             # 'auto' (out/checkpoints/last.pt) or a checkpoint path
    allow_changed: tuple[str, ...] = ()   # settings changed on purpose on resume (e.g. lr)


@dataclass(frozen=True)
class TrainSubnetConfig:
    """One subnet trained (or fine-tuned) alone with the supernet recipe (`autovit train`)."""

    train: "TrainConfig"
    arch: str                             # arch JSON or autovit_xxs|xs|s
    space: str | None = None              # validate the arch against this space
    out: Path = Path("runs/standalone")
    resume: str | None = None
    allow_changed: tuple[str, ...] = ()


@dataclass
class TrainResult:
    out: Path
    steps: int
    train_time_s: float
    final_loss: float | None
    val: dict[str, float] | None = None   # train_subnet: top-1/top-5 on the held-out split
    is_main: bool = True                  # False on torchrun ranks other than 0


def train_supernet(cfg: TrainSupernetConfig, console: Any = None) -> TrainResult:
    """Trains a weight-sharing supernet in `cfg.out` (which it holds for the run); resumable.
    `console`: a rich Console for the training log (None: silent)."""
    from autovit.space import SearchSpace
    from autovit.supernet import Supernet

    space, train = SearchSpace.load(cfg.space), cfg.train
    return _train(train, lambda data: Supernet(space, num_classes=data.num_classes, in_chans=data.in_chans,
                                               drop_rate=train.drop_rate),
                  Path(cfg.out), cfg.resume, cfg.allow_changed, False, console)


def train_subnet(cfg: TrainSubnetConfig, console: Any = None) -> TrainResult:
    """Trains one subnet alone (from inherited weights with `train.init_from`); writes `out/subnet/`."""
    from autovit.model import AutoViT
    from autovit.registry import resolve_arch
    from autovit.space import SearchSpace

    arch = SearchSpace.load(cfg.space).parse_arch(Path(cfg.arch)) if cfg.space else resolve_arch(cfg.arch)
    train = cfg.train
    return _train(train, lambda data: AutoViT(arch, num_classes=data.num_classes, in_chans=data.in_chans,
                                              drop_rate=train.drop_rate),
                  Path(cfg.out), cfg.resume, cfg.allow_changed, True, console)


def _train(cfg: "TrainConfig", make_model: Callable[[Any], Any], out: Path, resume: str | None,
           allow_changed: Sequence[str], report_val: bool, console: Any) -> TrainResult:
    """Joins the torchrun group (if any), builds data and model, trains."""
    from autovit.data import build_datasets
    from autovit.io_utils import ensure_writable_dir
    from autovit.run_folder import open_run_folder
    from autovit.train import distributed as ddp
    from autovit.train.trainer import Trainer, seed_everything

    with open_run_folder(out, "train"):
        ensure_writable_dir(out)
        dist = ddp.init_distributed(cfg.device)
        try:
            data = build_datasets(cfg)
            seed_everything(cfg.seed)  # identical initial weights everywhere (rank 0's are broadcast anyway)
            trainer = Trainer(cfg, make_model(data), data, out_dir=out, console=console if dist.is_main else None)
            if resume:
                trainer.resume(out if resume == "auto" else resume, allow_changed=tuple(allow_changed))
            trainer.fit()
            result = TrainResult(out, trainer.step, round(trainer.elapsed_s, 1),
                                 trainer.history[-1].loss if trainer.history else None, is_main=dist.is_main)
            if dist.is_main and report_val and len(data.val):
                result.val = trainer.evaluate_val()["model"]
            return result
        finally:
            ddp.cleanup()


# ------------------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ExportConfig:
    """What to export (`autovit export`): a subnet of a supernet (`supernet` + `arch`) or a saved or
    trained subnet (`subnet`), in `formats`, each checked against PyTorch."""

    out: Path
    supernet: Path | None = None
    arch: str | None = None               # arch JSON, e.g. the search's best.json
    subnet: Path | None = None            # a saved subnet folder or an `autovit train` checkpoint
    formats: tuple[str, ...] = ("safetensors", "torchscript", "onnx")
    dataset: str | None = None            # BN recalibration data (default: the supernet's)
    calib_images: int | None = None       # default: the search's (best.json), else 2000; 0 skips
    finetune_steps: int = 0               # fine-tune from the inherited weights first
    finetune: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields for the fine-tuning


def export_model(cfg: ExportConfig, progress: Callable[[str], None] | None = None, warn: Message = _quiet,
                 console: Any = None) -> "ExportReport":
    """Extracts (BN recalibrated, optionally fine-tuned) or loads the subnet and exports it."""
    from autovit.export import export_subnet, parse_formats
    from autovit.io_utils import ensure_writable_dir

    formats = parse_formats(cfg.formats)
    out = Path(cfg.out)
    ensure_writable_dir(out)
    supernet, subnet = cfg.supernet, cfg.subnet
    if (supernet is None) == (subnet is None):
        raise AutovitError("pass exactly one of --supernet (with --arch) or --subnet")
    if supernet is not None and cfg.arch is None:
        raise AutovitError("--supernet needs --arch", hint="pass the arch JSON to extract, e.g. runs/search/best.json")
    if cfg.finetune_steps > 0:
        if supernet is None:
            raise AutovitError("--finetune-steps needs --supernet and --arch (it starts from the inherited weights)")
        subnet, supernet = _finetune(Path(supernet), str(cfg.arch), out / "finetune", cfg.finetune_steps,
                                     cfg.finetune, console), None
    if supernet is not None:
        model, meta = _extract(Path(supernet), str(cfg.arch), cfg.dataset, cfg.calib_images, warn)
    elif (Path(subnet) / "arch.json").is_file():  # a saved subnet folder (autovit.subnet_io)
        from autovit.subnet_io import load_subnet

        model, meta = load_subnet(subnet), {"source": str(subnet)}
    else:  # a training checkpoint of one subnet
        from autovit.train.checkpoint import load_model_from_checkpoint

        model = load_model_from_checkpoint(subnet)
        if not hasattr(model, "arch"):
            raise AutovitError(f"{subnet} holds a supernet", hint="use --supernet CKPT --arch ARCH.json")
        meta = {"source": str(subnet)}
    return export_subnet(model, out, formats, meta=meta, progress=progress)


def _finetune(supernet: Path, arch: str, out: Path, steps: int, overrides: Mapping[str, Any], console: Any) -> Path:
    """Trains the subnet alone from its inherited weights with the supernet's own recipe and data (a
    step budget instead of a time budget); returns the folder of the fine-tuned subnet."""
    from autovit.train.checkpoint import read_checkpoint
    from autovit.train.config import TrainConfig

    saved = read_checkpoint(supernet).get("config")
    names = TrainConfig.__dataclass_fields__
    recipe = {k: v for k, v in saved.items() if k in names} if isinstance(saved, dict) else {}
    cfg = TrainConfig.from_dict({**recipe, "time_budget_s": None, "init_from": None})
    cfg = cfg.replace(**{"max_steps": steps, "init_from": str(supernet), **dict(overrides)})
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_yaml(out / "finetune_config.yaml")
    train_subnet(TrainSubnetConfig(cfg, arch, out=out), console)
    return out / "subnet"


def _extract(supernet: Path, arch_path: str, calib_data: str | None, calib_images: int | None,
             warn: Message) -> tuple[Any, dict[str, Any]]:
    """The subnet `arch_path` of the supernet checkpoint with inherited weights, BN recalibrated on the
    training data (the supernet's shared BN statistics do not fit a single subnet). With a search's
    best.json, the recalibration repeats the search's (same images, batching and seed), so the
    exported model is the one whose accuracy the search reported."""
    from autovit.search.runner import calibration_set, search_calibration
    from autovit.train.checkpoint import load_supernet_checkpoint

    loaded = load_supernet_checkpoint(supernet)
    arch = loaded.supernet.space.parse_arch(arch_path)
    meta: dict[str, Any] = {"supernet": str(supernet), "space": loaded.space.name, "bn_recalibrated_images": 0}
    if loaded.train_config:  # the preprocessing the supernet was trained with, for timm's pretrained_cfg
        from autovit.data import data_config
        from autovit.train.config import TrainConfig

        fields = TrainConfig.__dataclass_fields__
        meta["data_config"] = data_config(TrainConfig.from_dict({k: v for k, v in loaded.train_config.items()
                                                                 if k in fields}))
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
            warn("BN is recalibrated with other settings than the search used (--dataset/--calib-images): the "
                 "exported model's accuracy will differ from the one best.json reports")
    return loaded.supernet.extract(arch).eval(), meta


# -------------------------------------------------------------------------------------- bench
@dataclass(frozen=True)
class BenchConfig:
    """Models to compare (`autovit bench`): autovit_xxs|xs|s, arch JSON paths or timm model names."""

    models: tuple[str, ...]
    resolution: int = 256
    threads: int = 1
    rounds: int = 7
    runs: int = 20
    warmup: int = 10
    reference: str | None = None          # default: the first model
    latency: bool = True                  # False: params and MACs only
    num_classes: int = 1000
    pin: bool = True
    backend: str = "ort"                  # ort (onnxruntime) | torch (eager)
    out: Path | None = None               # also write the JSON report here


def run_bench(cfg: BenchConfig, progress: Callable[[str, int, int, str], None] | None = None,
              warn: Message = _quiet) -> "BenchReport":
    """Params, MACs and measured batch-1 latency of `cfg.models`, timed in interleaved rounds (timm
    models reparameterized as deployed); a model that cannot run at the resolution is a skipped row
    and one `warn` line."""
    from autovit.bench import bench_models
    from autovit.io_utils import ensure_writable_file, save_json

    if cfg.out is not None:
        ensure_writable_file(cfg.out)
    report = bench_models(list(cfg.models), resolution=cfg.resolution, threads=cfg.threads, rounds=cfg.rounds,
                          runs=cfg.runs, warmup=cfg.warmup, reference=cfg.reference, latency=cfg.latency,
                          num_classes=cfg.num_classes, pin=cfg.pin, progress=progress, backend=cfg.backend,
                          warn=warn)
    if cfg.out is not None:
        save_json(cfg.out, report.to_dict())
    return report
