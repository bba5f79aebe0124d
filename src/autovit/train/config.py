"""`TrainConfig`: every knob of supernet and standalone training in one typed dataclass.

Loadable from YAML (`TrainConfig.from_yaml`) and overridable from the CLI
(`cfg.replace(**flags)`); unknown keys and wrongly typed values raise `AutovitError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from autovit.errors import AutovitError

SAMPLING_MODES = ("uniform", "sandwich")
KD_MODES = ("none", "soft", "hard")


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (paper 4.1: DeiT-like) + data + runtime settings. Defaults are tiny and offline."""

    # data --------------------------------------------------------------------------
    dataset: str = "digits"                 # digits | cifar10 | imagefolder
    data_dir: str | None = None             # cifar10: torchvision root or folder of .npz; imagefolder: root
    download: bool = False                  # cifar10: let torchvision download into data_dir
    resolution: int = 32
    mean: tuple[float, ...] | None = None   # None: the dataset's usual statistics
    std: tuple[float, ...] | None = None
    val_size: float = 0.1                   # held out from train (fraction < 1 or a count >= 1)
    val_seed: int = 0
    num_workers: int = 0
    calib_images: int = 2000                # BN recalibration subset size (from train, fixed seed)
    # augmentation (timm) ------------------------------------------------------------
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    color_jitter: float = 0.0
    rand_augment: str | None = "rand-m9-mstd0.5-inc1"   # None/"" switches RandAugment off
    random_erasing: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    # optimisation ---------------------------------------------------------------------
    epochs: int = 1
    max_steps: int | None = None            # overrides epochs when set
    time_budget_s: float | None = None      # stop after this much training time (LR schedule fitted to it)
    batch_size: int = 64                    # per process
    opt: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    clip_grad: float | None = 5.0
    blowup_factor: float | None = 100.0     # stop if a loss > this x the first steps' median (0: off)
    drop_rate: float = 0.0
    # supernet ------------------------------------------------------------------------
    sampling: str = "uniform"               # uniform (Eq. 4-5) | sandwich (largest + smallest + k random)
    sandwich_random: int = 2
    inplace_kd: bool = False                # sandwich: distil subnets from the largest subnet's logits
    arch_distribution: str = "per_dimension"  # per_dimension (Eq. 4-5) | uniform_arch (autovit.supernet.sampling)
    init_from: str | None = None            # larger supernet checkpoint (cross-supernet inheritance)
    # distillation -------------------------------------------------------------------------
    kd: str = "none"                        # none | soft (Eq. 10) | hard (Eq. 11)
    kd_alpha: float = 0.5
    kd_tau: float = 1.0
    teacher_model: str | None = None        # timm model name
    teacher_checkpoint: str | None = None   # weights for teacher_model, an autovit subnet dir, or a supernet ckpt
    teacher_arch: str | None = None         # arch JSON when teacher_checkpoint is a supernet checkpoint
    # runtime ----------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"                    # auto | cpu | cuda
    threads: int | None = None              # torch threads per process (None: OMP_NUM_THREADS or CPUs/procs)
    amp: bool = True                        # only takes effect on CUDA
    channels_last: bool = True              # only takes effect on CUDA
    ckpt_every_steps: int = 500
    log_every_steps: int = 10
    eval_every_epoch: bool = True
    progress: bool = True
    tensorboard: bool = True

    # ----------------------------------------------------------------------------- io
    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        return cls().replace(**dict(data))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        from autovit.io_utils import read_yaml

        data = read_yaml(path, "training config", "pass an existing YAML file to --config") or {}
        if not isinstance(data, Mapping):
            raise AutovitError(f"{path}: expected a mapping of option -> value")
        try:
            return cls.from_dict(data)
        except AutovitError as err:
            raise AutovitError(f"{path}: {err.message}", err.hint) from None

    def save_yaml(self, path: str | Path) -> None:
        from autovit.io_utils import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with `changes` applied (None values are ignored: 'flag not given'), type-checked."""
        names = {f.name: f for f in fields(self)}
        hints = typing.get_type_hints(type(self))
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            key = key.replace("-", "_")
            if key not in names:
                raise AutovitError(f"unknown training option '{key}'",
                                   hint=f"known options: {', '.join(sorted(names))}")
            clean[key] = _coerce(value, hints[key], key)
        cfg = dataclasses.replace(self, **clean)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.sampling not in SAMPLING_MODES:
            raise AutovitError(f"unknown sampling '{self.sampling}'", hint=f"use one of {SAMPLING_MODES}")
        from autovit.supernet.sampling import ARCH_DISTRIBUTIONS

        if self.arch_distribution not in ARCH_DISTRIBUTIONS:
            raise AutovitError(f"unknown arch_distribution '{self.arch_distribution}'",
                               hint=f"use one of {ARCH_DISTRIBUTIONS}")
        if self.kd not in KD_MODES:
            raise AutovitError(f"unknown kd '{self.kd}'", hint=f"use one of {KD_MODES}")
        if self.kd != "none" and not (self.teacher_model or self.teacher_checkpoint):
            raise AutovitError(f"kd '{self.kd}' needs a teacher",
                               hint="set teacher_model (timm name) + teacher_checkpoint, or teacher_checkpoint")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise AutovitError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if self.kd_tau <= 0:
            raise AutovitError(f"kd_tau must be > 0, got {self.kd_tau}")
        if self.batch_size < 1 or self.epochs < 0 or self.resolution < 8:
            raise AutovitError("batch_size >= 1, epochs >= 0 and resolution >= 8 are required")
        if self.max_steps is not None and self.max_steps < 1:
            raise AutovitError(f"max_steps must be >= 1, got {self.max_steps} (nothing would be trained)",
                               hint="pass a positive --max-steps, or leave it out to train for --epochs")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise AutovitError(f"time_budget_s must be > 0 seconds, got {self.time_budget_s} (nothing would be "
                               f"trained)", hint="pass a positive --time-budget, or leave it out")
        if self.max_steps is None and self.epochs < 1:
            raise AutovitError(f"epochs must be >= 1 when max_steps is not set, got {self.epochs} "
                               f"(nothing would be trained)", hint="pass --epochs N or --max-steps N")
        if self.inplace_kd and self.sampling != "sandwich":
            raise AutovitError("inplace_kd needs sampling 'sandwich' (the largest subnet is the teacher)")
        self._check_safety_options()

    def _check_safety_options(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise AutovitError(f"threads must be >= 1, got {self.threads}", hint="or leave it unset (auto)")
        if self.blowup_factor is not None and self.blowup_factor != 0 and self.blowup_factor <= 1:
            raise AutovitError(f"blowup_factor must be > 1 (or 0 to switch the check off), got {self.blowup_factor}")


# Fields a resumed training may change: where the data lives, how long to train, the per-process
# batch (the trainer re-enters the epoch by image offset), threads, the divergence check, the
# device and what is logged. Every other field determines the weights, so resuming with another
# value is refused unless the user names it in `allow` (e.g. a lower lr after a divergence).
RESUMABLE_FIELDS = frozenset({"data_dir", "download", "num_workers", "epochs", "max_steps", "time_budget_s",
                              "batch_size", "threads", "blowup_factor", "device", "channels_last",
                              "ckpt_every_steps", "log_every_steps", "eval_every_epoch", "progress", "tensorboard"})


def check_resume_settings(saved: Any, cfg: TrainConfig, source: str | Path, allow: Sequence[str] = ()) -> None:
    """Refuses to resume a checkpoint trained with other weight-determining settings than `cfg`,
    except the fields named in `allow` (changed on purpose, e.g. `lr` after a divergence)."""
    if not isinstance(saved, Mapping):
        raise AutovitError(f"corrupt checkpoint {source}: no training config")
    try:
        known = {f.name for f in fields(TrainConfig)} - RESUMABLE_FIELDS
        before = TrainConfig.from_dict({k: v for k, v in saved.items() if k in known}).to_dict()
    except AutovitError as err:
        raise AutovitError(f"corrupt checkpoint {source}: its training config is invalid ({err.message})") from None
    now = cfg.to_dict()
    unknown = sorted(set(allow) - set(now))
    if unknown:
        raise AutovitError(f"--allow-changed names unknown settings: {', '.join(unknown)}",
                           hint="name training settings as in config.yaml, e.g. --allow-changed lr,warmup_epochs")
    changed = [k for k in now if k not in RESUMABLE_FIELDS and k not in allow and before[k] != now[k]]
    if changed:
        diff = ", ".join(f"{k} {before[k]!r} -> {now[k]!r}" for k in changed[:6])
        raise AutovitError(f"cannot resume {source}: it was trained with other settings ({diff})",
                           hint="resume with the checkpoint's settings (its config.yaml), or train from scratch "
                                "into another --out; only data_dir, epochs, max_steps, time_budget_s, batch_size, "
                                "device and logging options may change on resume, unless named on purpose with "
                                f"--allow-changed {','.join(changed)}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Converts YAML/CLI values to the field's type (tuples from lists, ints from floats, ...)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        errors = []
        for opt in options:
            try:
                return _coerce(value, opt, key)
            except AutovitError as err:
                errors.append(err)
        raise errors[-1]
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split()]
        if not isinstance(value, (list, tuple)):
            raise AutovitError(f"option '{key}' expects a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != len(args):
            raise AutovitError(f"option '{key}' expects {len(args)} values, got {value!r}")
        return tuple(_coerce(v, item, key) for v in value)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if not isinstance(value, (bool, int)):
                raise ValueError
            return bool(value)
        if hint is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if not isinstance(value, (str, Path)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise AutovitError(f"option '{key}' expects {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value


def preset(name: str) -> TrainConfig:
    """Named recipes: 'tiny' (tests/smoke), 'cifar-cpu' (short CPU runs), 'deit' (paper 4.1, ImageNet)."""
    presets = {
        "tiny": dict(rand_augment=None, random_erasing=0.0, mixup=0.0, cutmix=0.0, resolution=16,
                     batch_size=16, ckpt_every_steps=0, eval_every_epoch=False, progress=False,
                     tensorboard=False, threads=1),
        "cifar-cpu": dict(dataset="cifar10", resolution=32, crop_scale=(0.35, 1.0), rand_augment=None,
                          random_erasing=0.0, mixup=0.0, cutmix=0.0, label_smoothing=0.1, lr=2e-3,
                          weight_decay=0.05, warmup_steps=100, batch_size=64),
        "deit": dict(resolution=256, rand_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25, mixup=0.8,
                     cutmix=1.0, label_smoothing=0.1, lr=1e-3, weight_decay=0.05, warmup_epochs=5.0,
                     epochs=300, batch_size=128),
    }
    if name not in presets:
        raise AutovitError(f"unknown recipe preset '{name}'", hint=f"use one of {', '.join(presets)}")
    return TrainConfig().replace(**presets[name])

