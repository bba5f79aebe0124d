"""Elastic layers: each stores only the largest block's tensors and runs a smaller choice on slices.

Weight inheritance (paper Eq. in 3.4): the i-th candidate of a layer uses ``W[:d1, :d2, ...]`` of the
largest block's tensor ``W``. Three refinements of the plain prefix slice, all expressed by a
`SlicePlan`:

* grouped dims: a dim made of G equal parts is sliced per part, e.g. the fused qkv projection whose
  rows are ``[q heads | k heads | v heads]`` keeps the first h heads of each third, and a fusion conv
  over ``cat(shortcut, y)`` keeps the first d input channels of each half;
* centre crop: an elastic kernel (5x5 -> 3x3) keeps the centre of the largest kernel;
* everything else: prefix slice.

Slices are views taken in ``forward`` (a reshape copies only for a partially sliced grouped dim), so
gradients reach exactly the active part of each tensor. Every elastic layer has a static twin
(`get_active_subnet`, as in Once-for-All) and counts its active parameters (`active_params`, as in
AutoFormer).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from autovit.errors import AutovitError
from autovit.blocks.layers import Attention, ConvBNAct, Mlp, make_activation, multi_head_attention


@dataclass(frozen=True, eq=False)
class SlicePlan:
    """How to take a tensor of shape `target` out of a stored tensor of shape `full`."""

    full: tuple[int, ...]
    target: tuple[int, ...]
    view_shape: tuple[int, ...] | None  # split grouped dims (G, n/G) first
    index: tuple[slice, ...] | None  # None: the whole tensor
    out_shape: tuple[int, ...] | None  # merge split dims back (copies if a grouped dim is sliced)

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return tensor
        if self.view_shape is not None:
            tensor = tensor.view(self.view_shape)
        tensor = tensor[self.index]
        return tensor if self.out_shape is None else tensor.reshape(self.out_shape)

    @functools.cached_property
    def func(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """`apply` as the cheapest callable (used in forward): identity or a C-level itemgetter."""
        if self.index is None:
            return _identity
        if self.view_shape is not None:
            return self.apply
        index = list(self.index)
        while index and index[-1] == slice(0, self.full[len(index) - 1]):
            index.pop()  # trailing whole dims need no slicing
        return operator.itemgetter(index[0] if len(index) == 1 else tuple(index))

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        """The active region as a view (grouped dims left split): write through it, e.g. to mask."""
        if self.index is None:
            return tensor
        return (tensor.view(self.view_shape) if self.view_shape is not None else tensor)[self.index]


def set_plain(module: object, **values: object) -> None:
    """Sets plain (non-tensor, non-module) attributes without nn.Module.__setattr__'s checks, which
    dominate the cost of `set_active` (called every training step)."""
    module.__dict__.update(values)


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def make_plan(full: Sequence[int], target: Sequence[int], groups: Sequence[int] | None = None,
              centre: Sequence[bool] | None = None) -> SlicePlan:
    """A `SlicePlan` (cached: `set_active` runs every training step); raises `AutovitError` if
    `target` does not fit inside `full`."""
    return _make_plan(tuple(full), tuple(target), None if groups is None else tuple(groups),
                      None if centre is None else tuple(centre))


@functools.lru_cache(maxsize=65536)
def _make_plan(full: tuple[int, ...], target: tuple[int, ...], groups: tuple[int, ...] | None,
               centre: tuple[bool, ...] | None) -> SlicePlan:
    full, target = tuple(int(v) for v in full), tuple(int(v) for v in target)
    groups = tuple(groups) if groups is not None else (1,) * len(full)
    centre = tuple(centre) if centre is not None else (False,) * len(full)
    if len(full) != len(target):
        raise AutovitError(f"cannot slice a tensor of shape {list(full)} to shape {list(target)}: ranks differ")
    if full == target:
        return SlicePlan(full, target, None, None, None)
    view_shape: list[int] = []
    index: list[slice] = []
    split = False
    for n, t, g, c in zip(full, target, groups, centre):
        if t > n or t < 0:
            raise AutovitError(f"cannot slice a tensor of shape {list(full)} to shape {list(target)}: "
                               f"the source is smaller in a dimension ({n} < {t})")
        if g > 1 and t < n:
            if n % g or t % g:
                raise AutovitError(f"cannot slice a tensor of shape {list(full)} to shape {list(target)}: "
                                   f"a dimension made of {g} equal parts has sizes {n} and {t}")
            view_shape += [g, n // g]
            index += [slice(None), slice(0, t // g)]
            split = True
        elif c:
            if (n - t) % 2:
                raise AutovitError(f"cannot centre-crop a kernel of size {n} to {t}")
            off = (n - t) // 2
            view_shape.append(n)
            index.append(slice(off, off + t))
        else:
            view_shape.append(n)
            index.append(slice(0, t))
    return SlicePlan(full, target, tuple(view_shape) if split else None, tuple(index),
                     target if split else None)


class Elastic:
    """Mixin of the elastic leaf layers: per-tensor slice plans set by `set_active`.

    Subclasses define `tensor_layout(name) -> (groups, centre)` and `static_twin()`.
    """

    _plans: dict[str, SlicePlan]
    _fn: dict[str, Callable[[torch.Tensor], torch.Tensor]]  # plan.func of each tensor, for forward

    def tensor_layout(self, name: str) -> tuple[Sequence[int] | None, Sequence[bool] | None]:
        return None, None

    def _set_targets(self, **targets: tuple[int, ...]) -> None:
        cache = self.__dict__.setdefault("_plan_cache", {})  # per active shape: set_active runs every step
        key = tuple(targets.values())
        if key not in cache:
            plans = {}
            for name, target in targets.items():
                tensor = getattr(self, name)
                if tensor is not None:
                    plans[name] = make_plan(tensor.shape, target, *self.tensor_layout(name))
            cache[key] = (plans, {name: plan.func for name, plan in plans.items()})
        plans, funcs = cache[key]
        set_plain(self, _plans=plans, _fn=funcs)

    def active_state(self) -> dict[str, torch.Tensor]:
        """The static twin's state dict, as slices of this layer's tensors (not copies)."""
        state = {name: plan.apply(getattr(self, name)) for name, plan in self._plans.items()}
        if isinstance(self, nn.modules.batchnorm._BatchNorm) and self.num_batches_tracked is not None:
            state["num_batches_tracked"] = self.num_batches_tracked
        return state

    def active_leaves(self) -> Iterator["Elastic"]:
        yield self

    def active_params(self) -> int:
        """Trainable parameters of the active choice."""
        params = {name for name, _ in self.named_parameters(recurse=False)}  # type: ignore[attr-defined]
        return sum(math.prod(plan.target) for name, plan in self._plans.items() if name in params)

    def static_twin(self) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def get_active_subnet(self) -> nn.Module:
        """A plain torch layer holding copies of the active slices (Once-for-All style)."""
        twin = self.static_twin().to(self.weight.device, self.weight.dtype)  # type: ignore[attr-defined]
        twin.load_state_dict({k: v.detach().clone() for k, v in self.active_state().items()})
        twin.train(self.training)  # type: ignore[attr-defined]
        return twin


class ElasticConv2d(nn.Conv2d, Elastic):
    """Conv2d with elastic in/out channels and (centre-cropped) kernel size.

    `in_groups` > 1 means the input is a concatenation of that many equal parts (fusion conv).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, bias: bool = False,
                 in_groups: int = 1) -> None:
        super().__init__(in_chs, out_chs, kernel, stride, kernel // 2, bias=bias)
        self.in_groups = in_groups
        self.set_active(in_chs, out_chs, kernel)

    def tensor_layout(self, name: str) -> tuple[Sequence[int] | None, Sequence[bool] | None]:
        if name == "weight":
            return (1, self.in_groups, 1, 1), (False, False, True, True)
        return None, None

    def set_active(self, in_chs: int, out_chs: int, kernel: int | None = None) -> None:
        kernel = self.kernel_size[0] if kernel is None else kernel
        set_plain(self, active_in=in_chs, active_out=out_chs, active_kernel=kernel, _pad=kernel // 2, _groups=1)
        self._set_targets(weight=(out_chs, in_chs, kernel, kernel), bias=(out_chs,))
        set_plain(self, _sliced=self._plans["weight"].index is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = self._fn
        bias = fn["bias"](self.bias) if self.bias is not None else None
        weight = self.weight
        if self._sliced:
            # The conv kernels copy a strided weight slice anyway; a dense copy here is cheaper.
            fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else None
            weight = fn["weight"](weight).contiguous(memory_format=fmt or torch.contiguous_format)
        return F.conv2d(x, weight, bias, self.stride, self._pad, 1, self._groups)

    def static_twin(self) -> nn.Module:
        k = self.active_kernel
        return nn.Conv2d(self.active_in, self.active_out, k, self.stride, k // 2, groups=self._groups,
                         bias=self.bias is not None)


class ElasticDepthwiseConv2d(ElasticConv2d):
    """Depthwise conv with elastic channels and centre-cropped elastic kernel (e.g. 5x5 -> 3x3)."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, bias: bool = False) -> None:
        nn.Conv2d.__init__(self, channels, channels, kernel, stride, kernel // 2, groups=channels, bias=bias)
        self.in_groups = 1
        self.set_active(channels, channels, kernel)

    def set_active(self, in_chs: int, out_chs: int | None = None, kernel: int | None = None) -> None:
        if out_chs is not None and out_chs != in_chs:
            raise ValueError("a depthwise conv has as many output channels as input channels")
        kernel = self.kernel_size[0] if kernel is None else kernel
        set_plain(self, active_in=in_chs, active_out=in_chs, active_kernel=kernel, _pad=kernel // 2, _groups=in_chs)
        self._set_targets(weight=(in_chs, 1, kernel, kernel), bias=(in_chs,))
        set_plain(self, _sliced=self._plans["weight"].index is not None)


class ElasticBatchNorm2d(nn.BatchNorm2d, Elastic):
    """BatchNorm2d over the first c channels; in training only the active slice of the running
    statistics is updated (in place, through a view of the stored buffers)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.set_active(channels)

    def set_active(self, channels: int) -> None:
        set_plain(self, active_channels=channels)
        shape = (channels,)
        self._set_targets(weight=shape, bias=shape, running_mean=shape, running_var=shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Mirrors nn.BatchNorm2d.forward (with tracked running stats), on sliced tensors.
        fn = self._fn
        weight, bias = fn["weight"](self.weight), fn["bias"](self.bias)
        mean, var = fn["running_mean"](self.running_mean), fn["running_var"](self.running_var)
        if not self.training:
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, mean, var, weight, bias, True, factor, self.eps)

    def static_twin(self) -> nn.Module:
        return nn.BatchNorm2d(self.active_channels, eps=self.eps, momentum=self.momentum)


class ElasticLinear(nn.Linear, Elastic):
    """Linear with elastic in/out features. `out_groups` > 1: the output is that many equal parts
    (the fused qkv), each sliced separately."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, out_groups: int = 1) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.out_groups = out_groups
        self.set_active(in_features, out_features)

    def tensor_layout(self, name: str) -> tuple[Sequence[int] | None, Sequence[bool] | None]:
        return ((self.out_groups, 1) if name == "weight" else (self.out_groups,)), None

    def set_active(self, in_features: int, out_features: int) -> None:
        set_plain(self, active_in=in_features, active_out=out_features)
        self._set_targets(weight=(out_features, in_features), bias=(out_features,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = self._fn
        return F.linear(x, fn["weight"](self.weight), fn["bias"](self.bias) if self.bias is not None else None)

    def static_twin(self) -> nn.Module:
        return nn.Linear(self.active_in, self.active_out, bias=self.bias is not None)


class ElasticLayerNorm(nn.LayerNorm, Elastic):
    """LayerNorm over the first d features (normalising over the active features only)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.set_active(dim)

    def set_active(self, dim: int) -> None:
        set_plain(self, active_dim=dim, _shape=(dim,))
        self._set_targets(weight=(dim,), bias=(dim,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = self._fn
        return F.layer_norm(x, self._shape, fn["weight"](self.weight), fn["bias"](self.bias), self.eps)

    def static_twin(self) -> nn.Module:
        return nn.LayerNorm(self.active_dim, eps=self.eps)


# ------------------------------------------------------------------------ composite elastic layers
class ElasticBlock(nn.Module):
    """Base of composite elastic layers: `active_leaves()` yields the elastic leaves in use."""

    def active_leaves(self) -> Iterator[Elastic]:
        raise NotImplementedError

    def active_params(self) -> int:
        return sum(leaf.active_params() for leaf in self.active_leaves())

    def static_twin(self) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def get_active_subnet(self) -> nn.Module:
        """The static layer of `autovit.model` with copies of the active slices."""
        twin = self.static_twin()
        leaf = next(iter(self.active_leaves()))
        twin.to(leaf.weight.device, leaf.weight.dtype)  # type: ignore[attr-defined]
        copy_active_weights(self, twin)
        return twin.train(self.training)


class ElasticAttention(ElasticBlock):
    """Multi-head self-attention with elastic embedding dim and heads (head_dim fixed).

    The qkv rows are ``[q heads | k heads | v heads]`` as in `autovit.blocks.layers.Attention`; a subnet with
    h heads uses the first h heads of each third (same layout, so extraction is a plain slice).
    """

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        self.qkv = ElasticLinear(dim, 3 * heads * head_dim, out_groups=3)
        self.proj = ElasticLinear(heads * head_dim, dim)
        self.set_active(dim, heads)

    def set_active(self, dim: int, heads: int) -> None:
        set_plain(self, active_dim=dim, heads=heads)
        inner = heads * self.head_dim
        self.qkv.set_active(dim, 3 * inner)
        self.proj.set_active(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The static model's attention on the sliced projections: outputs match exactly.
        return self.proj(multi_head_attention(self.qkv(x), self.heads, self.head_dim, self.scale))

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.qkv
        yield self.proj

    def static_twin(self) -> nn.Module:
        return Attention(self.active_dim, self.heads, self.head_dim)


class ElasticMlp(ElasticBlock):
    """Transformer MLP with elastic embedding dim and hidden width."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.act_name = act
        self.fc1 = ElasticLinear(dim, hidden)
        self.act = make_activation(act)
        self.fc2 = ElasticLinear(hidden, dim)
        self.set_active(dim, hidden)

    def set_active(self, dim: int, hidden: int) -> None:
        set_plain(self, active_dim=dim, active_hidden=hidden)
        self.fc1.set_active(dim, hidden)
        self.fc2.set_active(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.fc1
        yield self.fc2

    def static_twin(self) -> nn.Module:
        return Mlp(self.active_dim, self.active_hidden, self.act_name)


class ElasticConvBNAct(ElasticBlock):
    """Conv (or depthwise conv) + BatchNorm + optional activation; mirrors `ConvBNAct`."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, act: str | None = "silu",
                 depthwise: bool = False, in_groups: int = 1) -> None:
        super().__init__()
        self.act_name = act
        self.conv = (ElasticDepthwiseConv2d(in_chs, kernel, stride) if depthwise
                     else ElasticConv2d(in_chs, out_chs, kernel, stride, in_groups=in_groups))
        self.bn = ElasticBatchNorm2d(out_chs)
        self.act = make_activation(act) if act else nn.Identity()

    def set_active(self, in_chs: int, out_chs: int, kernel: int | None = None) -> None:
        self.conv.set_active(in_chs, out_chs, kernel)
        self.bn.set_active(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def active_leaves(self) -> Iterator[Elastic]:
        yield self.conv
        yield self.bn

    def static_twin(self) -> nn.Module:
        c = self.conv
        return ConvBNAct(c.active_in, c.active_out, c.active_kernel, c.stride[0], groups=c._groups, act=self.act_name)



@torch.no_grad()
def copy_active_weights(elastic: nn.Module, static: nn.Module) -> None:
    """Copies into `static` (a network of `autovit.model`) the active slices of `elastic`, whose
    module names mirror it. Strict: every static tensor must come from an active elastic leaf
    with exactly its shape."""
    for name, module in static.named_modules():
        own = {**module._parameters, **module._buffers}
        own = {k: v for k, v in own.items() if v is not None}
        if not own:
            continue
        source = elastic.get_submodule(name) if name else elastic
        if not isinstance(source, Elastic):
            raise AutovitError(f"supernet module '{name}' is not elastic ({type(source).__name__})")
        state = source.active_state()
        if state.keys() != own.keys():
            raise AutovitError(f"supernet module '{name}' has tensors {sorted(state)}, the subnet {sorted(own)}")
        for key, dst in own.items():
            src = state[key]
            if src.shape != dst.shape:
                raise AutovitError(f"'{name}.{key}': the supernet slice is {list(src.shape)}, "
                                   f"the subnet needs {list(dst.shape)}")
            dst.copy_(src)
