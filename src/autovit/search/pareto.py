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
    ranks = front_ranks(_as_min(points, maximize))
    return np.flatnonzero(ranks == 0).tolist()


def nondominated_sort(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[list[int]]:
    """Successive Pareto fronts (front 0 first), each in input order; covers every point.

    Two objectives: sort and binary search, O(n log n) (3,000 points in milliseconds); more
    objectives: a vectorised dominance matrix, O(n^2) memory in blocks (fine up to ~10^4 points)."""
    if len(points) == 0:
        return []
    ranks = front_ranks(_as_min(points, maximize))
    order = np.argsort(ranks, kind="stable")  # stable: each front stays in input order
    bounds = np.searchsorted(ranks[order], np.arange(int(ranks.max()) + 2))
    return [order[bounds[k]:bounds[k + 1]].tolist() for k in range(len(bounds) - 1)]


def front_ranks(arr: np.ndarray) -> np.ndarray:
    """The front index of every row of `arr` ('min' columns; 0 = non-dominated).

    A row with a NaN neither dominates nor is dominated (every comparison with NaN is false), so it
    is in front 0."""
    arr = np.asarray(arr, dtype=float)
    n = arr.shape[0]
    ranks = np.zeros(n, dtype=np.int64)
    finite = ~np.isnan(arr).any(axis=1)
    idx = np.flatnonzero(finite)
    if len(idx):
        sub = arr[idx]
        ranks[idx] = _ranks_2d(sub) if sub.shape[1] == 2 else _ranks_by_matrix(sub)
    return ranks


def _ranks_2d(arr: np.ndarray) -> np.ndarray:
    """Front ranks for two objectives (Jensen / ENS-BS): points in lexicographic order, each put in
    the first front whose last member does not dominate it, found by binary search."""
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    ranks = np.empty(len(arr), dtype=np.int64)
    last: list[tuple[float, float]] = []  # per front, its last member: the smallest f1 in the front

    def dominated_by(q: tuple[float, float], p: tuple[float, float]) -> bool:
        # q comes before p in the order, so q0 <= p0.
        return q[1] < p[1] or (q[1] == p[1] and q[0] < p[0])

    for i in order.tolist():
        p = (float(arr[i, 0]), float(arr[i, 1]))
        lo, hi = 0, len(last)  # the fronts whose last member dominates p form a prefix
        while lo < hi:
            mid = (lo + hi) // 2
            if dominated_by(last[mid], p):
                lo = mid + 1
            else:
                hi = mid
        if lo == len(last):
            last.append(p)
        else:
            last[lo] = p
        ranks[i] = lo
    return ranks


def _ranks_by_matrix(arr: np.ndarray, block: int = 1024) -> np.ndarray:
    """Front ranks for any number of objectives: count each point's dominators with a (blocked)
    dominance matrix, then peel fronts by subtracting the dominated-by counts of each front."""
    n = len(arr)
    dom = np.zeros((n, n), dtype=bool)  # dom[i, j]: i dominates j
    for start in range(0, n, block):
        a = arr[start:start + block]
        le = np.ones((len(a), n), dtype=bool)
        lt = np.zeros((len(a), n), dtype=bool)
        for j in range(arr.shape[1]):  # column by column: no (block, n, k) temporaries
            le &= a[:, j, None] <= arr[None, :, j]
            lt |= a[:, j, None] < arr[None, :, j]
        dom[start:start + block] = le & lt
    count = dom.sum(axis=0)
    ranks = np.full(n, -1, dtype=np.int64)
    current = np.flatnonzero(count == 0)
    k = 0
    while len(current):
        ranks[current] = k
        count -= dom[current].sum(axis=0)
        count[ranks >= 0] = -1
        current = np.flatnonzero(count == 0)
        k += 1
    return ranks


def best_per_budget(accuracy: Sequence[float], cost: Sequence[float],
                    budgets: Sequence[float]) -> dict[float, int | None]:
    """For each budget, the index of the most accurate point with cost <= budget (ties: lower cost,
    then lower index); None where nothing fits."""
    out: dict[float, int | None] = {}
    for b in budgets:
        fits = [i for i, c in enumerate(cost) if c <= b]
        out[b] = min(fits, key=lambda i: (-accuracy[i], cost[i], i)) if fits else None
    return out
