"""SearchSpace: YAML loading and its errors, sampling, mutation, crossover, exact cardinality."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from autovit.arch import Arch
from autovit.costs import count_params
from autovit.errors import SpaceError
from autovit.registry import paper_arch
from autovit.space import BUILTIN_SPACES, SearchSpace, is_nondecreasing

# A tiny space with overlapping transformer widths, so the constraint removes some archs.
TINY_YAML = """
name: tiny
resolution: [32, 64]
stem_width: [8]
mbconv:
  - {width: [8, 16], depth: [1], expansion: [1, 2], kernel: [3]}
  - {width: [16], depth: [1, 2], expansion: [1], kernel: [3, 5]}
  - {width: [16], depth: [1], expansion: [2], kernel: [3]}
transformer:
  - {width: [16, 32, 48], depth: [1, 2], heads: [1, 2], mlp_ratio: [2]}
  - {width: [16, 32], depth: [1], heads: [1], mlp_ratio: [1.5, 2]}
  - {width: [16, 32, 48], depth: [1], heads: [2], mlp_ratio: [2]}
num_transformer_stages: [1, 2, 3]
head_width: [32, 64]
constraints: {nondecreasing_widths: true}
"""


@pytest.fixture
def tiny() -> SearchSpace:
    return SearchSpace.from_yaml_text(TINY_YAML)


def _brute_force_count(space: SearchSpace, constrained: bool) -> int:
    """Counts archs by explicit enumeration of the unconstrained product, filtering by hand."""
    n = 0
    for arch in space.with_constraint(False).enumerate():
        widths = [s.width for s in arch.transformer]
        if not constrained or widths == sorted(widths):
            n += 1
    return n


# ------------------------------------------------------------------ loading
def test_builtin_spaces_share_one_layout() -> None:
    layouts = {SearchSpace.builtin(n).layout for n in BUILTIN_SPACES}
    assert len(layouts) == 1  # so a smaller space can inherit weights from a larger supernet


@pytest.mark.parametrize("name", BUILTIN_SPACES)
def test_builtin_space_yaml_round_trip(name: str, tmp_path: Path) -> None:
    space = SearchSpace.builtin(name)
    assert SearchSpace.from_yaml_text(space.to_yaml()) == space
    path = tmp_path / "space.yaml"
    path.write_text(space.to_yaml())
    assert SearchSpace.load(str(path)) == space == SearchSpace.load(name.upper())


def test_table1_choices_are_included(space: SearchSpace) -> None:
    """Each space is Table 1 united with Table 5 (so the paper's model is a member)."""
    table1 = {
        "xxs": dict(t_width=[(48, 64), (64, 80), (80, 96), (96, 112)], heads=(2, 3, 4), head=(1000, 1280)),
        "xs": dict(t_width=[(64, 80), (80, 96), (96, 112), (112, 128)], heads=(4, 5, 6), head=(1000, 1280)),
        "s": dict(t_width=[(64, 96), (96, 128), (128, 160), (160, 192)], heads=(7, 8, 9), head=(1280, 1560)),
    }[space.name]
    for c, widths in zip(space.transformer, table1["t_width"]):
        assert set(widths) <= set(c.width)
        assert c.heads == table1["heads"] and {1.5, 2} <= set(c.mlp_ratio) and c.depth == (2, 3, 4, 5)
    assert space.head_width == table1["head"] and space.num_transformer_stages == (3, 4)
    assert all(c.expansion == (1, 2) and c.kernel == (3, 5) for c in space.mbconv)
    assert space.contains(paper_arch(space.name))


def _yaml_with(change: dict) -> str:
    data = yaml.safe_load(TINY_YAML)
    data.update(change)
    return yaml.safe_dump(data)


@pytest.mark.parametrize("text,message", [
    ("name: [unclosed", "malformed YAML at line"),
    ("- just\n- a list", "must be a YAML mapping"),
    (_yaml_with({"colour": 1}), "unknown field 'colour'"),
    (TINY_YAML.replace("name: tiny\n", ""), "missing the field 'name'"),
    (TINY_YAML.replace("head_width: [32, 64]", "head_width: []"), "'head_width' must be a non-empty list"),
    (TINY_YAML.replace("head_width: [32, 64]", "head_width: [32, big]"), "invalid choice 'big'"),
    (TINY_YAML.replace("stem_width: [8]", "stem_width: [8, 8]"), "lists a choice twice"),
    (TINY_YAML.replace("depth: [1, 2], heads", "depth: [1.5], heads"), "invalid choice 1.5"),
    (TINY_YAML.replace("kernel: [3, 5]}", "kernel: [3, 5], speed: [1]}"), "unknown dimension 'speed' in mbconv[1]"),
    (TINY_YAML.replace(", mlp_ratio: [1.5, 2]}", "}"), "'transformer[1]' is missing the dimension 'mlp_ratio'"),
    (TINY_YAML.replace("[1, 2, 3]", "[2, 4]"), "asks for more stages than the 3 listed"),
    (TINY_YAML.replace("nondecreasing_widths: true", "sorted: true"), "'constraints' may only hold"),
    (_yaml_with({"layout": {"head_dim": "big"}}), "'layout.head_dim' must be an integer"),
    (_yaml_with({"layout": {"mbconv_strides": [1, 2]}}), "layout.mbconv_strides lists 2 strides"),
    (_yaml_with({"layout": {"activation": "swish"}}), "unbuildable architectures"),
])
def test_bad_yaml_gives_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_yaml_text(text, source="my.yaml")
    assert message in str(err.value) and str(err.value).startswith("my.yaml: ")


def test_unknown_space_name_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="unknown search space 'xss'") as err:
        SearchSpace.load("xss")
    assert "xxs, xs, s" in err.value.hint
    with pytest.raises(SpaceError, match="unknown search space 'm'"):
        SearchSpace.builtin("m")
    with pytest.raises(SpaceError, match="search space file not found"):
        SearchSpace.load(tmp_path / "nope.yaml")
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(SpaceError, match="not a text file"):
        SearchSpace.load(blob)


def test_parse_arch_from_dict_json_and_path(tmp_path: Path) -> None:
    space = SearchSpace.builtin("xxs")
    arch = paper_arch("xxs")
    d = arch.to_dict()
    del d["layout"]
    (tmp_path / "a.json").write_text(arch.to_json())
    assert space.parse_arch(d) == space.parse_arch(arch.to_json()) == space.parse_arch(tmp_path / "a.json") == arch
    assert space.parse_arch(str(tmp_path / "a.json")) == arch


# ------------------------------------------------------------------ sampling, mutation, crossover
def test_samples_are_valid_and_nondecreasing(space: SearchSpace, rng: random.Random) -> None:
    seen_stages = set()
    for _ in range(200):
        arch = space.sample(rng)
        space.validate(arch)
        assert is_nondecreasing(arch)
        seen_stages.add(arch.num_transformer_stages)
    assert seen_stages == {3, 4}


@pytest.mark.parametrize("name", ["xs", "s"])
def test_without_constraint_decreasing_widths_occur(name: str, rng: random.Random) -> None:
    free = SearchSpace.builtin(name).with_constraint(False)
    archs = [free.sample(rng) for _ in range(200)]
    assert all(free.contains(a) for a in archs)
    assert any(not is_nondecreasing(a) for a in archs)


def test_xxs_widths_can_never_decrease() -> None:
    # XXS stage widths {48,64} {64,80} {80,96} {96,112} never overlap out of order.
    xxs = SearchSpace.builtin("xxs")
    assert xxs.cardinality(True) == xxs.cardinality(False)


def test_sampling_is_deterministic_from_a_seed(space: SearchSpace) -> None:
    a = [space.sample(random.Random(7)) for _ in range(3)]
    b = [space.sample(random.Random(7)) for _ in range(3)]
    assert a == b
    r1, r2 = random.Random(1), random.Random(1)
    assert [space.sample(r1) for _ in range(20)] == [space.sample(r2) for _ in range(20)]


def test_sampling_covers_every_choice(tiny: SearchSpace, rng: random.Random) -> None:
    archs = [tiny.sample(rng) for _ in range(400)]
    assert {a.resolution for a in archs} == set(tiny.resolution)
    assert {a.mbconv[0].expansion for a in archs} == set(tiny.mbconv[0].expansion)
    assert {a.transformer[0].width for a in archs} == set(tiny.transformer[0].width)
    assert {a.num_transformer_stages for a in archs} == set(tiny.num_transformer_stages)


def test_mutation_and_crossover_are_valid(space: SearchSpace, rng: random.Random) -> None:
    parents = [space.sample(rng) for _ in range(20)]
    for a, b in zip(parents, parents[1:]):
        child = space.crossover(a, b, rng)
        space.validate(child)
        # Every block of the child comes from one of the parents.
        assert all(m in (pa, pb) for m, pa, pb in zip(child.mbconv, a.mbconv, b.mbconv))
        mutant = space.mutate(a, rng, p_depth=0.5, p_block=0.5)
        space.validate(mutant)
        assert is_nondecreasing(mutant) and is_nondecreasing(child)


def test_mutation_probabilities(space: SearchSpace, rng: random.Random) -> None:
    arch = space.sample(rng)
    assert all(space.mutate(arch, rng, p_depth=0.0, p_block=0.0) == arch for _ in range(10))
    changed = sum(space.mutate(arch, rng, p_depth=1.0, p_block=1.0) != arch for _ in range(20))
    assert changed >= 18
    # p_depth alone only changes depths and the stage count, never widths.
    for _ in range(20):
        m = space.mutate(arch, rng, p_depth=1.0, p_block=0.0)
        assert [s.width for s in m.mbconv] == [s.width for s in arch.mbconv]
        assert m.head_width == arch.head_width and m.stem_width == arch.stem_width


def test_mutation_and_crossover_are_deterministic(space: SearchSpace) -> None:
    def run(seed: int) -> list[Arch]:
        rng = random.Random(seed)
        pop = [space.sample(rng) for _ in range(6)]
        return [space.mutate(p, rng) for p in pop] + [space.crossover(a, b, rng) for a, b in zip(pop, pop[1:])]

    assert run(3) == run(3)
    assert run(3) != run(4)


# ------------------------------------------------------------------ counting
@pytest.mark.parametrize("constrained", [True, False])
def test_cardinality_formula_equals_enumeration(tiny: SearchSpace, constrained: bool) -> None:
    expected = _brute_force_count(tiny, constrained)
    assert tiny.cardinality(constrained) == expected
    assert len(set(tiny.with_constraint(constrained).enumerate())) == expected


def test_cardinality_by_hand(tiny: SearchSpace) -> None:
    # Fixed part: resolution 2 x head 2 x mbconv (2*2) * (2*2) * 1 = 64. Per transformer stage
    # (depth x heads x mlp): 4, 2, 1. Width sequences: 1 stage 3 (3 kept); 2 stages 6 (3 kept:
    # 16<=16, 16<=32, 32<=32); 3 stages 18 (7 kept).
    assert tiny.cardinality(False) == 64 * (3 * 4 + 6 * 8 + 18 * 8) == 13056
    assert tiny.cardinality(True) == 64 * (3 * 4 + 3 * 8 + 7 * 8) == 5888


def test_builtin_cardinalities() -> None:
    """Exact numbers quoted in docs/architecture.md (the paper says about 1e16 -> 1e10)."""
    got = {n: (SearchSpace.builtin(n).cardinality(False), SearchSpace.builtin(n).cardinality(True))
           for n in BUILTIN_SPACES}
    assert got == {"xxs": (133177540608, 133177540608),
                   "xs": (1506655862784, 710903070720),
                   "s": (1506655862784, 710903070720)}


def test_width_extremes_match_brute_force(tiny: SearchSpace) -> None:
    params = [count_params(a) for a in tiny.enumerate()]
    small, large = tiny.width_extremes()
    assert (count_params(small), count_params(large)) == (min(params), max(params))
    assert count_params(tiny.smallest()) == min(params)


def test_largest_and_smallest_are_members(space: SearchSpace) -> None:
    small, large = space.width_extremes()
    for arch in (space.smallest(), space.largest(), small, large):
        space.validate(arch)
    assert count_params(space.smallest()) == count_params(small) < count_params(large) == count_params(space.largest())
