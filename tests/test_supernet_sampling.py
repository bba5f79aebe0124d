"""The subnet sampling distributions of supernet training (autovit.supernet.sampling)."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest

from autovit.errors import AutovitError
from autovit.space import SearchSpace
from autovit.supernet.sampling import sample_arch, stage_count_weights
from autovit.train.config import TrainConfig
from autovit.train.trainer import step_archs


def cifar_space() -> SearchSpace:
    return SearchSpace.from_yaml(Path(__file__).resolve().parent.parent / "src" / "autovit" / "spaces" / "xxs_cifar.yaml")


def test_three_stage_archs_are_two_percent_of_the_space_but_half_the_per_dimension_draws():
    space = cifar_space()
    weights = stage_count_weights(space)
    assert sum(weights.values()) == space.cardinality()
    share3 = weights[3] / space.cardinality()
    assert 0.019 < share3 < 0.021
    rng = random.Random(0)
    per_dim = collections.Counter(len(sample_arch(space, rng).transformer) for _ in range(2000))
    uniform = collections.Counter(len(sample_arch(space, rng, "uniform_arch").transformer) for _ in range(2000))
    assert 900 < per_dim[3] < 1100          # binomial(2000, 0.5): +-4.5 sd
    assert uniform[3] < 70                  # binomial(2000, 0.02): mean 41, sd 6.3
    assert all(space.contains(sample_arch(space, rng, "uniform_arch")) for _ in range(50))


def test_default_distribution_keeps_the_old_draws_and_the_option_is_checked():
    space = cifar_space()
    old = [space.sample(random.Random(s)).key() for s in range(5)]
    assert [sample_arch(space, random.Random(s)).key() for s in range(5)] == old
    assert step_archs(space, 3, 4, "uniform") == step_archs(space, 3, 4, "uniform", 2, "per_dimension")
    assert step_archs(space, 3, 4, "sandwich", 2, "uniform_arch")[0] == space.largest()
    with pytest.raises(AutovitError, match="arch_distribution"):
        TrainConfig().replace(arch_distribution="log_uniform")
