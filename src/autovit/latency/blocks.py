"""Block variants of a search space, their canonical signatures, and the networks that measure
each one in context.

An architecture decomposes exactly into table blocks:

* ``stem``   - the stem conv (image -> stem width),
* ``mbconv`` - one MBConv block (in/out width, expansion, kernel, stride) at its input side,
* ``tfixed`` - the fixed part of a transformer stage (downsampling transition MBConv, local kxk
  conv, 1x1 projection, unfold/fold, final norm, output projection, residual) at its input side,
* ``attn`` / ``mlp`` - the two residual halves of one transformer layer at the stage's feature
  side (so its token count); a layer costs ``attn + mlp``,
* ``head``   - the MBPool head with the classifier.

Every block is measured *in context* (paper 3.5): a small network ``adapter -> block(s) -> pool``
is timed with and without the block, and the difference is the block's cost. Blocks that keep
their shape are stacked ``copies`` times so the difference rises above the timing noise.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Iterator

from torch import nn

from autovit.arch import Arch, Layout, TransformerStage
from autovit.blocks import MQA, UIB, MQAChoices, kind_of, mbconv, mobilevit, mqa, uib
from autovit.blocks.base import DEFAULT_COPIES, BlockSig, down, table_kinds
from autovit.blocks.head import head_sig
from autovit.blocks.mobilevit import attn_sig, mlp_sig, tfixed_sig
from autovit.blocks.stem import stem_sig
from autovit.errors import AutovitError
from autovit.space import SearchSpace

KINDS = table_kinds()  # the latency-table block kinds, in canonical order

__all__ = ["DEFAULT_COPIES", "KINDS", "BlockSig", "arch_blocks", "attn_sig", "build_block", "context_key",
           "context_pair", "head_sig", "iter_sig_kinds", "mbconv_sig", "mbconv_stage_blocks", "mlp_sig",
           "space_blocks", "stage_sides", "standalone_block", "stem_sig", "tfixed_sig", "transformer_stage_blocks"]


def mbconv_sig(lay: Layout, cin: int, cout: int, e: float, k: int, s: int, h: int, se: float = 0) -> BlockSig:
    return mbconv.block_sig(lay.activation, cin, cout, e, k, s, h, se)


# ------------------------------------------------------------------ decomposition
def stage_sides(arch_or_space: Any, resolution: int) -> tuple[list[int], list[int]]:
    """Input spatial side of every MBConv stage and of every transformer stage slot."""
    lay = arch_or_space.layout
    size = down(resolution, lay.stem_stride)
    mb, tr = [], []
    for s in lay.mbconv_strides:
        mb.append(size)
        size = down(size, s)
    for s in lay.transformer_strides:
        tr.append(size)
        size = down(size, s)
    return mb, tr


def mbconv_stage_blocks(lay: Layout, cin: int, stage: Any, stride: int, h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one conv stage, MBConv or UIB (see `autovit.blocks.mbconv.stage_blocks`,
    `autovit.blocks.uib.stage_blocks`)."""
    module = uib if kind_of(stage) is UIB else mbconv
    return module.stage_blocks(lay.activation, cin, stage, stride, h)


def transformer_stage_blocks(lay: Layout, cin: int, stage: TransformerStage, stride: int,
                             h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one attention stage, MobileViT transformer or Mobile MQA (see
    `autovit.blocks.mobilevit.stage_blocks`, `autovit.blocks.mqa.stage_blocks`)."""
    return (mqa if kind_of(stage) is MQA else mobilevit).stage_blocks(lay, cin, stage, stride, h)


def arch_blocks(arch: Arch, num_classes: int = 1000) -> list[tuple[BlockSig, int]]:
    """The exact block decomposition of `arch`: (signature, count) pairs, in network order."""
    lay = arch.layout
    mb_sides, tr_sides = stage_sides(arch, arch.resolution)
    out = [(stem_sig(lay, arch.resolution, arch.stem_width), 1)]
    chs = arch.stem_width
    for stage, stride, h in zip(arch.mbconv, lay.mbconv_strides, mb_sides):
        out += mbconv_stage_blocks(lay, chs, stage, stride, h)
        chs = stage.width
    for stage, stride, h in zip(arch.transformer, lay.transformer_strides, tr_sides):
        out += transformer_stage_blocks(lay, chs, stage, stride, h)
        chs = stage.width
    last = arch.num_transformer_stages
    side = (down(tr_sides[last - 1], lay.transformer_strides[last - 1]) if last
            else down(mb_sides[-1], lay.mbconv_strides[-1]))
    out.append((head_sig(lay, chs, arch.head_width, side, num_classes), 1))
    return out


def space_blocks(space: SearchSpace, resolution: int | None = None, num_classes: int = 1000) -> list[BlockSig]:
    """Every block variant any arch of `space` can contain (sorted, unique).

    Input widths follow the network: a stage's first block sees every width the previous stage
    can output (for transformer stages, respecting the non-decreasing width constraint).
    """
    res = resolution or space.resolution[0]
    lay = space.layout
    mb_sides, tr_sides = stage_sides(space, res)
    sigs: set[BlockSig] = {stem_sig(lay, res, w) for w in space.stem_width}
    prev = set(space.stem_width)
    conv = space.conv_kind
    for c, stride, h in zip(space.mbconv, lay.mbconv_strides, mb_sides):
        for cin in prev:
            for stage in conv.options(conv.replace(c, depth=(max(c.depth),))):
                sigs.update(s for s, _ in mbconv_stage_blocks(lay, cin, stage, stride, h))
        prev = set(c.width)
    # prev_tr[i]: widths stage i can receive, with the widths of the stage before it (constraint).
    last_widths: dict[int, set[int]] = {}  # side after stage -> widths of a final stage there
    if 0 in space.num_transformer_stages:  # archs ending with the conv stages
        last_widths[down(mb_sides[-1], lay.mbconv_strides[-1])] = set(prev)
    reach: set[tuple[int, int | None]] = {(cin, None) for cin in prev}  # (channels in, previous transformer width)
    for i, (c, stride, h) in enumerate(zip(space.transformer, lay.transformer_strides, tr_sides)):
        nxt: set[tuple[int, int | None]] = set()
        side = down(h, stride)
        for cin, prev_w in reach:
            for w in c.width:
                if space.nondecreasing_widths and prev_w is not None and w < prev_w:
                    continue
                if isinstance(c, MQAChoices):  # the stage's MBConv transition
                    sigs.add(mbconv.block_sig(lay.activation, cin, w, lay.transition_expansion,
                                              mobilevit.TRANSITION_KERNEL, stride, h))
                else:
                    sigs.add(tfixed_sig(lay, cin, w, stride, h))
                nxt.add((w, w))
                if i + 1 in space.num_transformer_stages:
                    last_widths.setdefault(down(h, stride), set()).add(w)
        for w in c.width:
            if isinstance(c, MQAChoices):
                sigs.update(mqa.layer_sig(lay, w, heads, kvs, r, side)
                            for heads in c.heads for kvs in c.kv_stride for r in c.ffn_ratio)
                continue
            sigs.update(attn_sig(lay, w, heads, side) for heads in c.heads)
            sigs.update(mlp_sig(lay, w, r, side) for r in c.mlp_ratio)
        reach = nxt
    for side, widths in last_widths.items():
        sigs.update(head_sig(lay, cin, hw, side, num_classes) for cin in widths for hw in space.head_width)
    return sorted(sigs, key=lambda s: (KINDS.index(s.kind), str(s)))


def iter_sig_kinds(sigs: list[BlockSig]) -> Iterator[tuple[str, int]]:
    """(kind, count) summary in the canonical kind order."""
    for kind in KINDS:
        n = sum(1 for s in sigs if s.kind == kind)
        if n:
            yield kind, n


# ------------------------------------------------------------------ in-context networks
class _AttnHalf(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn = layer.norm1, layer.attn

    def forward(self, x: Any) -> Any:
        return x + self.attn(self.norm1(x))


class _MlpHalf(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.norm2, self.mlp = layer.norm2, layer.mlp

    def forward(self, x: Any) -> Any:
        return x + self.mlp(self.norm2(x))


class ContextNet(nn.Module):
    """image -> [pool to side, 1x1 conv to channels] -> body -> [global pool] (batch 1)."""

    def __init__(self, body: nn.Module, channels: int | None, side: int | None, tail: bool, act: str) -> None:
        super().__init__()
        from autovit.model import ConvBNAct

        self.adapter = (nn.Sequential(nn.AdaptiveAvgPool2d(side), ConvBNAct(3, channels, 1, act=act))
                        if channels else nn.Identity())
        self.body = body
        self.tail = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)) if tail else nn.Identity()

    def forward(self, x: Any) -> Any:
        return self.tail(self.body(self.adapter(x)))


def build_block(sig: BlockSig, layout: Layout, copies: int = 1) -> tuple[nn.Module, int | None, int | None]:
    """The block of `sig` as a module (stacked `copies` times when shape-preserving), with the
    (channels, side) of its input; (None, None) means it takes the image."""
    from autovit.model import (UIB as UIBBlock, ConvBNAct, MBConv, MBPoolHead, MobileViTBlock, MQALayer,
                               TransformerLayer, TransformerStageModule)

    p = dict(sig.params)
    act = p.get("act", layout.activation)
    if sig.kind == "stem":
        return ConvBNAct(3, p["cout"], p["k"], p["s"], act=act), None, None
    if sig.kind == "mbconv":
        mods = [MBConv(p["cin"], p["cout"], p["e"], p["k"], p["s"], act, p.get("se", 0)) for _ in range(copies)]
        return nn.Sequential(*mods), p["cin"], p["h"]
    if sig.kind == "uib":
        mods = [UIBBlock(p["cin"], p["cout"], p["e"], p["a"], p["k"], p["s"], act) for _ in range(copies)]
        return nn.Sequential(*mods), p["cin"], p["h"]
    if sig.kind == "mqa":
        mods = [MQALayer(p["d"], p["heads"], p["kd"], p["kvs"], p["r"], act) for _ in range(copies)]
        return nn.Sequential(*mods), p["d"], p["h"]
    if sig.kind == "tfixed":
        lay = _replace_layout(layout, transition_expansion=p["te"], local_kernel=p["lk"], fusion_kernel=p["fk"],
                              patch_size=p["p"], activation=act)
        mod = TransformerStageModule(p["cin"], TransformerStage(p["d"], 1, 1, 1), p["s"], SimpleNamespace(layout=lay))
        mod.block.layers = nn.Sequential()
        return mod, p["cin"], p["h"]
    if sig.kind in ("attn", "mlp"):
        heads = p.get("heads", 1)
        hd = p.get("hd", layout.head_dim)
        ratio = p.get("r", 1)
        lay_act = p.get("act", layout.activation)
        block = MobileViTBlock(p["d"], TransformerStage(p["d"], 1, heads, ratio), hd, p["p"], layout.local_kernel,
                               layout.fusion_kernel, lay_act)
        half = _AttnHalf if sig.kind == "attn" else _MlpHalf
        block.layers = nn.Sequential(*[half(TransformerLayer(p["d"], heads, hd, ratio, lay_act)) for _ in range(copies)])
        return block, p["d"], p["h"]
    if sig.kind == "head":
        return MBPoolHead(p["cin"], p["w"], p["he"], p["n"], act), p["cin"], p["h"]
    raise AutovitError(f"cannot build a block of kind '{sig.kind}'")


def context_key(sig: BlockSig) -> str:
    """Identifies the "without" network of `sig`; blocks sharing it share one measurement."""
    p = dict(sig.params)
    if sig.kind == "stem":
        return "ctx:image"
    if sig.kind in ("attn", "mlp"):
        return f"ctx:vit,d={p['d']},h={p['h']},p={p['p']}"
    return f"ctx:adapter,c={p['cin'] if 'cin' in p else p['d']},h={p['h']}"


def context_pair(sig: BlockSig, layout: Layout, copies: int | None = None) -> tuple[nn.Module, nn.Module, int]:
    """(with, without, copies): the two networks whose time difference / copies is `sig`'s cost."""
    from autovit.model import MobileViTBlock

    copies = sig.copies if copies is None else copies
    body, chs, side = build_block(sig, layout, copies)
    act = layout.activation
    with_net = ContextNet(body, chs, side, tail=sig.kind != "head", act=act)
    if sig.kind in ("attn", "mlp"):
        p = dict(sig.params)
        empty = MobileViTBlock(p["d"], TransformerStage(p["d"], 1, 1, 1), layout.head_dim, p["p"], layout.local_kernel,
                               layout.fusion_kernel, act)
        empty.layers = nn.Sequential()
        without = ContextNet(empty, chs, side, tail=True, act=act)
    else:
        without = ContextNet(nn.Identity(), chs, side, tail=True, act=act)
    return with_net.eval(), without.eval(), copies


def standalone_block(sig: BlockSig, layout: Layout) -> tuple[nn.Module, tuple[int, ...]]:
    """One copy of the block alone, with its real input shape (for ONNX export suites).

    Attention and MLP halves take the unfolded token tensor [patch^2, patches, width]."""
    body, chs, side = build_block(sig, layout, 1)
    p = dict(sig.params)
    if chs is None:
        return body.eval(), (1, 3, int(p["h"]), int(p["h"]))
    if sig.kind in ("attn", "mlp"):
        n = math.ceil(side / p["p"]) ** 2
        return body.layers[0].eval(), (int(p["p"]) ** 2, n, chs)
    return body.eval(), (1, chs, side, side)


def _replace_layout(layout: Layout, **changes: Any) -> Layout:
    d = layout.to_dict()
    d.update(changes)
    return Layout(**d)
