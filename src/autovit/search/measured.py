"""Real latency of searched archs on this machine, measured with `autovit.bench` (onnxruntime,
batch 1, fixed threads, rounds interleaved with any reference models such as timm's)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from autovit.arch import Arch
from autovit.bench import BenchReport, ProgressFn, bench_models


def bench_archs(archs: Mapping[str, Arch], references: Sequence[str] = (), resolution: int | None = None,
                threads: int = 1, rounds: int = 5, runs: int = 20, warmup: int = 10, num_classes: int = 1000,
                progress: ProgressFn | None = None) -> BenchReport:
    """The `bench_models` report of `archs` (rows named by their keys in `archs`) and of the
    reference model names (e.g. 'mobilevit_xxs'), all measured in the same interleaved rounds."""
    res = resolution or next(iter(archs.values())).resolution
    with tempfile.TemporaryDirectory(prefix="autovit-measure-") as tmp:
        paths: dict[str, str] = {}
        for i, (name, arch) in enumerate(archs.items()):
            path = Path(tmp) / f"arch{i}.json"
            arch.save(path)
            paths[str(path)] = name
        report = bench_models(list(paths) + list(references), resolution=res, threads=threads, rounds=rounds,
                              runs=runs, warmup=warmup, num_classes=num_classes, progress=progress)
    for row in report.rows:
        row.name = paths.get(row.name, row.name)
    return report


def measure_archs(archs: Mapping[str, Arch], references: Sequence[str] = (), resolution: int | None = None,
                  threads: int = 1, rounds: int = 5, runs: int = 20, warmup: int = 10, num_classes: int = 1000,
                  progress: ProgressFn | None = None) -> dict[str, float]:
    """Median ms of each arch (by its name in `archs`) and of each reference model name (e.g.
    'mobilevit_xxs'), all measured in the same interleaved rounds."""
    if not archs and not references:
        return {}
    report = bench_archs(archs, references, resolution, threads, rounds, runs, warmup, num_classes, progress)
    return {row.name: float(row.median_ms) for row in report.rows}
