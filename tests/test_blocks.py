"""Block kinds (`autovit.blocks`) and the squeeze-excite MBConv option, end to end: space choice,
arch JSON and keys, closed-form costs, exact supernet extraction, latency signatures, genome."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from autovit.arch import Arch, MBConvStage
from autovit.blocks import MBCONV, STAGE_KINDS, TRANSFORMER, table_kinds
from autovit.blocks.mbconv import block_counts, se_width
from autovit.costs import count_macs, count_params
from autovit.errors import ArchError, SpaceError
from autovit.latency.blocks import KINDS, arch_blocks, space_blocks
from autovit.latency.imputation import block_features
from autovit.latency.lut import LatencyTableError, synthetic_table
from autovit.latency.predictor import LatencyModel
from autovit.model import build_model
from autovit.search.genome import Genome
from autovit.space import SearchSpace
from autovit.supernet import Supernet
from cost_toys import counted

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def se_space() -> SearchSpace:
    return SearchSpace.from_yaml(DATA / "se_space.yaml")


def _se_arch(space: SearchSpace, se: float) -> Arch:
    arch = space.largest()
    mb = tuple(MBCONV.replace(s, se=se if se in c.se else 0) for s, c in zip(arch.mbconv, space.mbconv))
    return space.validate(arch.replace(mbconv=mb))


# ---------------------------------------------------------------------------- kinds and genes
def test_registry_lists_the_kinds_and_table_kinds_in_network_order() -> None:
    assert [k.name for k in STAGE_KINDS] == ["mbconv", "uib", "transformer", "mqa"]
    assert table_kinds() == KINDS == ("stem", "mbconv", "uib", "tfixed", "attn", "mlp", "mqa", "head")
    assert MBCONV.field_names == ("width", "depth", "expansion", "kernel", "se")
    assert TRANSFORMER.field_names == ("width", "depth", "heads", "mlp_ratio")


def test_fields_and_choices_derive_from_the_gene_dataclass() -> None:
    """A kind declares its gene once: fields (types, defaults) and the choices dataclass follow."""
    assert [(f.name, f.number, f.default) for f in MBCONV.fields] == [
        ("width", int, None), ("depth", int, None), ("expansion", float, None), ("kernel", int, None), ("se", float, 0)]
    assert MBConvStage(16, 2, 2.0, 3, 0.0).expansion == 2 and isinstance(MBConvStage(16, 2, 2.0, 3).expansion, int)
    assert MBCONV.choices(width=(16,), depth=(1,), expansion=(2,), kernel=(3,)).se == (0,)
    for name in ("mnv4_s", "xxs"):  # spaces (with their choices dataclasses) pickle for worker processes
        space = SearchSpace.load(name)
        assert pickle.loads(pickle.dumps(space)) == space


def test_se_off_archs_keep_their_json_and_keys() -> None:
    stage = MBConvStage(16, 2, 2, 3)
    assert stage.se == 0 and MBCONV.to_dict(stage) == {"width": 16, "depth": 2, "expansion": 2, "kernel": 3}
    assert MBCONV.key(stage) == "16x2e2k3"
    assert MBCONV.key(MBCONV.replace(stage, se=0.25)) == "16x2e2k3se0.25"
    # An arch file written before squeeze-excite existed loads unchanged.
    arch = Arch.load(ROOT / "benchmarks" / "results" / "cifar10_e2e_arch.json")
    assert all(s.se == 0 for s in arch.mbconv)
    assert Arch.from_json(arch.to_json()) == arch and "se" not in arch.to_json()


def test_se_arch_round_trips_and_bad_values_are_named(se_space: SearchSpace) -> None:
    arch = _se_arch(se_space, 0.25)
    data = json.loads(arch.to_json())
    assert data["mbconv"][0]["se"] == 0.25 and "se" not in data["mbconv"][2]
    assert Arch.from_dict(data) == arch and "se0.25" in arch.key()
    data["mbconv"][0]["se"] = 2
    with pytest.raises(ArchError, match=r"mbconv\[0\]\.se must be 0"):
        Arch.from_dict(data)
    data["mbconv"][0]["se"] = "yes"
    with pytest.raises(ArchError, match=r"'mbconv\[0\]\.se' must be a number"):
        Arch.from_dict(data)
    outside = arch.replace(mbconv=(MBCONV.replace(arch.mbconv[0], se=0.5),) + arch.mbconv[1:])
    with pytest.raises(ArchError, match=r"mbconv\[0\]\.se = 0.5 is outside the search space"):
        se_space.validate(outside)


# ---------------------------------------------------------------------------- the space choice
def test_se_choices_parse_sample_and_count(se_space: SearchSpace) -> None:
    assert se_space.mbconv[0].se == (0, 0.25) and se_space.mbconv[2].se == (0,)
    assert "se" not in se_space.to_dict()["mbconv"][2]
    assert SearchSpace.from_dict(se_space.to_dict()) == se_space
    rng = random.Random(0)
    seen = {s.se for _ in range(100) for s in se_space.sample(rng).mbconv[:2]}
    assert seen == {0, 0.25, 0.5}
    assert se_space.cardinality() == sum(1 for _ in se_space.enumerate())
    no_se = se_space.to_dict()
    for stage in no_se["mbconv"]:
        stage.pop("se", None)
    assert se_space.cardinality() == SearchSpace.from_dict(no_se).cardinality() * 2 * 3
    bad = se_space.to_dict()
    bad["mbconv"][0]["se"] = [0, "x"]
    with pytest.raises(SpaceError, match=r"mbconv\[0\]\.se' has an invalid choice"):
        SearchSpace.from_dict(bad)


def test_paper_spaces_have_se_off() -> None:
    for name in ("xxs", "xs", "s"):
        space = SearchSpace.builtin(name)
        assert all(c.se == (0,) for c in space.mbconv)
        assert all("se" not in c for c in space.to_dict()["mbconv"])


# ---------------------------------------------------------------------------- costs
def test_se_closed_form_costs_match_the_built_network(se_space: SearchSpace) -> None:
    rng = random.Random(1)
    archs = [_se_arch(se_space, 0.25), _se_arch(se_space, 0.5)] + [se_space.sample(rng) for _ in range(6)]
    assert any(s.se for a in archs for s in a.mbconv)
    for arch in archs:
        assert counted(build_model(arch, 10), arch.resolution) == (count_params(arch, 10), count_macs(arch, 10)), \
            arch.key()


def test_se_block_counts_add_exactly_the_two_se_convs() -> None:
    off, on = block_counts(16, 24, 2, 3, 2, 8), block_counts(16, 24, 2, 3, 2, 8, se=0.25)
    rd = se_width(32, 0.25)
    assert rd == 8
    assert on.params - off.params == 32 * rd + rd + rd * 32 + 32
    assert on.macs - off.macs == 2 * 32 * rd and on.depthwise_macs == off.depthwise_macs


# ---------------------------------------------------------------------------- supernet
@pytest.mark.parametrize("train", [False, True])
def test_se_supernet_subnets_extract_exactly(se_space: SearchSpace, train: bool) -> None:
    torch.manual_seed(0)
    net = Supernet(se_space, num_classes=10)
    with torch.no_grad():  # non-trivial SE biases, so that a wrong slice shows
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0, 0.5)
    net.train(train)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rng = random.Random(2)
    archs = [_se_arch(se_space, 0.25), _se_arch(se_space, 0), se_space.smallest()]
    archs += [se_space.sample(rng) for _ in range(5)]
    for arch in archs:
        net.set_active(arch)
        static = net.extract()
        assert static.training == train
        assert net.active_num_params() == count_params(arch, 10) == sum(p.numel() for p in static.parameters())
        with torch.no_grad():
            assert (net(x) - static(x)).abs().max().item() <= 1e-5, arch.key()


def test_se_supernet_stores_the_largest_se_block(se_space: SearchSpace) -> None:
    net = Supernet(se_space, num_classes=10)
    assert net.num_params() == count_params(se_space.largest(), 10)
    assert not any(".se." in k for k in Supernet("xxs", num_classes=10).state_dict())


# ---------------------------------------------------------------------------- latency signatures
def test_se_latency_signatures(se_space: SearchSpace) -> None:
    on = [str(s) for s, _ in arch_blocks(_se_arch(se_space, 0.25), 10) if s.kind == "mbconv"]
    off = [str(s) for s, _ in arch_blocks(_se_arch(se_space, 0), 10) if s.kind == "mbconv"]
    assert any("se=0.25" in s for s in on) and not any("se=" in s for s in off)
    sigs = {str(s) for s in space_blocks(se_space, num_classes=10)}
    assert set(on) | set(off) <= sigs
    se_sig = next(s for s, _ in arch_blocks(_se_arch(se_space, 0.25), 10) if s.get("se"))
    plain = next(s for s, _ in arch_blocks(_se_arch(se_space, 0), 10) if s.kind == "mbconv")
    f_on, f_off = block_features(se_sig), block_features(plain)
    assert f_on[0] > f_off[0] and f_on[1] == f_off[1]


def test_a_table_without_se_entries_serves_se_off_archs(se_space: SearchSpace) -> None:
    data = se_space.to_dict()
    for stage in data["mbconv"]:
        stage.pop("se", None)
    plain_space = SearchSpace.from_dict(data)
    model = LatencyModel(synthetic_table(plain_space, num_classes=10))
    off = _se_arch(se_space, 0)
    assert model.predict([off])[0] == model.predict([plain_space.validate(off)])[0] > 0
    with pytest.raises(LatencyTableError):
        model.predict([_se_arch(se_space, 0.25)])


# ---------------------------------------------------------------------------- genome
def test_genome_has_one_column_per_gene_field_and_exact_costs(se_space: SearchSpace) -> None:
    genome = Genome(se_space, num_classes=10)
    assert len(genome.sizes) == 2 + 3 * 5 + 1 + 2 * 4 + 1
    genes = genome.unique(genome.sample(300, np.random.default_rng(0)))
    params, macs = genome.costs(genes)
    archs = genome.decode_many(genes)
    assert {s.se for a in archs for s in a.mbconv} == {0, 0.25, 0.5}
    assert params.tolist() == [count_params(a, 10) for a in archs]
    assert macs.tolist() == [count_macs(a, 10) for a in archs]
