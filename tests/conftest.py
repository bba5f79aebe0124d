"""Shared test fixtures. Tests run on CPU with small tensors; torch uses one thread per worker."""

from __future__ import annotations

import random

import pytest
import torch

from autovit.space import SearchSpace

torch.set_num_threads(1)

SPACES = ("xxs", "xs", "s")


@pytest.fixture(params=SPACES)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return SearchSpace.builtin(request.param)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)
