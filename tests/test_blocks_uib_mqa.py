"""The UIB block kind (MobileNetV4's Universal Inverted Bottleneck) and the mnv4 space family: genes,
JSON and keys, space YAML, sampling / mutation / cardinality, closed-form costs against counted
modules, exact supernet extraction (eval and train mode), latency-table signatures, 0 attention
stages."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from autovit.arch import Arch, UIBStage
from autovit.blocks import MQA, UIB, MQAStage, kind_of
from autovit.blocks.mqa import layer_counts
from autovit.blocks.uib import block_counts, sig_counts
from autovit.costs import count_macs, count_params
from autovit.errors import ArchError, SpaceError
from autovit.latency.blocks import BlockSig, arch_blocks, build_block, space_blocks
from autovit.latency.imputation import block_features
from autovit.model import UIB as UIBBlock, MQALayer, build_model, multi_query_attention
from autovit.space import FAMILY_SPACES, SearchSpace
from autovit.supernet import Supernet
from cost_toys import counted

RICH = """
name: rich_uib
resolution: [32]
stem_width: [8, 12]
uib:
  - {width: [8, 16], depth: [1, 2], expansion: [1, 2], start_kernel: [0, 3], mid_kernel: [3, 5]}
  - {width: [16, 24], depth: [1, 2], expansion: [2, 3], start_kernel: [0, 3, 5], mid_kernel: [0, 3]}
  - {width: [24, 32], depth: [1, 2], expansion: [2], start_kernel: [0, 5], mid_kernel: [3]}
mqa:
  - {width: [32, 40], depth: [1, 2], heads: [1, 2], kv_stride: [1, 2], ffn_ratio: [1, 2]}
num_transformer_stages: [0, 1]
head_width: [32, 48]
layout: {mbconv_strides: [2, 1, 2], transformer_strides: [1], head_dim: 8, patch_size: 2,
         activation: relu, head_expansion: 2}
"""

TINY = """
name: tiny_uib
resolution: [16]
stem_width: [8]
uib:
  - {width: [8, 16], depth: [1, 2], expansion: [2], start_kernel: [0, 3], mid_kernel: [3]}
  - {width: [16], depth: [1, 2], expansion: [2], start_kernel: [0, 3], mid_kernel: [0, 3]}
transformer:
  - {width: [16, 24], depth: [1], heads: [1, 2], mlp_ratio: [2]}
num_transformer_stages: [0, 1]
head_width: [32]
layout: {mbconv_strides: [2, 1], transformer_strides: [2], head_dim: 8, patch_size: 2}
"""


@pytest.fixture(scope="module")
def rich() -> SearchSpace:
    return SearchSpace.from_yaml_text(RICH)


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.from_yaml_text(TINY)


def _with_attention(space: SearchSpace, n: int, seed: int = 0) -> Arch:
    rng = random.Random(seed)
    while True:
        arch = space.sample(rng)
        if arch.num_transformer_stages == n:
            return arch


def _all_variants(space: SearchSpace) -> list[Arch]:
    """The largest arch with every stage of the last slot set to each UIB variant it allows."""
    out = []
    base = space.largest()
    for a in space.mbconv[-1].start_kernel:
        for k in space.mbconv[-1].mid_kernel:
            last = UIB.replace(base.mbconv[-1], start_kernel=a, mid_kernel=k)
            try:
                out.append(space.validate(base.replace(mbconv=base.mbconv[:-1] + (last,))))
            except ArchError:
                pass  # a strided FFN block
    return out


# ---------------------------------------------------------------------------- genes and JSON
def test_uib_gene_variants_key_and_json_round_trip(rich: SearchSpace) -> None:
    assert UIB.field_names == ("width", "depth", "expansion", "start_kernel", "mid_kernel")
    assert [UIBStage(16, 1, 4, a, k).variant for a, k in ((0, 3), (3, 0), (3, 5), (0, 0))] == \
        ["IB", "ConvNext", "ExtraDW", "FFN"]
    stage = UIBStage(16, 2, 4.0, 3, 0)
    assert UIB.key(stage) == "16x2e4a3m0" and UIB.to_dict(stage) == {
        "width": 16, "depth": 2, "expansion": 4, "start_kernel": 3, "mid_kernel": 0}
    arch = _with_attention(rich, 0)
    data = arch.to_dict()
    assert "uib" in data and "mbconv" not in data and data["num_transformer_stages"] == 0
    assert Arch.from_json(arch.to_json()) == arch and rich.parse_arch(arch.to_json()) == arch
    assert kind_of(Arch.from_dict(data).mbconv[0]) is UIB


def test_bad_uib_archs_are_named(rich: SearchSpace) -> None:
    data = rich.smallest().to_dict()
    data["uib"][0]["mid_kernel"] = 4
    with pytest.raises(ArchError, match=r"uib\[0\]\.mid_kernel must be 0 .* odd"):
        Arch.from_dict(data)
    data["uib"][0].update(mid_kernel=0, start_kernel=0)  # slot 0 is stride 2: a strided FFN block
    with pytest.raises(ArchError, match=r"uib\[0\] is a stride-2 stage but has neither"):
        Arch.from_dict(data)
    both = rich.smallest().to_dict()
    both["mbconv"] = both["uib"]
    with pytest.raises(ArchError, match="both 'mbconv' and 'uib'"):
        Arch.from_dict(both)
    # A UIB arch is outside a paper (MBConv) space, with the reason.
    xxs = SearchSpace.builtin("xxs")
    uib_arch = rich.largest().replace(layout=xxs.layout, resolution=256, stem_width=16)
    with pytest.raises(ArchError, match="uib conv stages but the space 'xxs' has mbconv"):
        xxs.validate(uib_arch)


# ---------------------------------------------------------------------------- spaces
@pytest.mark.parametrize("name", FAMILY_SPACES)
def test_family_space_yaml_round_trip_and_zero_attention_stages(name: str) -> None:
    space = SearchSpace.builtin(name)
    assert SearchSpace.from_yaml_text(space.to_yaml()) == space == SearchSpace.load(name.upper())
    assert space.conv_kind is UIB and 0 in space.num_transformer_stages
    assert "uib" in space.to_dict() and "mbconv" not in space.to_dict()
    assert space.smallest().num_transformer_stages == 0 and space.largest().num_transformer_stages >= 1


def test_mnv4_s_spans_mobilenetv4_conv_small() -> None:
    """timm's mobilenetv4_conv_small (3,774,024 params, ~0.19 GMACs at 224) lies inside the space's
    range, and the smallest subnet is at most 25% smaller in params."""
    small, large = SearchSpace.builtin("mnv4_s").width_extremes()
    assert count_params(small) == 2914800 and count_macs(small) == 110473856
    assert count_params(small) <= 3774024 <= count_params(large)
    assert count_params(small) >= 0.75 * 3774024


def test_unbuildable_uib_space_is_a_clear_error() -> None:
    text = TINY.replace("start_kernel: [0, 3], mid_kernel: [3]}", "start_kernel: [0, 3], mid_kernel: [0, 3]}", 1)
    with pytest.raises(SpaceError, match="unbuildable .* stride-2 stage but has neither"):
        SearchSpace.from_yaml_text(text)
    with pytest.raises(SpaceError, match="unknown dimension 'kernel' in uib"):
        SearchSpace.from_yaml_text(TINY.replace("start_kernel: [0, 3], mid_kernel: [3]", "kernel: [3]", 1))


def test_cardinality_counts_zero_and_one_attention_stage(tiny: SearchSpace) -> None:
    # uib0: 2 widths x 2 depths x 2 start kernels = 8; uib1: 2 depths x 2 x 2 = 8;
    # 0 attention stages: 1, one stage: 2 widths x 2 heads = 4.
    assert tiny.cardinality() == 8 * 8 * (1 + 4) == 320
    archs = list(tiny.enumerate())
    assert len(archs) == len(set(archs)) == 320
    assert sum(a.num_transformer_stages == 0 for a in archs) == 64


def test_sampling_mutation_crossover_stay_valid(rich: SearchSpace) -> None:
    rng = random.Random(0)
    archs = [rich.sample(rng) for _ in range(200)]
    assert {a.num_transformer_stages for a in archs} == {0, 1}
    assert {s.variant for a in archs for s in a.mbconv} == {"IB", "ConvNext", "ExtraDW", "FFN"}
    for a, b in zip(archs, archs[1:]):
        for child in (rich.mutate(a, rng), rich.crossover(a, b, rng)):
            assert rich.validate(child) is child


# ---------------------------------------------------------------------------- costs
def test_uib_block_counts_by_hand() -> None:
    # ExtraDW, 16 -> 24, e 2 (hidden 32), start 3x3, mid 5x5, stride 2 on the mid conv, 8x8 input.
    c = block_counts(16, 24, 2, 3, 5, 2, 8)
    params = (9 * 16 + 32) + (16 * 32 + 64) + (25 * 32 + 64) + (32 * 24 + 48)
    macs = 9 * 16 * 64 + 16 * 32 * 64 + 25 * 32 * 16 + 32 * 24 * 16
    assert (c.params, c.macs, c.out_size) == (params, macs, 4)
    # ConvNext, stride 2: the stride moves to the start conv, the 1x1 convs run at 4x4.
    c = block_counts(16, 24, 2, 3, 0, 2, 8)
    assert c.out_size == 4 and c.macs == 9 * 16 * 16 + 16 * 32 * 16 + 32 * 24 * 16
    # FFN: two 1x1 convs only.
    c = block_counts(16, 16, 2, 0, 0, 1, 8)
    assert (c.params, c.depthwise_macs, c.dense_macs) == (16 * 32 + 64 + 32 * 16 + 32, 0, 2 * 16 * 32 * 64)


def test_closed_form_costs_match_the_built_network(rich: SearchSpace) -> None:
    rng = random.Random(1)
    archs = _all_variants(rich) + [rich.smallest()] + [rich.sample(rng) for _ in range(6)]
    assert {a.num_transformer_stages for a in archs} == {0, 1}
    for arch in archs:
        assert counted(build_model(arch, 10), arch.resolution) == (count_params(arch, 10), count_macs(arch, 10)), \
            arch.key()


# ---------------------------------------------------------------------------- supernet
@pytest.mark.parametrize("train", [False, True])
def test_supernet_subnets_extract_exactly(rich: SearchSpace, train: bool) -> None:
    torch.manual_seed(0)
    net = Supernet(rich, num_classes=10)
    with torch.no_grad():  # non-trivial BN affine and statistics, so that a wrong slice shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 1.5)
    net.train(train)
    assert net.num_params() == count_params(rich.largest(), 10)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rng = random.Random(2)
    archs = _all_variants(rich) + [rich.smallest(), _with_attention(rich, 0, 3), _with_attention(rich, 1, 4)]
    archs += [rich.sample(rng) for _ in range(4)]
    for arch in archs:
        net.set_active(arch)
        static = net.extract()
        assert static.training == train
        assert net.active_num_params() == count_params(arch, 10) == sum(p.numel() for p in static.parameters())
        with torch.no_grad():
            ref = static(x)
            assert (net(x) - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item()), arch.key()


def test_stride_moves_between_the_depthwise_convs() -> None:
    """In a stride-2 block the stride sits on the mid conv when there is one, else on the start one."""
    ib = UIBBlock(8, 8, 2, 3, 3, 2, "relu")
    assert ib.dw_start.conv.stride == (1, 1) and ib.dw_mid.conv.stride == (2, 2) and not ib.has_residual
    convnext = UIBBlock(8, 8, 2, 3, 0, 2, "relu")
    assert convnext.dw_start.conv.stride == (2, 2) and isinstance(convnext.dw_mid, torch.nn.Identity)
    assert convnext(torch.zeros(1, 8, 8, 8)).shape == (1, 8, 4, 4)


# ---------------------------------------------------------------------------- latency signatures
def test_latency_signatures(rich: SearchSpace) -> None:
    known = set(space_blocks(rich, num_classes=10))
    rng = random.Random(5)
    for arch in _all_variants(rich) + [rich.sample(rng) for _ in range(30)]:
        blocks = arch_blocks(arch, 10)
        assert {s for s, _ in blocks} <= known, arch.key()
        assert sum(n for s, n in blocks if s.kind == "uib") == sum(s.depth for s in arch.mbconv)
    sig = arch_blocks(rich.smallest(), 10)[1][0]
    assert str(sig) == "uib:a=0,act=relu,cin=8,cout=8,e=1,h=16,k=3,s=2"
    counts = sig_counts(sig)
    assert counts == block_counts(8, 8, 1, 0, 3, 2, 16)
    assert block_features(sig) == [counts.dense_macs, counts.depthwise_macs, counts.elements, 1.0]
    module, chs, side = build_block(sig, rich.layout)
    assert (chs, side) == (8, 16) and sum(p.numel() for p in module.parameters()) == counts.params
    assert {s.kind for s in known} == {"stem", "uib", "mbconv", "mqa", "head"}  # mbconv: MQA stage transitions


# ---------------------------------------------------------------------------- coarse-search genome
def test_genome_decodes_uib_archs_with_exact_costs(rich: SearchSpace) -> None:
    import numpy as np

    from autovit.search.genome import Genome

    genome = Genome(rich, num_classes=10)
    assert len(genome.sizes) == 2 + 3 * 5 + 1 + 5 + 1
    genes = genome.unique(genome.sample(300, np.random.default_rng(0)))
    archs = genome.decode_many(genes)
    assert {a.num_transformer_stages for a in archs} == {0, 1} and all(rich.contains(a) for a in archs)
    params, macs = genome.costs(genes)
    assert params.tolist() == [count_params(a, 10) for a in archs]
    assert macs.tolist() == [count_macs(a, 10) for a in archs]


# ---------------------------------------------------------------------------- Mobile MQA
def test_mqa_gene_key_json_and_bad_values(rich: SearchSpace) -> None:
    assert MQA.field_names == ("width", "depth", "heads", "kv_stride", "ffn_ratio")
    assert MQA.key(MQAStage(32, 2, 4, 2, 2.0)) == "32x2h4kv2f2"
    arch = _with_attention(rich, 1)
    data = arch.to_dict()
    assert "mqa" in data and "transformer" not in data and kind_of(arch.transformer[0]) is MQA
    assert Arch.from_json(arch.to_json()) == arch
    data["mqa"][0]["kv_stride"] = 3
    with pytest.raises(ArchError, match=r"mqa\[0\]\.kv_stride must be 1 .* or 2"):
        Arch.from_dict(data)
    data["transformer"] = data.pop("mqa")
    with pytest.raises(ArchError, match="unknown field 'ffn_ratio' in transformer"):
        Arch.from_dict(data)


def test_multi_query_attention_is_attention_with_one_shared_key_value_head() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3 * 8, 4, 4, generator=g), torch.randn(2, 8, 2, 2, generator=g), torch.randn(2, 8, 2, 2, generator=g)
    out = multi_query_attention(q, k, v, 3, 8, 8 ** -0.5)
    qh = q.reshape(2, 3, 8, 16).transpose(-2, -1)
    kh = k.flatten(2).transpose(-2, -1).unsqueeze(1).expand(2, 3, 4, 8)
    vh = v.flatten(2).transpose(-2, -1).unsqueeze(1).expand(2, 3, 4, 8)
    ref = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh).transpose(-2, -1).reshape(2, 24, 4, 4)
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("kv_stride", [1, 2])
def test_mqa_layer_counts_by_hand_and_counted(kv_stride: int) -> None:
    dim, heads, kd, ratio, side = 16, 2, 8, 2, 6
    c = layer_counts(dim, heads, kd, kv_stride, ratio, side)
    m = (side // kv_stride) ** 2
    down = (9 * 16 + 32) if kv_stride == 2 else 0
    assert c.params == 32 + down + 16 * 16 + 2 * 16 * 8 + 16 * 16 + (16 * 32 + 64) + (32 * 16 + 32)
    assert c.attention_macs == 2 * heads * 36 * m * kd and c.keys == m
    layer = MQALayer(dim, heads, kd, kv_stride, ratio, "relu").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        layer(torch.zeros(1, dim, side, side))
    assert sum(p.numel() for p in layer.parameters()) == c.params
    assert counter.get_total_flops() // 2 == c.macs


def test_every_candidate_block_can_be_activated(rich: SearchSpace) -> None:
    """`layer_candidates` (weight-sharing efficiency, Eq. 1) lists UIB and MQA configurations that
    the elastic layers accept, and the widest of them stores the layer's tensors."""
    net = Supernet(rich, num_classes=10)
    names = []
    for name, module, cfgs in net.layer_candidates():
        names.append(name)
        for cfg in cfgs:
            module.set_active(*cfg)
    assert "stages.1.1" in names and "stages.3.transition" in names and "stages.3.layers.1" in names
    mqa_cfgs = dict((n, c) for n, _, c in net.layer_candidates())["stages.3.layers.0"]
    assert len(mqa_cfgs) == 2 * 2 * 2 * 2 and (40, 2, 2, 2) in mqa_cfgs
    assert 0 < net.weight_sharing_efficiency() < 1


def test_latency_model_terms_follow_the_table_kinds(rich: SearchSpace) -> None:
    from autovit.latency.lut import synthetic_table
    from autovit.latency.predictor import LatencyModel, table_terms

    design = ("mbconv_blocks", "transformer_layers", "transformer_stages", "intercept")
    paper = synthetic_table(SearchSpace.builtin("xxs"))
    assert table_terms(paper) == ("table_stem", "table_mbconv", "table_tfixed", "table_attn", "table_mlp",
                                  "table_head") + design
    table = synthetic_table(rich, num_classes=10)
    assert table_terms(table) == ("table_stem", "table_mbconv", "table_uib", "table_mqa", "table_head") + design
    rng = random.Random(7)
    archs = [rich.sample(rng) for _ in range(12)] + [rich.smallest()]
    truth = LatencyModel(table, {"table_stem": 1.0, "table_mbconv": 0.5, "table_uib": 1.5, "table_mqa": 2.0,
                                 "table_head": 1.0, "intercept": 0.1})
    y = truth.predict_ratio(archs)
    assert all(y > 0)
    fitted = LatencyModel.fit(table, archs, y)  # 9 terms: 13 subnets suffice
    assert set(fitted.coef) == set(table_terms(table))
    assert abs(fitted.predict_ratio(archs) - y).max() < 1e-6 * y.max()


def test_mnv4_anchor_counts_and_exact_imputation() -> None:
    """Under 100 measured blocks per family table: UIB kernels of 3 vs 5 (and expansions) are imputed
    from a measured sibling with the same convs present (whether a kernel is 0 is part of the
    shape), every UIB shape has one; costs linear in the operator counts are recovered exactly."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from latency_toys import linear_cost

    from autovit.latency.imputation import impute_entries, select_anchors, shape_of

    counts = {n: len(select_anchors(space_blocks(SearchSpace.builtin(n)))) for n in FAMILY_SPACES}
    assert counts == {"mnv4_s": 97, "mnv4_m": 66}
    base = dict(cin=64, cout=96, e=3, s=2, act="relu", h=28)
    assert shape_of(BlockSig.make("uib", a=3, k=3, **base)) == shape_of(BlockSig.make("uib", a=5, k=3, **base))
    assert shape_of(BlockSig.make("uib", a=3, k=3, **base)) != shape_of(BlockSig.make("uib", a=0, k=3, **base))
    sigs = space_blocks(SearchSpace.builtin("mnv4_s"))
    anchors = select_anchors(sigs)
    measured = {str(s): {"ratio_to_ref": linear_cost(s), "median_ms": 0.0, "count": 5} for s in anchors}
    entries, report = impute_entries(measured, sigs, reference_ms=20.0, fingerprint_id="fp")
    n_uib = sum(s.kind == "uib" for s in sigs)
    assert report["uib"]["measured"] == 76 and report["uib"]["imputed"] == n_uib - 76
    assert report["mqa"]["measured"] == 12
    for s in sigs:
        e = entries[str(s)]
        assert e["ratio_to_ref"] == pytest.approx(linear_cost(s), rel=1e-6), str(s)
        if s.kind == "uib" and e["source"] == "imputed":
            assert e["from_siblings"] >= 1


def test_in_context_latency_networks_of_the_new_kinds_run(rich: SearchSpace) -> None:
    from autovit.latency.blocks import context_pair, standalone_block

    sigs = space_blocks(rich, num_classes=10)
    same = BlockSig.make("uib", cin=16, cout=16, e=2, a=3, k=0, s=1, act="relu", h=8)
    assert same.copies == 3 and BlockSig.make("uib", cin=8, cout=16, e=2, a=3, k=0, s=1, act="relu", h=8).copies == 1
    x = torch.randn(1, 3, 32, 32)
    for kind in ("uib", "mqa"):
        sig = next(s for s in sigs if s.kind == kind)
        with_net, without, copies = context_pair(sig, rich.layout)
        with torch.no_grad():
            assert with_net(x).shape[0] == without(x).shape[0] == 1
        assert copies == sig.copies == (4 if kind == "mqa" else sig.copies)
        alone, shape = standalone_block(sig, rich.layout)
        with torch.no_grad():
            assert alone(torch.randn(*shape)).shape[:1] == shape[:1]


def test_an_arch_or_space_listing_two_kinds_of_one_group_is_refused() -> None:
    from autovit.arch import Arch
    from autovit.errors import ArchError, SpaceError
    from autovit.space import SearchSpace

    arch = SearchSpace.builtin("mnv4_s").smallest().to_dict()
    with pytest.raises(ArchError, match="the arch lists both 'mbconv' and 'uib' conv stages"):
        Arch.from_dict({**arch, "mbconv": arch["uib"]})
    space = SearchSpace.builtin("xxs").to_dict()
    with pytest.raises(SpaceError, match="the search space lists both 'transformer' and 'mqa' attention stages"):
        SearchSpace.from_dict({**space, "mqa": space["transformer"]})
