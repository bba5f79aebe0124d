"""Eq. 7 latency impact of the modules of one arch: accuracy lost per millisecond saved when a
module is removed, L_impact(m) = (A(M) - A(M \\ m)) / (L(M) - L(M \\ m)).

A "module" is one block of a stage (its depth minus one) or a whole last transformer stage;
a removal is only scored when the smaller arch is still in the space (so the supernet can
evaluate it with inherited weights).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from autovit.arch import Arch
from autovit.space import SearchSpace


@dataclass(frozen=True)
class ModuleImpact:
    module: str
    removed: str  # what was removed, in words
    delta_accuracy: float  # A(M) - A(M \ m), points
    delta_latency_ms: float  # L(M) - L(M \ m)
    impact: float  # Eq. 7: points per ms (nan when removing it saves no time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def removals(arch: Arch, space: SearchSpace) -> list[tuple[str, str, Arch]]:
    """(module, description, arch without it) for every removable module of `arch`."""
    out: list[tuple[str, str, Arch]] = []
    for i, s in enumerate(arch.mbconv):
        smaller = arch.replace(mbconv=arch.mbconv[:i] + (replace(s, depth=s.depth - 1),)
                               + arch.mbconv[i + 1:]) if s.depth > 1 else None
        if smaller is not None and space.contains(smaller):
            out.append((f"mbconv{i + 1}", f"one MBConv block ({s.depth} -> {s.depth - 1})", smaller))
    for i, s in enumerate(arch.transformer):
        if s.depth > 1:
            tr = arch.transformer[:i] + (replace(s, depth=s.depth - 1),) \
                + arch.transformer[i + 1:]
            smaller = arch.replace(transformer=tr)
            if space.contains(smaller):
                out.append((f"transformer{i + 1}", f"one transformer layer ({s.depth} -> {s.depth - 1})", smaller))
    n = arch.num_transformer_stages
    if n > 1:
        smaller = arch.replace(transformer=arch.transformer[:-1])
        if space.contains(smaller):
            out.append((f"transformer{n}", "the whole last transformer stage", smaller))
    return out


def latency_impact(arch: Arch, space: SearchSpace, accuracy_fn: Callable[[Arch], float],
                   latency_fn: Callable[[Arch], float]) -> list[ModuleImpact]:
    """Eq. 7 for every removable module of `arch`, most latency-efficient modules first."""
    base_acc, base_lat = accuracy_fn(arch), latency_fn(arch)
    rows = []
    for module, what, smaller in removals(arch, space):
        d_acc = base_acc - accuracy_fn(smaller)
        d_lat = base_lat - latency_fn(smaller)
        rows.append(ModuleImpact(module, what, d_acc, d_lat, d_acc / d_lat if d_lat > 0 else math.nan))
    return sorted(rows, key=lambda r: (math.isnan(r.impact), -r.impact if not math.isnan(r.impact) else 0.0))
