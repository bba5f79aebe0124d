"""`Supernet`: one weight-sharing network holding every subnet of a search space.

The supernet is the largest network of the space built from elastic layers
(`autovit.supernet.elastic`). `set_active(arch)` selects a subnet: smaller widths, heads, MLP
ratios, expansions and kernels use slices of the largest tensors, smaller depths skip the trailing
layers of a stage, and 3-stage archs skip the 4th transformer stage. `extract(arch)` returns the
static `AutoViT` with copies of the inherited weights; in eval mode it computes the same function.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from autovit.arch import Arch
from autovit.errors import ArchError, AutovitError
from autovit.blocks import MQAChoices, UIBChoices, kind_of
from autovit.blocks.base import expand_width
from autovit.blocks.mobilevit import TRANSITION_KERNEL
from autovit.model import AutoViT, init_weights
from autovit.space import SearchSpace
from autovit.supernet.blocks import (
    ElasticConvBNAct,
    ElasticMBConv,
    ElasticMBPoolHead,
    ElasticMQAStage,
    ElasticTransformerStage,
    ElasticUIB,
)
from autovit.supernet.elastic import Elastic, copy_active_weights, make_plan, set_plain


class Supernet(nn.Module):
    """Weight-sharing supernet of `space` (paper 3.4); module names mirror `autovit.model.AutoViT`."""

    def __init__(self, space: SearchSpace | str, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        space = SearchSpace.load(space) if not isinstance(space, SearchSpace) else space
        self.space, self.num_classes, self.in_chans, self.drop_rate = space, num_classes, in_chans, drop_rate
        lay = space.layout
        act = lay.activation
        self.stem = ElasticConvBNAct(in_chans, max(space.stem_width), lay.stem_kernel, lay.stem_stride, act=act)
        stages: list[nn.Module] = []
        prev = max(space.stem_width)
        for c, stride in zip(space.mbconv, lay.mbconv_strides):
            width = max(c.width)
            if isinstance(c, UIBChoices):
                stages.append(nn.ModuleList([
                    ElasticUIB(prev if i == 0 else width, width, c.expansion, c.start_kernel, c.mid_kernel,
                               stride if i == 0 else 1, act)
                    for i in range(max(c.depth))]))
            else:
                stages.append(nn.ModuleList([
                    ElasticMBConv(prev if i == 0 else width, width, c.expansion, max(c.kernel), stride if i == 0 else 1,
                                  act, c.se)
                    for i in range(max(c.depth))]))
            prev = width
        for c, stride in zip(space.transformer[:max(space.num_transformer_stages)], lay.transformer_strides):
            width = max(c.width)
            if isinstance(c, MQAChoices):
                hidden = max(expand_width(width, r) for r in c.ffn_ratio)
                stages.append(ElasticMQAStage(prev, width, max(c.depth), max(c.heads), c.kv_stride, hidden, stride,
                                              lay))
            else:
                hidden = max(expand_width(width, r) for r in c.mlp_ratio)
                stages.append(ElasticTransformerStage(prev, width, max(c.depth), max(c.heads), hidden, stride, lay))
            prev = width
        self.stages = nn.ModuleList(stages)
        head_in = max(max(_final_widths(space, n)) for n in space.num_transformer_stages)
        self.head = ElasticMBPoolHead(head_in, max(space.head_width), lay.head_expansion, num_classes, act, drop_rate)
        self.apply(init_weights)  # the same initialisation as the static network
        self.set_active(space.largest())

    # ------------------------------------------------------------------ choosing the subnet
    def set_active(self, arch: Arch) -> Arch:
        """Selects the subnet `arch` (validated against the space); returns it."""
        try:
            self.space.validate(arch)
        except ArchError as err:
            raise ArchError(f"an arch outside the supernet of space '{self.space.name}': {err.message}",
                            err.hint or "sample archs with space.sample(rng) or check them with space.validate") from None
        self.stem.set_active(self.in_chans, arch.stem_width)
        path: list[nn.Module] = []
        prev = arch.stem_width
        for stage, module in zip(arch.mbconv, self.stages):
            for i in range(stage.depth):
                module[i].set_active(prev if i == 0 else stage.width, stage.width, *_block_args(stage))
                path.append(module[i])
            prev = stage.width
        for i, stage in enumerate(arch.transformer):
            module = self.stages[len(arch.mbconv) + i]
            module.set_active(prev, *kind_of(stage).values(stage))  # (width, depth, heads, ...) in field order
            path.append(module)
            prev = stage.width
        self.head.set_active(prev, arch.head_width)
        set_plain(self, _path=tuple(path), active_arch=arch)
        return arch

    def sample_active(self, rng: random.Random) -> Arch:
        """Samples a subnet uniformly from the space (`space.sample`) and activates it."""
        return self.set_active(self.space.sample(rng))

    def set_largest(self) -> Arch:
        return self.set_active(self.space.largest())

    def set_smallest(self) -> Arch:
        return self.set_active(self.space.smallest())

    # ------------------------------------------------------------------ forward (timm-style)
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self._path:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    # ------------------------------------------------------------------ subnets
    def active_leaves(self) -> Iterator[Elastic]:
        """The elastic layers (and slices) the active subnet uses."""
        yield from self.stem.active_leaves()
        for block in self._path:
            yield from block.active_leaves()
        yield from self.head.active_leaves()

    def active_num_params(self) -> int:
        """Parameters of the active subnet, counted on the slices (equals `count_params(arch)`)."""
        return sum(leaf.active_params() for leaf in self.active_leaves())

    def num_params(self) -> int:
        """Parameters stored by the supernet itself (the largest block of every layer)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> AutoViT:
        """The static `AutoViT` of `arch` (default: the active arch) holding copies of the inherited
        weights and BN statistics, on the supernet's device, in the supernet's train/eval mode.
        The supernet's active arch is left unchanged."""
        previous = self.active_arch
        if arch is not None:
            self.set_active(arch)
        try:
            ref = self.stem.conv.weight
            # Built on the meta device (no memory, no random init: most of the cost of building a
            # network), then given uninitialised storage that the strict copy below overwrites whole.
            with torch.device("meta"):
                model = AutoViT(self.active_arch, num_classes=self.num_classes, in_chans=self.in_chans,
                                drop_rate=self.drop_rate)
            copy_active_weights(self, model.to_empty(device=ref.device).to(ref.dtype))
        finally:
            if arch is not None:
                self.set_active(previous)
        return model.train(self.training)

    # ------------------------------------------------------------------ cross-supernet inheritance
    @torch.no_grad()
    def inherit_from(self, source: "Supernet | Mapping[str, Any]", skip_classifier: bool = False) -> None:
        """Initialises this supernet from a larger one (paper: e.g. XXS from XS) by slicing each stored
        tensor to this supernet's shape, with the same rules as weight inheritance.

        `source` is a `Supernet`, a `supernet_state()` dict, or a plain state dict. Everything is
        checked before anything is copied; incompatible sources raise `AutovitError`.
        `skip_classifier` keeps this supernet's own classifier (e.g. for another number of classes).
        """
        state, space = _unwrap_source(source)
        if space is not None and space.layout != self.space.layout:
            diff = [k for k, v in space.layout.to_dict().items() if self.space.layout.to_dict()[k] != v]
            raise AutovitError(f"cannot inherit from supernet '{space.name}': its layout differs in {', '.join(diff)}",
                               hint="weights can only be inherited between spaces with the same layout")
        copies: list[tuple[torch.Tensor, torch.Tensor]] = []
        for key, dst in self.state_dict(keep_vars=True).items():
            if skip_classifier and key.startswith("head.fc."):
                continue
            if key not in state:
                raise AutovitError(f"cannot inherit: the source has no tensor '{key}' (it is smaller in depth, "
                                   f"stage count or layout than this supernet)",
                                   hint="inherit from a supernet of a larger space with the same layout")
            src = state[key]
            if not isinstance(src, torch.Tensor):
                raise AutovitError(f"cannot inherit: '{key}' in the source is not a tensor")
            if key.endswith("num_batches_tracked"):
                copies.append((dst, src))
                continue
            if key.startswith("head.fc.") and src.shape[0] != dst.shape[0]:
                raise AutovitError(f"cannot inherit the classifier: the source has {src.shape[0]} classes, "
                                   f"this supernet {dst.shape[0]}", hint="pass skip_classifier=True")
            module_name, _, tensor_name = key.rpartition(".")
            module = self.get_submodule(module_name)
            groups, centre = module.tensor_layout(tensor_name) if isinstance(module, Elastic) else (None, None)
            try:
                plan = make_plan(src.shape, dst.shape, groups, centre)
            except AutovitError as err:
                raise AutovitError(f"cannot inherit '{key}': {err.message}",
                                   hint="the source must be at least as large as this supernet in every "
                                        "dimension (e.g. XXS from XS), with the same layout") from None
            copies.append((dst, plan.apply(src)))
        for dst, src in copies:
            dst.copy_(src)

    # ------------------------------------------------------------------ candidate blocks (Eq. 1)
    def layer_candidates(self) -> Iterator[tuple[str, nn.Module, list[tuple[Any, ...]]]]:
        """Every layer of the supernet with the distinct configurations (candidate blocks) its
        subnets can give it: ``(name, module, [args of module.set_active, ...])``.

        A layer is the stem, each MBConv block slot, each transformer stage's transition, each
        MobileViT block's own convs and norm (depth 0), each transformer layer slot and the head.
        The in-width of a layer ranges over the widths the previous layer can have; with the
        non-decreasing-width constraint, transitions between transformer stages never shrink.
        """
        sp = self.space
        yield "stem", self.stem, [(self.in_chans, w) for w in sp.stem_width]
        prev = sp.stem_width
        for s, (c, module) in enumerate(zip(sp.mbconv, self.stages)):
            kind = kind_of(c)
            others = [getattr(c, f.name) for f in kind.fields if f.name not in ("width", "depth")]
            for i in range(max(c.depth)):
                ins = prev if i == 0 else c.width
                cfgs = [(a, b, *rest) for a in ins for b in c.width if i == 0 or a == b
                        for rest in itertools.product(*others)]
                yield f"stages.{s}.{i}", module[i], cfgs
            prev = c.width
        offset = len(sp.mbconv)
        for s, c in enumerate(sp.transformer[:max(sp.num_transformer_stages)]):
            stage = self.stages[offset + s]
            constrained = sp.nondecreasing_widths and s > 0
            pairs = [(a, b) for a in prev for b in c.width if not constrained or a <= b]
            yield (f"stages.{offset + s}.transition", stage.transition,
                   [(a, b, sp.layout.transition_expansion, TRANSITION_KERNEL) for a, b in pairs])
            if isinstance(c, MQAChoices):
                for i, layer in enumerate(stage.layers):
                    yield (f"stages.{offset + s}.layers.{i}", layer,
                           [(w, h, kv, r) for w in c.width for h in c.heads for kv in c.kv_stride for r in c.ffn_ratio])
                prev = c.width
                continue
            yield f"stages.{offset + s}.block", stage.block, [(w, 0, 1, 1) for w in c.width]
            for i, layer in enumerate(stage.block.layers):
                yield (f"stages.{offset + s}.block.layers.{i}", layer,
                       [(w, h, r) for w in c.width for h in c.heads for r in c.mlp_ratio])
            prev = c.width
        finals = sorted({w for n in sp.num_transformer_stages for w in _final_widths(sp, n)})
        yield "head", self.head, [(a, w) for a in finals for w in sp.head_width]

    def weight_sharing_efficiency(self) -> float:
        """E of paper Eq. 1 for this supernet's space (see `autovit.supernet.efficiency`)."""
        from autovit.supernet.efficiency import weight_sharing_efficiency

        return weight_sharing_efficiency(self.space, self.num_classes)

    def extra_repr(self) -> str:
        return f"space={self.space.name}, num_classes={self.num_classes}, active={self.active_arch.key()}"


# ---------------------------------------------------------------------- checkpoints
STATE_FORMAT = "autovit-supernet"


def supernet_state(supernet: Supernet) -> dict[str, Any]:
    """A self-describing snapshot: the space (as a dict), num_classes, in_chans and the state dict.
    Store it in checkpoints; `load_supernet_state` checks it before loading."""
    return {"format": STATE_FORMAT, "version": 1, "space": supernet.space.to_dict(),
            "num_classes": supernet.num_classes, "in_chans": supernet.in_chans,
            "state_dict": supernet.state_dict()}


def _structure(space_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a space dict that determine the supernet (not its name or description)."""
    return {k: v for k, v in space_dict.items() if k not in ("name", "description", "paper_param_range")}


def _unwrap_source(source: Any) -> tuple[Mapping[str, Any], SearchSpace | None]:
    if isinstance(source, Supernet):
        return source.state_dict(), source.space
    if not isinstance(source, Mapping):
        raise AutovitError(f"cannot read supernet weights from a {type(source).__name__}",
                           hint="pass a Supernet, a supernet_state() dict or a state dict")
    if source.get("format") == STATE_FORMAT:
        _check_state_fields(source)
        return source["state_dict"], _space_of(source)
    return source, None


def _check_state_fields(state: Mapping[str, Any]) -> None:
    missing = [k for k in ("space", "state_dict") if k not in state]
    if missing or not isinstance(state.get("state_dict"), Mapping):
        raise AutovitError(f"corrupt supernet checkpoint: missing or malformed '{(missing or ['state_dict'])[0]}'",
                           hint="the file was not written by autovit or is damaged; retrain or use another checkpoint")


def _space_of(state: Mapping[str, Any]) -> SearchSpace:
    try:
        return SearchSpace.from_dict(state["space"])
    except AutovitError as err:
        raise AutovitError(f"corrupt supernet checkpoint: its search space is invalid ({err.message})") from None


@torch.no_grad()
def load_supernet_state(supernet: Supernet, state: Mapping[str, Any]) -> None:
    """Loads a `supernet_state()` dict into `supernet`, all or nothing.

    Checks the format, that the checkpoint's space equals the supernet's, that every tensor is
    present with the right shape and no extra tensor is there, and only then copies.
    """
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise AutovitError("not an autovit supernet checkpoint (no 'format: autovit-supernet' entry)",
                           hint="save supernets with autovit.supernet.supernet_state(); to initialise from "
                                "a larger supernet's weights use Supernet.inherit_from")
    _check_state_fields(state)
    ckpt_space = _space_of(state)
    if _structure(ckpt_space.to_dict()) != _structure(supernet.space.to_dict()):
        raise AutovitError(f"the checkpoint is a supernet of space '{ckpt_space.name}', not of "
                           f"'{supernet.space.name}' (their choices or layout differ)",
                           hint=f"build Supernet('{ckpt_space.name}') to load it, or initialise the smaller "
                                "supernet from it with Supernet.inherit_from")
    weights = state["state_dict"]
    own = supernet.state_dict(keep_vars=True)
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    if missing or unexpected:
        what = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise AutovitError(f"corrupt supernet checkpoint: {what} "
                           f"({len(missing)} missing, {len(unexpected)} unexpected tensors)",
                           hint="the checkpoint does not match this autovit version or is damaged")
    for key, dst in own.items():
        src = weights[key]
        if not isinstance(src, torch.Tensor) or src.shape != dst.shape:
            got = list(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__
            raise AutovitError(f"corrupt supernet checkpoint: '{key}' is {got}, expected {list(dst.shape)}",
                               hint="check num_classes and in_chans match the checkpoint "
                                    f"({state.get('num_classes')} classes, {state.get('in_chans')} channels)")
        if src.is_floating_point() and not torch.isfinite(src).all():
            raise AutovitError(f"corrupt supernet checkpoint: '{key}' holds NaN or inf values")
    for key, dst in own.items():
        dst.copy_(weights[key])


def _final_widths(space: SearchSpace, n: int) -> tuple[int, ...]:
    """The widths the last stage can have in archs with `n` transformer stages."""
    return space.transformer[n - 1].width if n else space.mbconv[-1].width


def _block_args(stage: Any) -> tuple:
    """The arguments after (in, out) of a conv stage's elastic blocks' `set_active`: the gene's
    fields other than width and depth, in field order (MBConv: expansion, kernel, se; UIB:
    expansion, start_kernel, mid_kernel)."""
    kind = kind_of(stage)
    return tuple(getattr(stage, f.name) for f in kind.fields if f.name not in ("width", "depth"))
