"""Subnet sampling distributions for supernet training (`TrainConfig.arch_distribution`).

`per_dimension` (the default, paper Eq. 4-5) draws every searched dimension uniformly, so the
number of transformer stages is 3 or 4 with probability 1/2 each, although 3-stage archs are only
about 2% of the XXS space (the fourth stage multiplies the count by its ~48 choices).
`uniform_arch` first draws the stage count in proportion to how many archs have it, then every
other dimension uniformly: every arch of the space is equally likely (the width constraint is
met by rejection, which keeps the draw uniform among valid archs).
"""

from __future__ import annotations

import dataclasses
import functools
import random

from autovit.arch import Arch
from autovit.errors import AutovitError
from autovit.space import SearchSpace

ARCH_DISTRIBUTIONS = ("per_dimension", "uniform_arch")  # TrainConfig.arch_distribution


@functools.lru_cache(maxsize=32)
def stage_count_weights(space: SearchSpace) -> dict[int, int]:
    """Number of valid archs of `space` per number of transformer stages."""
    return {n: dataclasses.replace(space, num_transformer_stages=(n,)).cardinality()
            for n in space.num_transformer_stages}


def sample_arch(space: SearchSpace, rng: random.Random, distribution: str = "per_dimension") -> Arch:
    """One subnet of `space` drawn by `distribution` (see the module docstring)."""
    if distribution == "per_dimension":
        return space.sample(rng)
    if distribution == "uniform_arch":
        weights = stage_count_weights(space)
        n = rng.choices(list(weights), weights=list(weights.values()))[0]
        return dataclasses.replace(space, num_transformer_stages=(n,)).sample(rng)
    raise AutovitError(f"unknown arch_distribution '{distribution}'", hint=f"use one of {ARCH_DISTRIBUTIONS}")
