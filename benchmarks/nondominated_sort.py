"""Wall time of `autovit.search.pareto.nondominated_sort` against the former peeling sorter.

Random (accuracy, params)-like points on a coarse grid (ties and duplicates, as in a search
history), 2 and 3 objectives. Each time is the median of `--repeats` runs; the old sorter runs
only up to `--old-max` points (issue 15 reports 82 s for 3,000). The fronts of both are checked equal.

    python benchmarks/nondominated_sort.py --out benchmarks/results/nondominated_sort.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from autovit.io_utils import atomic_write_text, save_json
from autovit.search.pareto import nondominated_sort


def old_sort(points: list, maximize: tuple) -> list[list[int]]:
    """The former implementation: peel one front at a time, O(n^2) numpy work per front."""
    arr = np.where(np.asarray(maximize), -np.asarray(points, dtype=float), np.asarray(points, dtype=float))
    remaining, fronts = list(range(len(points))), []
    while remaining:
        sub = arr[remaining]
        front = [remaining[i] for i, p in enumerate(sub)
                 if not np.any(np.all(sub <= p, axis=1) & np.any(sub < p, axis=1))]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


def timed(fn, *args, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,3000,10000")
    ap.add_argument("--old-max", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/nondominated_sort.json"))
    args = ap.parse_args()
    rows = []
    t_start = time.perf_counter()
    for dims in (2, 3):
        for n in [int(s) for s in args.sizes.split(",")]:
            rng = np.random.default_rng(n + dims)
            pts = np.column_stack([rng.integers(0, 400, n), *(rng.integers(0, 2000, n) for _ in range(dims - 1))])
            pts = pts.astype(float).tolist()
            maximize = (True,) + (False,) * (dims - 1)
            new_s, fronts = timed(nondominated_sort, pts, maximize, repeats=args.repeats)
            row = {"objectives": dims, "points": n, "fronts": len(fronts), "new_s": round(new_s, 4)}
            if n <= args.old_max:
                old_s, old_fronts = timed(old_sort, pts, maximize, repeats=1)
                assert old_fronts == fronts, "the sorters disagree"
                row.update(old_s=round(old_s, 3), speedup=round(old_s / new_s, 1))
            rows.append(row)
            print(row, flush=True)
    import numpy

    result = {"machine": platform.platform(), "processor": platform.processor() or platform.machine(),
              "python": sys.version.split()[0], "numpy": numpy.__version__,
              "command": "python " + " ".join(sys.argv), "wall_s": round(time.perf_counter() - t_start, 1),
              "rows": rows}
    save_json(args.out, result)
    lines = ["# Non-dominated sort: new vs former implementation", "",
             f"{result['machine']}, Python {result['python']}, numpy {result['numpy']}; `{result['command']}` "
             f"({result['wall_s']} s in all). Median of {args.repeats} runs for the new sorter, 1 run for the old "
             "one (shared 2-core machine: expect +-30 % noise on each time).", "",
             "| objectives | points | fronts | new (s) | old (s) | speed-up |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['objectives']} | {r['points']} | {r['fronts']} | {r['new_s']} | {r.get('old_s', '-')} | "
                     f"{r.get('speedup', '-')} |")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
