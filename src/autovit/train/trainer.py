"""The training loop shared by supernet training (subnet sampling, paper Eq. 4-5) and standalone
training of one static subnet, with the same recipe.

Supernet steps: `uniform` samples one subnet per step; `sandwich` trains the largest, the
smallest and `sandwich_random` random subnets on the same batch with accumulated gradients
(optionally distilling the others from the largest, in place). Subnets are drawn from a
`random.Random` seeded by (seed, step, k), so every process and every resumed run samples the
same sequence without communication. The global RNGs that Mixup/CutMix and dropout draw from are
re-seeded at every step from (seed, rank, step): each process draws its own masks and lambdas,
and a resumed run (on any number of processes) draws what an uninterrupted one would.

Decisions that must be the same on every process are made once and shared: the time budget is
read from rank 0's clock, and the loss checks (non-finite, blow-up) use the mean over processes.
"""

from __future__ import annotations

import csv
import math
import os
import random
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from autovit.arch import Arch
from autovit.data import DataBundle, eval_loader, sample_seed, train_loader
from autovit.errors import AutovitError
from autovit.io_utils import save_json
from autovit.train import distributed as ddp
from autovit.train.checkpoint import (
    is_autovit_subnet,
    is_supernet,
    keep_previous,
    model_payload,
    module_identity,
    nonfinite_tensors,
    read_checkpoint,
    restore_model,
    save_checkpoint,
)
from autovit.train.config import TrainConfig, check_resume_settings
from autovit.train.distill import DistillationLoss, load_teacher, soft_kd_term
from autovit.train.recipe import build_mixup, build_optimizer, build_scheduler, build_train_loss, current_lr

# Steps after which a time-budgeted run re-fits its LR schedule to the measured step time.
_REPLAN_AT = (30, 100, 300, 1000)
# The blow-up check compares each step's loss with the median loss of the run's first steps.
_EARLY_STEPS = 20


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AutovitError("device 'cuda' requested but CUDA is not available", hint="use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seeds Python, NumPy and torch (Mixup and dropout draw from them); per rank, like timm."""
    s = sample_seed(seed, rank, 0x61)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def seed_step(seed: int, rank: int, step: int, device: torch.device | None = None) -> None:
    """Seeds the global RNGs (Python, NumPy, torch CPU and `device`'s CUDA generator) for one
    training step: a pure function of (seed, rank, step), so nothing rank-specific is saved."""
    s = sample_seed(seed, rank, step, 0x5713)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.default_generator.manual_seed(s)  # not torch.manual_seed: that would also seed every GPU
    if device is not None and device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(s)


def resolve_threads(requested: int | None, local_world_size: int = 1) -> tuple[int, str]:
    """(intra-op threads, why): `requested`, else OMP_NUM_THREADS, else this process's share of
    the CPUs it may run on (available CPUs / processes on this machine)."""
    if requested:
        return requested, "threads option"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(local_world_size, 1)), f"{cpus} available CPUs / {local_world_size} process(es)"


def step_archs(space: Any, seed: int, step: int, sampling: str, sandwich_random: int = 2,
               distribution: str = "per_dimension") -> list[Arch]:
    """The subnets trained at `step`: a pure function of (seed, step) -- identical on every rank.
    `distribution` is how a random subnet is drawn (`autovit.supernet.sampling`)."""
    from autovit.supernet.sampling import sample_arch

    if sampling == "uniform":
        return [sample_arch(space, random.Random(sample_seed(seed, step, 0)), distribution)]
    randoms = [sample_arch(space, random.Random(sample_seed(seed, step, k)), distribution)
               for k in range(1, sandwich_random + 1)]
    return [space.largest(), space.smallest(), *randoms]


@dataclass
class StepLog:
    step: int
    epoch: int
    loss: float
    lr: float
    images_per_s: float
    elapsed_s: float
    archs: list[str] = field(default_factory=list)


class Trainer:
    """Trains a `Supernet` (subnet sampling) or a static `AutoViT` (standalone) on `data`.

    `out_dir` receives config.yaml, checkpoints/last.pt (every `ckpt_every_steps` steps and every
    epoch), train_log.csv, eval_log.csv, TensorBoard events (tb/) and the final weights
    (supernet.pt; subnet/ with model.safetensors + arch.json; model.safetensors for another module,
    e.g. a timm baseline). Only rank 0 writes.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, data: DataBundle, out_dir: str | Path | None = None,
                 teacher: nn.Module | None = None, console: Any = None) -> None:
        cfg.check()
        self.cfg, self.data, self.console = cfg, data, console
        self.dist = ddp.current()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.dist.world_size))
        self.threads, threads_from = resolve_threads(cfg.threads, local_world)
        torch.set_num_threads(self.threads)
        seed_everything(cfg.seed, self.dist.rank)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.cuda = self.device.type == "cuda"
        self.model = model.to(self.device)
        if self.cuda and cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.supernet = is_supernet(model)
        self.space = model.space if self.supernet else None
        if cfg.init_from:
            self._init_from(cfg.init_from)
        ddp.broadcast_parameters(self.model, self.dist.world_size)
        self.loader = train_loader(data, cfg, self.dist.rank, self.dist.world_size)
        self.steps_per_epoch = self.loader.sampler.batches_per_epoch
        self.total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * self.steps_per_epoch
        self.planned_steps = self.total_steps  # LR schedule length (re-fitted under a time budget)
        self.mixup = build_mixup(cfg, data.num_classes)
        self.loss_fn = build_train_loss(cfg, self.mixup is not None)
        self.kd: DistillationLoss | None = None
        self.teacher = teacher
        if cfg.kd != "none":
            self.kd = DistillationLoss(self.loss_fn, cfg.kd, cfg.kd_alpha, cfg.kd_tau)
            if self.teacher is None:
                self.teacher = load_teacher(cfg, data.num_classes, data.in_chans, self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.planned_steps, self.steps_per_epoch)
        self.amp = self.cuda and cfg.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step, self.elapsed_s = 0, 0.0
        self.epoch, self.epoch_samples = 0, 0  # data position: images of this epoch's permutation consumed
        self.clock: Callable[[], float] = time.perf_counter  # training time (a test may skew it per rank)
        self.early_losses: list[float] = []  # the first steps' losses: the blow-up check's reference
        self.checkpoint_step: int | None = None  # step of the last checkpoint written or resumed from
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks: list[Callable[["Trainer", StepLog], None]] = []
        self.history: list[StepLog] = []
        self._tb: Any = None
        self._rate = 0.0
        self._calib: list[Any] | None = None
        self._log(f"threads: {self.threads} per process ({threads_from}; set `threads` to change)")
        load, cpus = (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0), os.cpu_count() or 1
        if self.threads > 1 and load > cpus:
            self._log(f"[yellow]warning[/]: the machine is busy (load {load:.1f} on {cpus} CPUs); "
                      "fewer threads (e.g. --set threads=1) may train much faster")

    # ------------------------------------------------------------------ setup helpers
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def _init_from(self, path: str) -> None:
        """Supernet: slice a larger supernet's weights (cross-supernet inheritance). Subnet: start
        from inherited weights (a supernet checkpoint, whose subnet `arch` is extracted, or a subnet)."""
        from autovit.train.checkpoint import load_model_from_checkpoint, model_state_of

        if self.supernet:
            source = model_state_of(read_checkpoint(path))
            skip = int(source.get("num_classes", self.model.num_classes)) != self.model.num_classes
            self.model.inherit_from(source, skip_classifier=skip)
            return
        if Path(path).is_dir() and (Path(path) / "arch.json").is_file():
            from autovit.subnet_io import load_subnet

            source = load_subnet(path)
        else:
            source = load_model_from_checkpoint(path, self.model.arch)
        if getattr(source, "arch", None) != self.model.arch:
            raise AutovitError(f"--supernet {path} holds another architecture than --arch",
                               hint="pass a supernet checkpoint (the arch is extracted) or the same subnet")
        restore_model(self.model, model_payload(source))

    def _log(self, message: str) -> None:
        if self.is_main and self.console is not None:
            self.console.print(message)

    # ------------------------------------------------------------------ one optimisation step
    def archs_for(self, step: int) -> list[Arch | None]:
        if not self.supernet:
            return [None]
        return step_archs(self.space, self.cfg.seed, step, self.cfg.sampling, self.cfg.sandwich_random,
                          self.cfg.arch_distribution)

    def _autocast(self) -> Any:
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def train_step(self, images: torch.Tensor, target: torch.Tensor,
                   archs: Sequence[Arch | None] | None = None) -> StepLog:
        """Forward/backward every subnet of this step (default: `archs_for(step)`) on one batch,
        average gradients over processes, clip, update, advance the LR schedule."""
        cfg, model = self.cfg, self.model
        t0 = self.clock()
        seed_step(cfg.seed, self.dist.rank, self.step, self.device)
        model.train()
        images = images.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        if self.cuda and cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.mixup is not None:
            images, target = self.mixup(images, target)
        teacher_logits = None
        if self.kd is not None:
            with torch.no_grad(), self._autocast():
                teacher_logits = self.teacher(images).float()
        self.optimizer.zero_grad(set_to_none=True)
        archs = self.archs_for(self.step) if archs is None else list(archs)
        largest_logits = None
        losses = []
        for i, arch in enumerate(archs):
            if arch is not None:
                model.set_active(arch)
            with self._autocast():
                logits = model(images)
            if largest_logits is not None:  # in-place KD: subnets learn the largest subnet's outputs
                loss = soft_kd_term(logits, largest_logits, cfg.kd_tau)
            elif self.kd is not None:
                loss = self.kd(logits.float(), target, teacher_logits)
            else:
                loss = self.loss_fn(logits.float(), target)
            if not torch.isfinite(loss):  # no backward: it would only spread NaN into the gradients
                losses.append(loss.item())
                break
            self.scaler.scale(loss).backward()
            if cfg.inplace_kd and i == 0:
                largest_logits = logits.detach().float()
            losses.append(loss.item())
        loss = self._check_loss(sum(losses) / len(losses))  # before the update: the weights stay good
        ddp.average_gradients(model, self.dist.world_size)
        if cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        ddp.broadcast_buffers(model, self.dist.world_size)
        self.step += 1
        self.scheduler.step_update(self.step)
        dt = self.clock() - t0
        self.elapsed_s += dt
        if cfg.time_budget_s is not None:  # every rank plans and stops by rank 0's clock
            self.elapsed_s = ddp.broadcast_float(self.elapsed_s, self.dist.world_size, self.device)
        rate = images.shape[0] * self.dist.world_size / max(dt, 1e-9)
        self._rate = rate if self._rate == 0 else 0.9 * self._rate + 0.1 * rate
        return StepLog(self.step, self.epoch, loss, current_lr(self.optimizer), self._rate, self.elapsed_s,
                       [a.key() for a in archs if a is not None])

    def _check_loss(self, loss: float) -> float:
        """The step's loss averaged over processes; stops the run (the same way on every rank)
        when it is not finite or has blown up, before the optimizer update."""
        loss = ddp.mean_float(loss, self.dist.world_size, self.device)
        step = self.step + 1
        problem = None
        factor = self.cfg.blowup_factor
        if not math.isfinite(loss):
            problem = f"training diverged at step {step}: the loss became {loss}"
        elif factor and self.early_losses:
            reference = statistics.median(self.early_losses)
            if reference > 0 and loss > factor * reference:
                problem = (f"training blew up at step {step}: loss {loss:.4g} is {loss / reference:.0f}x the median "
                           f"{reference:.4g} of the first {len(self.early_losses)} steps (blowup_factor {factor:g})")
        if problem is not None:
            # this loss came from the weights of the step before: a checkpoint of that step is bad too
            where = self._drop_checkpoint_of(self.step)
            resume = (f"resume it with a lower learning rate (--resume --lr {self.cfg.lr / 10:g} --allow-changed lr) or a longer "
                      "warm-up" if self.checkpoint_step is not None
                      else f"restart with a lower --lr ({self.cfg.lr / 10:g}) or a longer warm-up")
            off = "; or set blowup_factor=0 to train on regardless" if math.isfinite(loss) else ""
            raise AutovitError(f"{problem}; {where}", hint=resume + off)
        if len(self.early_losses) < _EARLY_STEPS:
            self.early_losses.append(loss)
        return loss

    def _drop_checkpoint_of(self, step: int) -> str:
        """After a divergence whose loss came from the weights of `step`: if the last checkpoint
        holds them, put the one before back as last.pt (last_diverged.pt keeps the bad one).
        Returns where the last good checkpoint is, for the error message."""
        if self.out_dir is None or self.checkpoint_step is None:
            return "no checkpoint was written"
        if not self.is_main:
            return "rank 0 names the last good checkpoint"
        last, previous = self.out_dir / "checkpoints" / "last.pt", self.out_dir / "checkpoints" / "previous.pt"
        if self.checkpoint_step == step:
            if last.is_file():
                os.replace(last, last.with_name("last_diverged.pt"))
            self.checkpoint_step = None
            if previous.is_file():
                self.checkpoint_step = int(read_checkpoint(previous)["step"])
                os.replace(previous, last)
        if self.checkpoint_step is None:
            return f"the checkpoint of step {step} held these weights and was moved to last_diverged.pt"
        return f"the last good checkpoint is {last} (step {self.checkpoint_step})"

    # ------------------------------------------------------------------ the loop
    def fit(self) -> list[StepLog]:
        """Trains until `total_steps` (or the time budget); returns this call's step logs."""
        cfg = self.cfg
        if self.is_main and self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfg.save_yaml(self.out_dir / "config.yaml")
        logs: list[StepLog] = []
        progress, task = self._progress()
        try:
            while self.step < self.total_steps and not self._out_of_time():
                self.loader.sampler.set_epoch(self.epoch, start_sample=self.epoch_samples)
                if len(self.loader.sampler) == 0:  # less than a global batch left (resumed on more processes)
                    self.epoch, self.epoch_samples = self.epoch + 1, 0
                    self._end_epoch(self.epoch)
                    continue
                epoch_done = False
                last = self.clock()
                for images, target in self.loader:
                    self.elapsed_s += self.clock() - last  # data loading, logging, checkpoints
                    log = self.train_step(images, target)
                    last = self.clock()
                    logs.append(log)
                    self.history.append(log)
                    self.epoch_samples += self.loader.sampler.global_batch
                    epoch_done = self.loader.sampler.batches_left(self.epoch_samples) == 0
                    if epoch_done:  # before the checkpoint: it then resumes at the next epoch's start
                        self.epoch, self.epoch_samples = self.epoch + 1, 0
                    self._after_step(log, progress, task)
                    if epoch_done or self.step >= self.total_steps or self._out_of_time():
                        break
                if epoch_done:
                    self._end_epoch(self.epoch)
            self.save_checkpoint()
            self.save_final()
        finally:
            if progress is not None:
                progress.stop()
            if self._tb is not None:
                self._tb.flush()
        return logs

    def _out_of_time(self) -> bool:
        return self.cfg.time_budget_s is not None and self.elapsed_s >= self.cfg.time_budget_s

    def _replan(self) -> None:
        """Under a time budget: fit the cosine schedule's length to the measured step time."""
        budget = self.cfg.time_budget_s
        if budget is None or self.step not in _REPLAN_AT:
            return
        per_step = self.elapsed_s / self.step
        planned = self.step + int(max(budget - self.elapsed_s, 0) / per_step)
        self.planned_steps = max(min(planned, self.total_steps), self.step + 1)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, self.planned_steps, self.steps_per_epoch)
        self.scheduler.step_update(self.step)

    def _after_step(self, log: StepLog, progress: Any, task: Any) -> None:
        cfg = self.cfg
        self._replan()
        if self.is_main:
            if progress is not None:
                total = self.planned_steps if cfg.time_budget_s else self.total_steps
                progress.update(task, completed=self.step, total=total, epoch=log.epoch, loss=log.loss, lr=log.lr,
                                ips=log.images_per_s)
            elif self.console is not None and cfg.log_every_steps and self.step % (cfg.log_every_steps * 10) == 0:
                self._log(f"step {self.step}/{self.planned_steps} epoch {log.epoch} loss {log.loss:.4f} "
                          f"lr {log.lr:.2e} {log.images_per_s:.0f} img/s elapsed {log.elapsed_s:.0f}s")
            if cfg.log_every_steps and self.step % cfg.log_every_steps == 0:
                self._write_train_row(log)
        for callback in self.callbacks:
            callback(self, log)
        if cfg.ckpt_every_steps and self.step % cfg.ckpt_every_steps == 0:
            self.save_checkpoint()

    def _end_epoch(self, epoch: int) -> None:
        if self.cfg.eval_every_epoch and len(self.data.val):
            results = self.evaluate_val()
            if self.is_main:
                for name, res in results.items():
                    self._write_eval_row(epoch, name, res)
                self._log(f"epoch {epoch}: " + ", ".join(f"{k} top-1 {v['top1']:.2f}%" for k, v in results.items()))
        self.save_checkpoint()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate_val(self, dataset: Any = None) -> dict[str, dict[str, float]]:
        """top-1/top-5/loss on the validation split: the model, or for a supernet its largest and
        smallest subnets with BN recalibrated on the fixed calibration subset."""
        from autovit.supernet.evaluate import SubnetEvaluator, evaluate

        loader = eval_loader(dataset if dataset is not None else self.data.val, self.cfg.batch_size, self.cfg.num_workers)
        if not self.supernet:
            return {"model": evaluate(self.model, loader)}
        evaluator = SubnetEvaluator(self.model, self.calibration_batches(), loader)
        return {"largest": evaluator.evaluate(self.space.largest()),
                "smallest": evaluator.evaluate(self.space.smallest())}

    def calibration_batches(self) -> list[Any]:
        """The fixed, seeded BN-recalibration subset of the training images (eval transform)."""
        from autovit.supernet.bn_calibration import calibration_batches

        if self._calib is None:
            self._calib = calibration_batches(self.data.train_eval, self.cfg.calib_images, self.cfg.batch_size,
                                              self.cfg.seed)
        return self._calib

    # ------------------------------------------------------------------ outputs
    def _progress(self) -> tuple[Any, Any]:
        if not (self.is_main and self.cfg.progress and self.console is not None and self.console.is_terminal):
            return None, None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("[bold]train[/] ep {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e} "
                                       "{task.fields[ips]:.0f} img/s"), TimeRemainingColumn(),
                            console=self.console, transient=False)
        task = progress.add_task("train", total=self.total_steps, completed=self.step, epoch=0, loss=float("nan"),
                                 lr=current_lr(self.optimizer), ips=0.0)
        progress.start()
        return progress, task

    def _tensorboard(self) -> Any:
        if self._tb is None and self.cfg.tensorboard and self.out_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step)
        return self._tb

    def _append_csv(self, name: str, row: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        path = self.out_dir / name
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _write_train_row(self, log: StepLog) -> None:
        self._append_csv("train_log.csv", dict(step=log.step, epoch=log.epoch, loss=round(log.loss, 6), lr=log.lr,
                                               images_per_s=round(log.images_per_s, 1),
                                               elapsed_s=round(log.elapsed_s, 2)))
        tb = self._tensorboard()
        if tb is not None:
            tb.add_scalar("train/loss", log.loss, log.step)
            tb.add_scalar("train/lr", log.lr, log.step)
            tb.add_scalar("train/images_per_s", log.images_per_s, log.step)

    def _write_eval_row(self, epoch: int, name: str, res: dict[str, float]) -> None:
        self._append_csv("eval_log.csv", dict(step=self.step, epoch=epoch, subnet=name, **res))
        tb = self._tensorboard()
        if tb is not None:
            for k, v in res.items():
                tb.add_scalar(f"val_{name}/{k}", v, self.step)

    def _truncate_logs(self) -> None:
        """After a resume: drop log rows written after the checkpoint (they are redone)."""
        if self.out_dir is None or not self.is_main:
            return
        for name in ("train_log.csv", "eval_log.csv"):
            path = self.out_dir / name
            if path.exists():
                lines = path.read_text().splitlines(keepends=True)
                kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= self.step]
                path.write_text("".join(kept))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything a resume needs. No RNG state: the step's RNGs derive from (seed, rank, step)."""
        return {"kind": "supernet" if self.supernet else "subnet", "model": model_payload(self.model),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step,
                "planned_steps": self.planned_steps, "elapsed_s": self.elapsed_s,
                "epoch": self.epoch, "epoch_samples": self.epoch_samples, "train_images": len(self.data.train),
                "steps_per_epoch": self.steps_per_epoch, "world_size": self.dist.world_size,
                "batch_size": self.cfg.batch_size, "early_losses": list(self.early_losses),
                "config": self.cfg.to_dict(), "space": self.space.to_dict() if self.space is not None else None}

    def save_checkpoint(self) -> Path | None:
        """Writes checkpoints/last.pt (rank 0); the one it replaces becomes previous.pt. A state
        with NaN/inf tensors is never written: the run stops with an error naming both steps."""
        bad = nonfinite_tensors({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()})
        if ddp.mean_float(float(len(bad)), self.dist.world_size, self.device) > 0:
            where = (f"{self.out_dir / 'checkpoints' / 'last.pt'} (step {self.checkpoint_step}) is kept"
                     if self.out_dir is not None and self.checkpoint_step is not None else "no checkpoint was written")
            first = f" (first: {bad[0]})" if bad else ""
            raise AutovitError(f"training diverged by step {self.step}: NaN or inf in {len(bad)} tensor(s) of the "
                               f"model/optimizer state{first}; not saved, {where}",
                               hint=f"resume the kept checkpoint with a lower learning rate "
                                    f"(--resume --lr {self.cfg.lr / 10:g} --allow-changed lr) or a longer warm-up")
        if not (self.is_main and self.out_dir is not None):
            ddp.barrier(self.dist.world_size)
            self.checkpoint_step = self.step
            return None
        last = self.out_dir / "checkpoints" / "last.pt"
        if last.is_file():  # the one before stays, in case these weights turn out to have diverged
            keep_previous(last, last.with_name("previous.pt"))
        path = save_checkpoint(last, self.state())
        ddp.barrier(self.dist.world_size)
        self.checkpoint_step = self.step
        return path

    def save_final(self) -> None:
        """The trained weights in their portable form: supernet.pt, subnet/ (safetensors + arch) or,
        for another module, model.safetensors."""
        if not (self.is_main and self.out_dir is not None):
            return
        from autovit.io_utils import atomic_torch_save

        if self.supernet:
            # The training config travels with the weights: search and export read the data
            # settings and, above all, the resolution the supernet was trained at from it.
            atomic_torch_save(self.out_dir / "supernet.pt", {**model_payload(self.model), "config": self.cfg.to_dict()})
        elif is_autovit_subnet(self.model):
            from autovit.data import data_config
            from autovit.subnet_io import save_subnet

            save_subnet(self.model, self.out_dir / "subnet", extra_meta={"data_config": data_config(self.cfg)})
        else:  # another module (a timm baseline): its weights, named by class and structure
            from safetensors.torch import save_model

            from autovit.io_utils import atomic_write

            atomic_write(self.out_dir / "model.safetensors",
                         lambda p: save_model(self.model, str(p), metadata=module_identity(self.model)))
        save_json(self.out_dir / "summary.json", {"steps": self.step, "train_time_s": round(self.elapsed_s, 2),
                                                  "final_loss": self.history[-1].loss if self.history else None})

    def resume(self, path: str | Path, allow_changed: Sequence[str] = ()) -> None:
        """Restores everything a checkpoint holds; checks it all before changing anything.

        Settings that determine the weights must match the checkpoint's, except those named in
        `allow_changed` (`check_resume_settings`).

        Another number of processes (or --batch-size) is accepted: the weights, optimizer and step
        carry over, the interrupted epoch continues at the first image no process had consumed
        yet, and an epoch-based run re-plans its LR schedule over the steps left at the new
        global batch. An allowed change of --lr takes effect (the schedule is rebuilt from the config)."""
        ckpt = read_checkpoint(path)
        if ckpt.get("format") != "autovit-train":
            raise AutovitError(f"{path} holds weights only, not a training state",
                               hint="resume from runs/<name>/checkpoints/last.pt; to start from these weights "
                                    "use --supernet (supernets)")
        kind = "supernet" if self.supernet else "subnet"
        if ckpt.get("kind") != kind:
            raise AutovitError(f"the checkpoint is a {ckpt.get('kind')} training run, this is a {kind} run")
        check_resume_settings(ckpt.get("config"), self.cfg, path, allow=allow_changed)
        sampler = self.loader.sampler
        old_world, old_spe = ckpt.get("world_size"), ckpt.get("steps_per_epoch")
        if "train_images" in ckpt:
            if ckpt["train_images"] != len(self.data.train):
                raise AutovitError(f"the checkpoint was trained on {ckpt['train_images']} images, this dataset has "
                                   f"{len(self.data.train)}", hint="resume with the same dataset and val_size")
            epoch, epoch_samples = int(ckpt["epoch"]), int(ckpt["epoch_samples"])
        elif old_spe == self.steps_per_epoch and old_world == self.dist.world_size:  # older: no data position
            epoch, start_batch = divmod(int(ckpt["step"]), self.steps_per_epoch)
            epoch_samples = start_batch * sampler.global_batch
        else:
            raise AutovitError("this older checkpoint can only resume with its own process count and batch size "
                               f"({old_spe} steps/epoch on {old_world} processes, now {self.steps_per_epoch} on "
                               f"{self.dist.world_size})",
                               hint="resume it once with its own batch size and number of processes")
        backup = {k: v.clone() for k, v in self.model.state_dict().items()}
        try:
            restore_model(self.model, ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            for group in self.optimizer.param_groups:  # the schedule starts from this run's --lr
                group.pop("initial_lr", None)
                group["lr"] = self.cfg.lr
            self.scaler.load_state_dict(ckpt["scaler"])
            step = int(ckpt["step"])
            planned = int(ckpt.get("planned_steps", self.total_steps))
            old_batch = ckpt.get("batch_size", ckpt.get("config", {}).get("batch_size"))
            regrouped = old_world != self.dist.world_size or old_batch != self.cfg.batch_size
            if regrouped and self.cfg.max_steps is None:
                left = sampler.batches_left(epoch_samples) + max(self.cfg.epochs - epoch - 1, 0) * self.steps_per_epoch
                self.total_steps = step + left if epoch < self.cfg.epochs else step
                planned = self.total_steps if self.cfg.time_budget_s is None else min(planned, self.total_steps)
            self.planned_steps = planned
            self.scheduler = build_scheduler(self.optimizer, self.cfg, self.planned_steps, self.steps_per_epoch)
            self.early_losses = [float(x) for x in ckpt.get("early_losses", [])]
        except AutovitError:
            self.model.load_state_dict(backup)
            raise
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            self.model.load_state_dict(backup)
            raise AutovitError(f"corrupt checkpoint {path}: {type(err).__name__}: {str(err)[:200]}") from None
        self.step, self.epoch, self.epoch_samples = step, epoch, epoch_samples
        self.checkpoint_step = step
        self.elapsed_s = float(ckpt.get("elapsed_s", 0.0))
        self.scheduler.step_update(self.step)
        self._truncate_logs()
        self._log(f"resumed from {path} at step {self.step} (epoch {epoch}, image {epoch_samples} of its order)")
        if regrouped:
            self._log(f"global batch {old_batch} x {old_world} -> {self.cfg.batch_size} x {self.dist.world_size} "
                      f"processes: {self.steps_per_epoch} steps/epoch, LR schedule over {self.planned_steps} steps")
        old_lr = ckpt.get("config", {}).get("lr")
        if old_lr is not None and old_lr != self.cfg.lr:
            self._log(f"learning rate {old_lr:g} -> {self.cfg.lr:g} from step {self.step}")
