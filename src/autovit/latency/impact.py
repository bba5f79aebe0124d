"""Latency impact of a module (paper Eq. 7): accuracy drop over latency drop when it is removed.

    L_impact(m) = (A(M) - A(M without m)) / (L(M) - L(M without m))

Removable modules: one transformer layer of a stage (depth - 1, while depth > 1), one MBConv
block of a stage (depth - 1, while depth > 1), and the whole last transformer stage (while more
than one remains). `accuracy_fn(arch) -> float` is any callable (the search plugs in supernet
accuracy with BN recalibration); latency comes from a `LatencyModel` or anything with `.predict`.
A low impact means the module costs much time for little accuracy: a pruning candidate.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from autovit.arch import Arch


def removable_modules(arch: Arch) -> list[tuple[str, Arch]]:
    """(description, arch without that module) for every module that can be removed."""
    out: list[tuple[str, Arch]] = []
    for i, s in enumerate(arch.mbconv):
        if s.depth > 1:
            stages = list(arch.mbconv)
            stages[i] = type(s)(s.width, s.depth - 1, s.expansion, s.kernel)
            out.append((f"MBConv-{i + 1} block", arch.replace(mbconv=tuple(stages))))
    for i, s in enumerate(arch.transformer):
        if s.depth > 1:
            stages = list(arch.transformer)
            stages[i] = type(s)(s.width, s.depth - 1, s.heads, s.mlp_ratio)
            out.append((f"Transformer-{i + 1} layer", arch.replace(transformer=tuple(stages))))
    if arch.num_transformer_stages > 1:
        n = arch.num_transformer_stages
        out.append((f"Transformer-{n} stage", arch.replace(transformer=arch.transformer[:-1])))
    return out


def latency_impact(arch: Arch, accuracy_fn: Callable[[Arch], float], latency_model: Any,
                   space: Any = None) -> list[dict[str, Any]]:
    """Eq. 7 rows, sorted by impact (lowest first: most latency saved per accuracy point lost).

    With `space` given, removals that leave the space (e.g. below its minimum depth) are skipped.
    """
    candidates = [(name, a) for name, a in removable_modules(arch) if space is None or space.contains(a)]
    archs = [arch] + [a for _, a in candidates]
    lat = latency_model.predict(archs)
    acc_full = float(accuracy_fn(arch))
    rows = []
    for (name, reduced), lat_reduced in zip(candidates, lat[1:]):
        acc = float(accuracy_fn(reduced))
        d_acc, d_lat = acc_full - acc, float(lat[0] - lat_reduced)
        rows.append({"module": name, "accuracy": acc, "accuracy_drop": d_acc, "latency_ms": float(lat_reduced),
                     "latency_drop_ms": d_lat, "impact": d_acc / d_lat if d_lat > 0 else math.inf,
                     "arch": reduced.key()})
    return sorted(rows, key=lambda r: r["impact"])


def impact_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of `latency_impact` rows."""
    lines = ["| module removed | accuracy drop (pt) | latency drop (ms) | impact (pt/ms) |", "|---|---|---|---|"]
    lines += [f"| {r['module']} | {r['accuracy_drop']:.2f} | {r['latency_drop_ms']:.3f} | {r['impact']:.3f} |"
              for r in rows]
    return "\n".join(lines)
