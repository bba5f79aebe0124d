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
