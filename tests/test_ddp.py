"""Data-parallel training with 2 gloo processes (what `torchrun --nproc_per_node=2` starts): both
ranks sample the same subnets and hold identical weights after some steps."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from train_toys import tiny_config, train_space

    from autovit.data import build_datasets
    from autovit.supernet import Supernet
    from autovit.train import distributed as ddp
    from autovit.train.trainer import Trainer

    info = ddp.init_distributed("cpu")
    try:
        cfg = tiny_config(max_steps=3, sampling="sandwich", sandwich_random=1, mixup=0.5, drop_rate=0.1,
                          ckpt_every_steps=2, device="cpu")
        torch.manual_seed(100 + rank)  # different initial weights per rank: rank 0's must be broadcast
        trainer = Trainer(cfg, Supernet(train_space(), num_classes=10, drop_rate=0.1), build_datasets(cfg),
                          out_dir=Path(out) / "run")
        first_batch = next(iter(trainer.loader))[1]
        logs = trainer.fit()
        torch.save({"rank": info.rank, "world": info.world_size, "state": trainer.model.state_dict(),
                    "archs": [log.archs for log in logs], "labels": first_batch}, Path(out) / f"rank{rank}.pt")
    finally:
        ddp.cleanup()


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    assert r0["archs"] == r1["archs"] and len(r0["archs"]) == 3 and len(r0["archs"][0]) == 3
    assert not torch.equal(r0["labels"], r1["labels"])  # each rank trained on its own shard
    assert r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    # only rank 0 wrote the run directory; its checkpoint equals the final weights
    from autovit.train.checkpoint import read_checkpoint

    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert all(torch.equal(ckpt["model"]["state_dict"][k], r0["state"][k]) for k in r0["state"])


# ------------------------------------------------------------------------------ exact resume, time budget
def _join(rank: int, port: int) -> None:
    """Joins a 2-process gloo group with a short timeout: a rank left waiting in a collective fails
    the test instead of hanging it."""
    from datetime import timedelta

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=30))


class Preempted(Exception):
    pass


def _exactness_worker(rank: int, port: int, out: str) -> None:
    """Both scenarios in one spawn (starting 2 processes costs more than their training):
    preempted + resumed vs uninterrupted with Mixup/CutMix and dropout; a time budget on skewed clocks."""
    import random
    import shutil

    import numpy as np
    from train_toys import tiny_config, train_space

    from autovit.data import build_datasets
    from autovit.model import AutoViT
    from autovit.supernet import Supernet
    from autovit.train import distributed as ddp
    from autovit.train.trainer import Trainer

    _join(rank, port)
    out_dir = Path(out)
    try:
        cfg = tiny_config(max_steps=6, mixup=0.8, cutmix=1.0, drop_rate=0.2, ckpt_every_steps=3, device="cpu")
        data = build_datasets(cfg)

        def model() -> Supernet:
            torch.manual_seed(0)
            return Supernet(train_space(), num_classes=10, drop_rate=0.2)

        full = Trainer(cfg, model(), data, out_dir=out_dir / "full")
        full_logs = full.fit()
        cut = Trainer(cfg, model(), data, out_dir=out_dir / "cut")

        def preempt_at_4(trainer, log) -> None:
            if log.step == 4:
                raise Preempted

        cut.callbacks.append(preempt_at_4)
        try:
            cut.fit()
        except Preempted:
            pass
        ddp.barrier(WORLD)
        if rank == 0:
            shutil.copy(out_dir / "cut" / "checkpoints" / "last.pt", out_dir / "step3.pt")
        random.seed(rank)  # a restarted process: its global RNGs hold anything
        np.random.seed(rank)
        torch.manual_seed(1000 + rank)
        resumed = Trainer(cfg, model(), data, out_dir=out_dir / "cut")
        resumed.resume(out_dir / "cut" / "checkpoints" / "last.pt")
        rest = resumed.fit()
        torch.save({"full": full.model.state_dict(), "resumed": resumed.model.state_dict(),
                    "full_losses": [log.loss for log in full_logs[3:]], "losses": [log.loss for log in rest]},
                   out_dir / f"resume{rank}.pt")

        budget = tiny_config(epochs=5, time_budget_s=7.3, warmup_steps=5, device="cpu")
        torch.manual_seed(0)
        trainer = Trainer(budget, AutoViT(train_space().smallest(), num_classes=10), data)
        trainer.clock = _FakeClock(0.1 if rank == 0 else 0.25)  # rank 1 measures 2.5x the time
        logs = trainer.fit()
        torch.save({"steps": trainer.step, "planned": trainer.planned_steps, "lrs": [log.lr for log in logs],
                    "state": trainer.model.state_dict()}, out_dir / f"budget{rank}.pt")
    finally:
        ddp.cleanup()


class _FakeClock:
    """A clock that advances `tick` seconds per reading."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture(scope="module")
def exactness_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp_exact")
    mp.spawn(_exactness_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.slow
def test_resume_with_mixup_and_dropout_is_bit_identical_on_two_processes(exactness_runs: Path) -> None:
    r0, r1 = (torch.load(exactness_runs / f"resume{r}.pt", weights_only=True) for r in range(WORLD))
    for r in (r0, r1):
        assert r["losses"] == r["full_losses"] and len(r["losses"]) == 3  # mean over both ranks, bitwise
        assert all(torch.equal(r["full"][k], r["resumed"][k]) for k in r["full"])
    assert all(torch.equal(r0["resumed"][k], r1["resumed"][k]) for k in r0["resumed"])

    # the 2-process checkpoint resumes in 1 process: the epoch continues after the 3 x 16 x 2 images consumed
    from train_toys import tiny_config, train_space

    from autovit.data import build_datasets
    from autovit.supernet import Supernet
    from autovit.train.trainer import Trainer

    cfg = tiny_config(max_steps=6, mixup=0.8, cutmix=1.0, drop_rate=0.2, device="cpu")
    alone = Trainer(cfg, Supernet(train_space(), num_classes=10, drop_rate=0.2), build_datasets(cfg))
    alone.resume(exactness_runs / "step3.pt")
    assert (alone.step, alone.epoch, alone.epoch_samples, alone.total_steps) == (3, 0, 96, 6)
    assert len(alone.fit()) == 3 and alone.epoch_samples == 96 + 3 * 16


@pytest.mark.slow
def test_time_budget_with_skewed_clocks_ends_on_the_same_step(exactness_runs: Path) -> None:
    r0, r1 = (torch.load(exactness_runs / f"budget{r}.pt", weights_only=True) for r in range(WORLD))
    # rank 0's clock: 0.2 s per step -> 37 steps in 7.3 s, schedule re-fitted at step 30 to 36 steps;
    # rank 1's own clock would have stopped it after 15 steps, in the middle of rank 0's collectives
    assert (r0["steps"], r0["planned"]) == (r1["steps"], r1["planned"]) == (37, 36)
    assert r0["lrs"] == r1["lrs"]
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
