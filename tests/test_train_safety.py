"""Training safety: a diverging run never replaces its last good checkpoint and stops with one clear
error; resume with a lower --lr or another global batch; RandAugment's 0-bit posterize; threads."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from train_toys import tiny_config, train_space

from autovit.data import ResumableSampler, build_datasets, guard_posterize, train_transform
from autovit.errors import AutovitError
from autovit.model import AutoViT
from autovit.train.checkpoint import nonfinite_tensors, read_checkpoint
from autovit.train.recipe import current_lr
from autovit.train.trainer import Trainer, resolve_threads


@pytest.fixture(scope="module")
def data():
    return build_datasets(tiny_config())


def _subnet() -> AutoViT:
    torch.manual_seed(0)
    return AutoViT(train_space().smallest(), num_classes=10)


def _last(run: Path) -> dict:
    return read_checkpoint(run / "checkpoints" / "last.pt")


# ------------------------------------------------------------------------------ divergence
def test_finite_blowup_at_lr_10_stops_and_drops_the_checkpoint_that_caused_it(data, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(max_steps=30, lr=10.0, ckpt_every_steps=1), _subnet(), data, out_dir=run)
    with pytest.raises(AutovitError, match=r"blew up at step 2: loss .* the median 2\.\d+ of the first 1 steps") as err:
        trainer.fit()
    # step 1's update (lr 10) made the weights that blew up at step 2: its checkpoint is set aside
    assert "checkpoint of step 1 held these weights and was moved to last_diverged.pt" in err.value.message
    assert err.value.hint.startswith("restart with a lower --lr (1)")
    assert not (run / "checkpoints" / "last.pt").exists()
    assert read_checkpoint(run / "checkpoints" / "last_diverged.pt")["step"] == 1
    # switched off, the same run trains on (loss 1e4+ at step 2) and ends "successfully"
    off = Trainer(tiny_config(max_steps=3, lr=10.0, blowup_factor=0), _subnet(), data).fit()
    assert off[1].loss > 1e4 and len(off) == 3


def test_blowup_puts_the_previous_checkpoint_back(data, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(max_steps=10, lr=1e-3, ckpt_every_steps=2)
    trainer = Trainer(cfg, _subnet(), data, out_dir=run)

    def lr_spike_after_3(t: Trainer, log) -> None:
        if log.step == 3:  # step 4's update runs at lr 10 (the schedule resets it after)
            for group in t.optimizer.param_groups:
                group["lr"] = 10.0

    trainer.callbacks.append(lr_spike_after_3)
    with pytest.raises(AutovitError, match=r"blew up at step 5: .* last good checkpoint is .*last\.pt \(step 2\)"):
        trainer.fit()
    assert _last(run)["step"] == 2 and read_checkpoint(run / "checkpoints" / "last_diverged.pt")["step"] == 4
    resumed = Trainer(cfg, _subnet(), data, out_dir=run)
    resumed.resume(run)
    assert resumed.step == 2 and len(resumed.fit()) == 8


def test_nonfinite_state_is_never_checkpointed(data, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(max_steps=6, ckpt_every_steps=1)
    trainer = Trainer(cfg, _subnet(), data, out_dir=run)

    def poison_at_3(t: Trainer, log) -> None:
        if log.step == 3:
            with torch.no_grad():
                next(t.model.parameters()).view(-1)[0] = float("nan")

    trainer.callbacks.append(poison_at_3)
    kept = r"diverged by step 3: NaN or inf in 1 tensor\(s\) .*stem.*/last\.pt \(step 2\) is kept"
    with pytest.raises(AutovitError, match=kept):
        trainer.fit()
    assert _last(run)["step"] == 2 and not nonfinite_tensors(_last(run)["model"])
    resumed = Trainer(cfg, _subnet(), data, out_dir=run)
    resumed.resume(run)
    assert len(resumed.fit()) == 4 and _last(run)["step"] == 6


def test_nan_loss_stops_before_the_update(data) -> None:
    trainer = Trainer(tiny_config(max_steps=2), _subnet(), data)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    images, target = next(iter(trainer.loader))
    with pytest.raises(AutovitError, match="diverged at step 1: the loss became nan; no checkpoint was written"):
        trainer.train_step(images * float("nan"), target)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())  # no update
    assert trainer.step == 0


def test_nonfinite_tensors_names_them() -> None:
    state = {"a": torch.zeros(2), "b": [torch.tensor([1.0, math.inf]), torch.tensor([3])],
             "c": {"d": torch.tensor(math.nan)}}
    assert nonfinite_tensors(state) == ["b[0]", "c.d"]


def test_resume_with_a_lower_lr_uses_it(data, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=6, ckpt_every_steps=2, lr=1e-2, warmup_steps=0, min_lr=0.0)
    Trainer(cfg, _subnet(), data, out_dir=tmp_path / "run").fit()
    lower = Trainer(cfg.replace(lr=1e-3, max_steps=8), _subnet(), data)
    with pytest.raises(AutovitError, match=r"lr 0.01 -> 0.001.*"):  # a changed lr only when named on purpose
        lower.resume(tmp_path / "run")
    lower.resume(tmp_path / "run", allow_changed=("lr",))
    # cosine over the checkpoint's 6 planned steps, from the new peak 1e-3, at step 6 of 6: min_lr
    assert current_lr(lower.optimizer) == pytest.approx(0.0, abs=1e-12)
    same = Trainer(cfg, _subnet(), data)
    same.scheduler.step_update(3)
    lower.scheduler.step_update(3)
    assert current_lr(lower.optimizer) == pytest.approx(current_lr(same.optimizer) / 10)


# ------------------------------------------------------------------------------ another global batch
def test_sampler_resumes_at_an_image_offset_on_any_process_count() -> None:
    n, batch = 100, 4
    order = [i for i, _ in ResumableSampler(n, 1, seed=3)]  # the epoch's permutation, one image per batch
    seen = []
    for r in range(2):  # 5 steps on 2 processes: the first 5 x 4 x 2 images
        s = ResumableSampler(n, batch, seed=3, rank=r, world_size=2)
        seen += [i for i, _ in list(s)[:5 * batch]]
    assert sorted(seen) == sorted(order[:40])
    rest = []
    for r in range(3):  # the rest of the epoch on 3 processes
        s = ResumableSampler(n, batch, seed=3, rank=r, world_size=3)
        s.set_epoch(0, start_sample=40)
        assert len(s) == 5 * batch  # (100 - 40) // 12 whole global batches
        rest += [i for i, _ in s]
    assert sorted(rest) == sorted(order[40:100])
    assert ResumableSampler(n, batch, world_size=3).batches_left(97) == 0


class Preempted(Exception):
    pass


def test_resume_with_another_global_batch_continues_the_epoch(tmp_path: Path) -> None:
    cfg = tiny_config(epochs=2, ckpt_every_steps=4, val_size=0.9)
    small = build_datasets(cfg)
    n = len(small.train)
    first = Trainer(cfg, _subnet(), small, out_dir=tmp_path / "run")

    def preempt_at_5(t: Trainer, log) -> None:
        if log.step == 5:
            raise Preempted

    first.callbacks.append(preempt_at_5)
    with pytest.raises(Preempted):
        first.fit()
    half = Trainer(cfg.replace(batch_size=8), _subnet(), small, out_dir=tmp_path / "run")
    half.resume(tmp_path / "run")
    assert (half.step, half.epoch, half.epoch_samples) == (4, 0, 64)  # 4 steps x 16 images
    left = (n - 64) // 8 + n // 8
    assert half.total_steps == half.planned_steps == 4 + left
    logs = half.fit()
    assert len(logs) == left and (half.epoch, half.epoch_samples) == (2, 0)
    assert [log.epoch for log in logs].count(0) == (n - 64) // 8


# ------------------------------------------------------------------------------ RandAugment
def test_default_rand_augment_survives_zero_bit_posterize() -> None:
    from timm.data.auto_augment import rand_augment_transform

    img = Image.fromarray((np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3))
    hparams = dict(translate_const=3, img_mean=(124, 116, 104))

    def crashes(transform) -> list[int]:
        bad = []
        for seed in range(1000):
            random.seed(seed)
            np.random.seed(seed)
            try:
                transform(img)
            except ValueError:
                bad.append(seed)
        return bad

    try:
        ImageOps.posterize(img, 0)
        pillow_rejects_zero = False
    except ValueError:
        pillow_rejects_zero = True
    if pillow_rejects_zero:  # timm alone: magnitude noise reaches 10 -> 0 bits -> Pillow raises
        assert crashes(rand_augment_transform("rand-m9-mstd0.5-inc1", hparams)) == [22, 63, 184]
    assert crashes(guard_posterize(rand_augment_transform("rand-m9-mstd0.5-inc1", hparams))) == []
    # the training pipeline of the default recipe is guarded, including its low-magnitude variant
    for policy in ("rand-m9-mstd0.5-inc1", "rand-m1-n3"):
        pipeline = train_transform(tiny_config(rand_augment=policy, resolution=8))
        rand_aug = next(t for t in pipeline.transforms if hasattr(t, "ops"))
        assert crashes(rand_aug) == []
    zero = guard_posterize(rand_augment_transform("rand-m10-n1-inc1", dict(hparams, magnitude_std=0)))
    zero.ops[0].prob = 1.0
    for op in zero.ops:
        if op.name == "PosterizeIncreasing":
            assert np.asarray(op(img)).max() == 0  # 0 bits: black, as Pillow < 13 computed it


# ------------------------------------------------------------------------------ threads
def test_threads_are_set_deliberately(data, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = len(__import__("os").sched_getaffinity(0))
    assert resolve_threads(None, 1) == (cpus, f"{cpus} available CPUs / 1 process(es)")
    assert resolve_threads(None, 64 * cpus)[0] == 1
    assert resolve_threads(3, 1) == (3, "threads option")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert resolve_threads(None, 1) == (5, "OMP_NUM_THREADS")
    with pytest.raises(AutovitError, match="threads must be >= 1"):
        tiny_config(threads=0)
    try:
        assert Trainer(tiny_config(threads=2), _subnet(), data).threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_cli_blowup_exits_2_with_one_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from train_toys import TRAIN_SPACE

    from autovit.cli import main

    space = tmp_path / "space.yaml"
    space.write_text(TRAIN_SPACE)
    with pytest.raises(SystemExit) as exit_info:
        main(["supernet", "train", "--space", str(space), "--preset", "tiny", "--lr", "10", "--max-steps", "20",
              "--out", str(tmp_path / "run"), "--set", "ckpt_every_steps=1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "training blew up at step" in err and "--lr" in err
