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
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterator

from torch import nn

from autovit.arch import Arch, Layout, TransformerStage, _num
from autovit.errors import AutovitError
from autovit.space import SearchSpace

KINDS = ("stem", "mbconv", "tfixed", "attn", "mlp", "head")
# Copies stacked in the "with" network of shape-preserving blocks (the difference is divided by it).
DEFAULT_COPIES = {"mbconv": 3, "attn": 4, "mlp": 4}


@dataclass(frozen=True, order=True)
class BlockSig:
    """Canonical signature of one block variant: a kind plus sorted (name, value) pairs.

    The string form ``kind:a=1,b=2`` is the lookup-table key; equal blocks give equal strings
    regardless of argument order or int/float spelling.
    """

    kind: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, kind: str, **params: Any) -> "BlockSig":
        if kind not in KINDS:
            raise AutovitError(f"unknown block kind '{kind}'", hint=f"use one of {', '.join(KINDS)}")
        canon = tuple(sorted((k, v if isinstance(v, str) else _num(v)) for k, v in params.items()))
        return cls(kind, canon)

    @classmethod
    def parse(cls, text: str) -> "BlockSig":
        """Inverse of `str(sig)`."""
        kind, _, rest = text.strip().partition(":")
        params: dict[str, Any] = {}
        try:
            for item in filter(None, rest.split(",")):
                name, value = item.split("=", 1)
                try:
                    params[name] = float(value)
                except ValueError:
                    params[name] = value
            return cls.make(kind, **params)
        except (ValueError, AutovitError):
            raise AutovitError(f"malformed block signature '{text}'",
                               hint="signatures look like 'mbconv:act=silu,cin=16,cout=24,e=2,h=128,k=3,s=2'") from None

    def __str__(self) -> str:
        return f"{self.kind}:" + ",".join(f"{k}={v}" for k, v in self.params)

    def get(self, name: str) -> Any:
        return dict(self.params)[name]

    @property
    def copies(self) -> int:
        """How many copies the in-context network stacks (1 for shape-changing blocks)."""
        p = dict(self.params)
        if self.kind == "mbconv" and not (p["cin"] == p["cout"] and p["s"] == 1):
            return 1
        return DEFAULT_COPIES.get(self.kind, 1)


def _down(size: int, stride: int) -> int:
    return math.ceil(size / stride)


# ------------------------------------------------------------------ signature builders
def stem_sig(lay: Layout, res: int, width: int) -> BlockSig:
    return BlockSig.make("stem", cout=width, k=lay.stem_kernel, s=lay.stem_stride, act=lay.activation, h=res)


def mbconv_sig(lay: Layout, cin: int, cout: int, e: float, k: int, s: int, h: int) -> BlockSig:
    return BlockSig.make("mbconv", cin=cin, cout=cout, e=e, k=k, s=s, act=lay.activation, h=h)


def tfixed_sig(lay: Layout, cin: int, width: int, s: int, h: int) -> BlockSig:
    return BlockSig.make("tfixed", cin=cin, d=width, s=s, te=lay.transition_expansion, lk=lay.local_kernel,
                         fk=lay.fusion_kernel, p=lay.patch_size, act=lay.activation, h=h)


def attn_sig(lay: Layout, width: int, heads: int, h: int) -> BlockSig:
    return BlockSig.make("attn", d=width, heads=heads, hd=lay.head_dim, p=lay.patch_size, h=h)


def mlp_sig(lay: Layout, width: int, ratio: float, h: int) -> BlockSig:
    return BlockSig.make("mlp", d=width, r=ratio, p=lay.patch_size, act=lay.activation, h=h)


def head_sig(lay: Layout, cin: int, width: int, h: int, num_classes: int) -> BlockSig:
    return BlockSig.make("head", cin=cin, w=width, he=lay.head_expansion, n=num_classes, act=lay.activation, h=h)


# ------------------------------------------------------------------ decomposition
def stage_sides(arch_or_space: Any, resolution: int) -> tuple[list[int], list[int]]:
    """Input spatial side of every MBConv stage and of every transformer stage slot."""
    lay = arch_or_space.layout
    size = _down(resolution, lay.stem_stride)
    mb, tr = [], []
    for s in lay.mbconv_strides:
        mb.append(size)
        size = _down(size, s)
    for s in lay.transformer_strides:
        tr.append(size)
        size = _down(size, s)
    return mb, tr


def mbconv_stage_blocks(lay: Layout, cin: int, stage: Any, stride: int, h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one MBConv stage: a first block, then depth-1 repeated blocks."""
    out = [(mbconv_sig(lay, cin, stage.width, stage.expansion, stage.kernel, stride, h), 1)]
    if stage.depth > 1:
        out.append((mbconv_sig(lay, stage.width, stage.width, stage.expansion, stage.kernel, 1,
                               _down(h, stride)), stage.depth - 1))
    return out


def transformer_stage_blocks(lay: Layout, cin: int, stage: TransformerStage, stride: int,
                             h: int) -> list[tuple[BlockSig, int]]:
    """(signature, count) of one transformer stage: its fixed part plus depth x (attn + mlp)."""
    side = _down(h, stride)
    return [(tfixed_sig(lay, cin, stage.width, stride, h), 1),
            (attn_sig(lay, stage.width, stage.heads, side), stage.depth),
            (mlp_sig(lay, stage.width, stage.mlp_ratio, side), stage.depth)]


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
    side = _down(tr_sides[last - 1], lay.transformer_strides[last - 1])
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
    for c, stride, h in zip(space.mbconv, lay.mbconv_strides, mb_sides):
        for cin in prev:
            for w in c.width:
                for e in c.expansion:
                    for k in c.kernel:
                        stage = SimpleNamespace(width=w, depth=max(c.depth), expansion=e, kernel=k)
                        sigs.update(s for s, _ in mbconv_stage_blocks(lay, cin, stage, stride, h))
        prev = set(c.width)
    # prev_tr[i]: widths stage i can receive, with the widths of the stage before it (constraint).
    last_widths: dict[int, set[int]] = {}  # side after stage -> widths of a final stage there
    reach: set[tuple[int, int | None]] = {(cin, None) for cin in prev}  # (channels in, previous transformer width)
    for i, (c, stride, h) in enumerate(zip(space.transformer, lay.transformer_strides, tr_sides)):
        nxt: set[tuple[int, int | None]] = set()
        side = _down(h, stride)
        for cin, prev_w in reach:
            for w in c.width:
                if space.nondecreasing_widths and prev_w is not None and w < prev_w:
                    continue
                sigs.add(tfixed_sig(lay, cin, w, stride, h))
                nxt.add((w, w))
                if i + 1 in space.num_transformer_stages:
                    last_widths.setdefault(_down(h, stride), set()).add(w)
        for w in c.width:
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
    from autovit.model import ConvBNAct, MBConv, MBPoolHead, MobileViTBlock, TransformerLayer, TransformerStageModule

    p = dict(sig.params)
    act = p.get("act", layout.activation)
    if sig.kind == "stem":
        return ConvBNAct(3, p["cout"], p["k"], p["s"], act=act), None, None
    if sig.kind == "mbconv":
        mods = [MBConv(p["cin"], p["cout"], p["e"], p["k"], p["s"], act) for _ in range(copies)]
        return nn.Sequential(*mods), p["cin"], p["h"]
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
    return f"ctx:adapter,c={p['cin']},h={p['h']}"


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
