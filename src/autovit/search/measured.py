"""Real latency of searched archs on this machine, measured with `autovit.bench` (onnxruntime,
batch 1, fixed threads, rounds interleaved with any reference models such as timm's)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from autovit.arch import Arch
from autovit.bench import ProgressFn, bench_models


def measure_archs(archs: Mapping[str, Arch], references: Sequence[str] = (), resolution: int | None = None,
                  threads: int = 1, rounds: int = 5, runs: int = 20, warmup: int = 10, num_classes: int = 1000,
                  progress: ProgressFn | None = None) -> dict[str, float]:
    """Median ms of each arch (by its name in `archs`) and of each reference model name (e.g.
    'mobilevit_xxs'), all measured in the same interleaved rounds."""
    if not archs and not references:
        return {}
    res = resolution or next(iter(archs.values())).resolution
    with tempfile.TemporaryDirectory(prefix="autovit-measure-") as tmp:
        paths: dict[str, str] = {}
        for i, (name, arch) in enumerate(archs.items()):
            path = Path(tmp) / f"arch{i}.json"
            arch.save(path)
            paths[str(path)] = name
        report = bench_models(list(paths) + list(references), resolution=res, threads=threads, rounds=rounds,
                              runs=runs, warmup=warmup, num_classes=num_classes, progress=progress)
    return {paths.get(row.name, row.name): float(row.median_ms) for row in report.rows}
