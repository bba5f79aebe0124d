"""Candidate evaluation split across processes (torchrun) and gathered on every rank.

Every rank runs the same seeded search, so all ranks hold the same population; only the
evaluation is split (rank r takes candidates r, r + W, r + 2W, ...; no remainder is dropped) and
the accuracies are gathered with `all_gather_object`, so every rank continues identically.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


def world() -> tuple[int, int]:
    """(rank, world_size) of the initialised default process group, else (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items rank `rank` evaluates: every `world_size`-th, starting at `rank`."""
    return list(items[rank::world_size])


def unshard(per_rank: Sequence[Sequence[T]], n: int) -> list[T]:
    """Inverse of `shard`: the per-rank results interleaved back into the original order."""
    world_size = len(per_rank)
    out: list[Any] = [None] * n
    for rank, results in enumerate(per_rank):
        expected = len(range(rank, n, world_size))
        if len(results) != expected:
            raise RuntimeError(f"rank {rank} returned {len(results)} results, expected {expected}")
        out[rank::world_size] = list(results)
    return out


def evaluate_split(items: Sequence[T], fn: Callable[[T], float],
                   gather: Callable[[list[float]], list[list[float]]] | None = None,
                   rank: int | None = None, world_size: int | None = None) -> list[float]:
    """`[fn(x) for x in items]`, split across ranks and gathered.

    `gather` maps this rank's results to every rank's (default: `torch.distributed.all_gather_object`);
    `rank` / `world_size` default to the process group's.
    """
    if rank is None or world_size is None:
        rank, world_size = world()
    local = [float(fn(x)) for x in shard(items, rank, world_size)]
    if world_size == 1:
        return local
    return unshard((gather or _all_gather)(local), len(items))


def _all_gather(local: list[float]) -> list[list[float]]:
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, local)
    return out
