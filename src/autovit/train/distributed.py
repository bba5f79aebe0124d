"""Data-parallel helpers for `torchrun` (gloo on CPU, nccl on CUDA).

Supernet steps leave most weights unused and the sandwich rule runs several backward passes per
step, which DistributedDataParallel's per-backward bucketing handles poorly (unused-parameter
searches, no_sync bookkeeping). Every process samples the same subnets (per-step seeds), so the set
of parameters with gradients is identical on all ranks; we therefore average the gradients
explicitly, once per optimizer step, in one flat all-reduce, and broadcast BN buffers from rank 0
as DDP's `broadcast_buffers` does. The result is the same update as DDP's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Joins the process group that `torchrun` describes in the environment (no-op otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local)


def current() -> DistInfo:
    """The process group this process is in (single process when none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def average_gradients(model: nn.Module, world_size: int) -> None:
    """All-reduce (mean) the gradients of all parameters that have one, in one flat buffer."""
    if world_size <= 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat.div_(world_size)
        for g, synced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(synced)


def broadcast_buffers(model: nn.Module, world_size: int) -> None:
    """Rank 0's buffers (BN running statistics) on every rank."""
    if world_size <= 1:
        return
    for b in model.buffers():
        dist.broadcast(b, src=0)


def broadcast_parameters(model: nn.Module, world_size: int) -> None:
    """Rank 0's weights on every rank (at start, so all ranks begin identical)."""
    if world_size <= 1:
        return
    with torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p.data, src=0)
    broadcast_buffers(model, world_size)


def broadcast_float(value: float, world_size: int, device: torch.device | str = "cpu") -> float:
    """Rank 0's `value` on every rank (one decision, e.g. the time budget, for all)."""
    if world_size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def mean_float(value: float, world_size: int, device: torch.device | str = "cpu") -> float:
    """The mean of `value` over ranks (NaN/inf on any rank make it non-finite everywhere)."""
    if world_size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
