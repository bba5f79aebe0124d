"""Block signatures and the decomposition of archs into lookup-table blocks (no timing)."""

from __future__ import annotations

import random

import pytest
import torch

from autovit.errors import AutovitError
from autovit.latency.blocks import (BlockSig, arch_blocks, context_key, context_pair, space_blocks,
                                    standalone_block)
from autovit.registry import paper_arch
from autovit.space import SearchSpace


def test_signature_is_canonical_across_order_and_number_spelling() -> None:
    a = BlockSig.make("mbconv", cin=16, cout=24, e=2.0, k=3, s=2, act="silu", h=128)
    b = BlockSig.make("mbconv", h=128.0, act="silu", s=2, k=3.0, e=2, cout=24, cin=16)
    assert a == b and str(a) == str(b) == "mbconv:act=silu,cin=16,cout=24,e=2,h=128,k=3,s=2"
    assert BlockSig.make("mlp", d=48, r=1.5, p=2, act="silu", h=32) != BlockSig.make("mlp", d=48, r=2, p=2,
                                                                                        act="silu", h=32)


def test_signature_parse_round_trip_and_errors() -> None:
    for sig in space_blocks(SearchSpace.builtin("xxs")):
        assert BlockSig.parse(str(sig)) == sig
    with pytest.raises(AutovitError, match="malformed block signature"):
        BlockSig.parse("mbconv:cin16")
    with pytest.raises(AutovitError, match="unknown block kind"):
        BlockSig.make("conv3d", a=1)
    with pytest.raises(AutovitError, match="malformed block signature"):
        BlockSig.parse("conv3d:a=1")


def test_xxs_block_counts() -> None:
    sigs = space_blocks(SearchSpace.builtin("xxs"))
    kinds = {k: sum(s.kind == k for s in sigs) for k in ("stem", "mbconv", "tfixed", "attn", "mlp", "head")}
    # stem 2 widths; MBConv 3 stages x (in x out x e x k) incl. repeated blocks; per stage (width x heads)
    # attention and (width x ratio) MLP halves; transitions follow the non-decreasing constraint.
    assert kinds == {"stem": 2, "mbconv": 64, "tfixed": 16, "attn": 24, "mlp": 18, "head": 8}
    assert len(set(map(str, sigs))) == len(sigs) == 132


@pytest.mark.parametrize("name", ["xxs", "xs", "s"])
def test_every_sampled_arch_decomposes_into_space_blocks(name: str) -> None:
    space = SearchSpace.builtin(name)
    known = set(space_blocks(space))
    rng = random.Random(0)
    for _ in range(300):
        arch = space.sample(rng)
        blocks = arch_blocks(arch)
        assert all(sig in known for sig, _ in blocks)
        n_layers = sum(n for sig, n in blocks if sig.kind == "attn")
        assert n_layers == sum(n for sig, n in blocks if sig.kind == "mlp") == sum(s.depth for s in arch.transformer)
        assert sum(n for sig, n in blocks if sig.kind == "mbconv") == sum(s.depth for s in arch.mbconv)


def test_paper_xxs_decomposition() -> None:
    blocks = dict((str(s), n) for s, n in arch_blocks(paper_arch("xxs")))
    assert blocks["attn:d=48,h=32,hd=16,heads=3,p=2"] == 4
    assert blocks["mbconv:act=silu,cin=24,cout=24,e=2,h=64,k=3,s=1"] == 1
    assert blocks["head:act=silu,cin=96,h=4,he=0,n=1000,w=1000"] == 1
    assert sum(s.startswith("tfixed") for s in blocks) == 4


def test_context_pairs_share_contexts_and_run() -> None:
    space = SearchSpace.builtin("xxs")
    sigs = space_blocks(space)
    assert len({context_key(s) for s in sigs}) < len(sigs) // 4
    x = torch.randn(1, 3, 64, 64)  # small input: the adapters pool to the block's side anyway
    for kind in ("stem", "mbconv", "tfixed", "attn", "mlp", "head"):
        sig = next(s for s in sigs if s.kind == kind and s.get("h") <= 32 or s.kind == kind == "stem")
        with_net, without, copies = context_pair(sig, space.layout)
        with torch.no_grad():
            a, b = with_net(x), without(x)
        assert a.shape[0] == b.shape[0] == 1
        assert copies == sig.copies
        alone, shape = standalone_block(sig, space.layout)
        with torch.no_grad():
            alone(torch.randn(*shape))


def test_copies_only_for_shape_preserving_blocks() -> None:
    same = BlockSig.make("mbconv", cin=24, cout=24, e=2, k=3, s=1, act="silu", h=64)
    down = BlockSig.make("mbconv", cin=16, cout=24, e=2, k=3, s=2, act="silu", h=128)
    assert same.copies > 1 and down.copies == 1
