"""Pareto fronts: non-dominated points, non-dominated sorting, best-per-budget fronts."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_min(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> np.ndarray:
    """Objectives turned into 'smaller is better' columns."""
    arr = np.asarray(points, dtype=float).reshape(len(points), len(maximize))
    return np.where(np.asarray(maximize), -arr, arr)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """`a` is no worse in every objective and strictly better in one (both 'min' columns)."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the non-dominated points (duplicates of a front point are all kept), in input order."""
    if len(points) == 0:
        return []
    arr = _as_min(points, maximize)
    keep = []
    for i, p in enumerate(arr):
        # p is dominated if some q is <= everywhere and < somewhere.
        le = np.all(arr <= p, axis=1)
        lt = np.any(arr < p, axis=1)
        if not np.any(le & lt):
            keep.append(i)
    return keep


def nondominated_sort(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[list[int]]:
    """Successive Pareto fronts (front 0 first), each in input order; covers every point."""
    remaining = list(range(len(points)))
    fronts: list[list[int]] = []
    arr = _as_min(points, maximize) if len(points) else np.zeros((0, len(maximize)))
    while remaining:
        sub = pareto_front(arr[remaining], [False] * arr.shape[1])
        front = [remaining[i] for i in sub]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


def best_per_budget(accuracy: Sequence[float], cost: Sequence[float],
                    budgets: Sequence[float]) -> dict[float, int | None]:
    """For each budget, the index of the most accurate point with cost <= budget (ties: lower cost,
    then lower index); None where nothing fits."""
    out: dict[float, int | None] = {}
    for b in budgets:
        fits = [i for i, c in enumerate(cost) if c <= b]
        out[b] = min(fits, key=lambda i: (-accuracy[i], cost[i], i)) if fits else None
    return out
