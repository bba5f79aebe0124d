"""The static AutoViT network built from an `Arch`.

Conv stem -> MBConv (or UIB) stages -> MobileViT-style transformer stages -> MBPool head -> classifier.
Block choices (activation, norm, head dim, strides, fusion) are documented in docs/architecture.md;
`autovit.costs` mirrors this module in closed form, so change both together.
"""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from timm.layers import SEModule, register_notrace_module
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from autovit.arch import Arch, MBConvStage, MQAStage, TransformerStage, UIBStage
from autovit.blocks.base import expand_width
from autovit.blocks.mbconv import se_width
from autovit.blocks.mobilevit import TRANSITION_KERNEL
from autovit.blocks.mqa import KV_KERNEL
from autovit.blocks.uib import block_strides
from autovit.errors import AutovitError


def make_activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "hardswish": nn.Hardswish}[name]()


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + optional activation."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = make_activation(act) if act else nn.Identity()


class MBConv(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand -> kxk depthwise -> [squeeze-excite] -> 1x1 linear
    projection (`autovit.blocks.mbconv`).

    The 1x1 expand conv is kept at expansion 1 too (as timm's MobileViT does), so that in the
    supernet the depthwise conv always sees the output of the same expand conv. `se` > 0 adds
    timm's `SEModule` with `se_width(hidden, se)` reduced channels.
    """

    def __init__(self, in_chs: int, out_chs: int, expansion: float, kernel: int, stride: int, act: str,
                 se: float = 0) -> None:
        super().__init__()
        hidden = expand_width(in_chs, expansion)
        self.expand = ConvBNAct(in_chs, hidden, 1, act=act)
        self.dw = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SEModule(hidden, rd_channels=se_width(hidden, se)) if se else nn.Identity()
        self.project = ConvBNAct(hidden, out_chs, 1, act=None)
        self.has_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + out if self.has_residual else out


class UIB(nn.Module):
    """MobileNetV4's Universal Inverted Bottleneck (`autovit.blocks.uib`): [kxk depthwise start conv,
    BN, no act] -> 1x1 expand -> [kxk depthwise mid conv] -> 1x1 linear projection. A kernel of 0
    leaves that depthwise conv out (IB: mid only, ConvNext: start only, ExtraDW: both, FFN: none)."""

    def __init__(self, in_chs: int, out_chs: int, expansion: float, start_kernel: int, mid_kernel: int,
                 stride: int, act: str) -> None:
        super().__init__()
        hidden = expand_width(in_chs, expansion)
        s_start, s_mid = block_strides(start_kernel, mid_kernel, stride)
        self.dw_start = (ConvBNAct(in_chs, in_chs, start_kernel, s_start, groups=in_chs, act=None)
                         if start_kernel else nn.Identity())
        self.expand = ConvBNAct(in_chs, hidden, 1, act=act)
        self.dw_mid = (ConvBNAct(hidden, hidden, mid_kernel, s_mid, groups=hidden, act=act)
                       if mid_kernel else nn.Identity())
        self.project = ConvBNAct(hidden, out_chs, 1, act=None)
        self.has_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw_mid(self.expand(self.dw_start(x))))
        return x + out if self.has_residual else out


def multi_head_attention(qkv: torch.Tensor, heads: int, head_dim: int, scale: float) -> torch.Tensor:
    """Scaled dot-product attention on the output of a fused projection laid out as
    [q heads | k heads | v heads]: [B, N, 3 * heads * head_dim] -> [B, N, heads * head_dim]."""
    B, N, _ = qkv.shape
    qkv = qkv.reshape(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(B, N, heads * head_dim)


class Attention(nn.Module):
    """Multi-head self-attention with a fixed head dim: inner width = heads * head_dim.

    qkv rows are laid out as [q heads | k heads | v heads], so the first h heads of a larger
    block are a prefix slice of each third (weight inheritance in the supernet).
    """

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(multi_head_attention(self.qkv(x), self.heads, self.head_dim, self.scale))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float, act: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, expand_width(dim, mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def unfold_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * patch^2, N, C]: one sequence of N patches per pixel position.

    Maps whose sides are not multiples of `patch` are resized up first (as MobileViT does);
    `fold_patches(y, patch, (H, W))` undoes both steps.
    """
    B, C, H, W = x.shape
    nh, nw = math.ceil(H / patch), math.ceil(W / patch)
    if nh * patch != H or nw * patch != W:
        x = F.interpolate(x, size=(nh * patch, nw * patch), mode="bilinear", align_corners=False)
    x = x.reshape(B * C * nh, patch, nw, patch).transpose(1, 2)
    return x.reshape(B, C, nh * nw, patch * patch).transpose(1, 3).reshape(B * patch * patch, nh * nw, C)


def fold_patches(x: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `unfold_patches` for a map of spatial `size` (H, W)."""
    H, W = size
    nh, nw = math.ceil(H / patch), math.ceil(W / patch)
    C = x.shape[-1]
    B = x.shape[0] // (patch * patch)
    x = x.contiguous().view(B, patch * patch, nh * nw, C)
    x = x.transpose(1, 3).reshape(B * C * nh, nw, patch, patch)
    x = x.transpose(1, 2).reshape(B, C, nh * patch, nw * patch)
    if nh * patch != H or nw * patch != W:
        x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
    return x


@register_notrace_module  # shape-dependent unfold/fold: a leaf for torch.fx (as timm's MobileVitBlock)
class MobileViTBlock(nn.Module):
    """Local nxn conv + pointwise projection, unfold, global attention across patches, fold,
    1x1 projection, then fusion with the block input (kxk conv over the concatenation)."""

    def __init__(self, dim: int, stage: TransformerStage, head_dim: int, patch: int, local_kernel: int,
                 fusion_kernel: int, act: str) -> None:
        super().__init__()
        self.patch = patch
        self.conv_kxk = ConvBNAct(dim, dim, local_kernel, act=act)
        self.conv_1x1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.layers = nn.Sequential(*[TransformerLayer(dim, stage.heads, head_dim, stage.mlp_ratio, act)
                                      for _ in range(stage.depth)])
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvBNAct(dim, dim, 1, act=act)
        self.fusion = ConvBNAct(2 * dim, dim, fusion_kernel, act=act) if fusion_kernel else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        size = (x.shape[-2], x.shape[-1])
        y = unfold_patches(self.conv_1x1(self.conv_kxk(x)), self.patch)
        y = self.norm(self.layers(y))
        y = self.conv_proj(fold_patches(y, self.patch, size))
        if self.fusion is None:
            return shortcut + y
        return self.fusion(torch.cat((shortcut, y), dim=1))


class TransformerStageModule(nn.Module):
    """Downsampling MBConv (the stage transition) followed by a MobileViT block."""

    def __init__(self, in_chs: int, stage: TransformerStage, stride: int, arch: Arch) -> None:
        super().__init__()
        lay = arch.layout
        self.transition = MBConv(in_chs, stage.width, lay.transition_expansion, TRANSITION_KERNEL, stride,
                                 lay.activation)
        self.block = MobileViTBlock(stage.width, stage, lay.head_dim, lay.patch_size, lay.local_kernel,
                                    lay.fusion_kernel, lay.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.transition(x))


def multi_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, key_dim: int,
                          scale: float) -> torch.Tensor:
    """Multi-query attention on maps: q [B, heads * key_dim, H, W] attends over one shared key and
    value head k, v [B, key_dim, h, w]; returns [B, heads * key_dim, H, W]."""
    B, _, H, W = q.shape
    q = q.reshape(B, heads, key_dim, H * W).transpose(-2, -1)  # [B, heads, N, kd]
    k = k.flatten(2).unsqueeze(1)  # [B, 1, kd, M]
    v = v.flatten(2).transpose(-2, -1).unsqueeze(1)  # [B, 1, M, kd]
    attn = ((q * scale) @ k).softmax(dim=-1)  # [B, heads, N, M]
    return (attn @ v).transpose(-2, -1).reshape(B, heads * key_dim, H, W)


class MultiQueryAttention2d(nn.Module):
    """Mobile MQA (`autovit.blocks.mqa`): `heads` query heads over one key and one value head,
    optionally from a depthwise-strided (kv_stride 2) copy of the map; convs without bias. The query
    rows are head-major, so the first h heads of a larger block are a prefix slice."""

    def __init__(self, dim: int, heads: int, key_dim: int, kv_stride: int) -> None:
        super().__init__()
        self.heads, self.key_dim, self.scale = heads, key_dim, key_dim ** -0.5
        self.kv_down = (ConvBNAct(dim, dim, KV_KERNEL, kv_stride, groups=dim, act=None) if kv_stride > 1
                        else nn.Identity())
        self.q = nn.Conv2d(dim, heads * key_dim, 1, bias=False)
        self.k = nn.Conv2d(dim, key_dim, 1, bias=False)
        self.v = nn.Conv2d(dim, key_dim, 1, bias=False)
        self.proj = nn.Conv2d(heads * key_dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kv = self.kv_down(x)
        out = multi_query_attention(self.q(x), self.k(kv), self.v(kv), self.heads, self.key_dim, self.scale)
        return self.proj(out)


class MQALayer(nn.Module):
    """x + MQA(BN(x)), then x + FFN(x) (UIB's FFN variant: 1x1 expand + act, 1x1 projection)."""

    def __init__(self, dim: int, heads: int, key_dim: int, kv_stride: int, ffn_ratio: float, act: str) -> None:
        super().__init__()
        hidden = expand_width(dim, ffn_ratio)
        self.norm = nn.BatchNorm2d(dim)
        self.attn = MultiQueryAttention2d(dim, heads, key_dim, kv_stride)
        self.ffn = nn.Sequential(ConvBNAct(dim, hidden, 1, act=act), ConvBNAct(hidden, dim, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.ffn(x)


class MQAStageModule(nn.Module):
    """Downsampling MBConv (the stage transition) followed by `depth` MQA layers."""

    def __init__(self, in_chs: int, stage: MQAStage, stride: int, arch: Arch) -> None:
        super().__init__()
        lay = arch.layout
        self.transition = MBConv(in_chs, stage.width, lay.transition_expansion, TRANSITION_KERNEL, stride,
                                 lay.activation)
        self.layers = nn.Sequential(*[MQALayer(stage.width, stage.heads, lay.head_dim, stage.kv_stride,
                                               stage.ffn_ratio, lay.activation) for _ in range(stage.depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.transition(x))


def mbconv_stage(in_chs: int, stage: MBConvStage | UIBStage, stride: int, act: str) -> nn.Sequential:
    """The blocks of one conv stage (MBConv or UIB, after the gene's type)."""
    if isinstance(stage, UIBStage):
        return nn.Sequential(*[UIB(in_chs if i == 0 else stage.width, stage.width, stage.expansion, stage.start_kernel,
                                   stage.mid_kernel, stride if i == 0 else 1, act) for i in range(stage.depth)])
    return nn.Sequential(*[MBConv(in_chs if i == 0 else stage.width, stage.width, stage.expansion, stage.kernel,
                                  stride if i == 0 else 1, act, stage.se) for i in range(stage.depth)])


POOL_TYPES = ("avg", "max", "")  # timm `global_pool` values the MBPool head supports ('': no pooling)


def make_global_pool(pool_type: str) -> nn.Module:
    """The MBPool head's global pooling for a timm `global_pool` value."""
    if pool_type not in POOL_TYPES:
        raise AutovitError(f"global_pool '{pool_type}' is not supported by the AutoViT head",
                           hint="use 'avg' (the default), 'max', or '' (no pooling: the head runs at every position)")
    return {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}[pool_type](1) if pool_type else nn.Identity()


class MBPoolHead(nn.Module):
    """MBPool: [1x1 expand conv] -> global pool -> Linear feature-mix to `width` -> act -> classifier.

    With `pool_type=''` nothing is pooled: the mix, activation and classifier run at every position
    (as timm's MobileNetV3 head does with `global_pool=''`) and the output stays [B, C, H, W].
    """

    def __init__(self, in_chs: int, width: int, expansion: float, num_classes: int, act: str,
                 drop_rate: float = 0.0, pool_type: str = "avg") -> None:
        super().__init__()
        pooled = expand_width(in_chs, expansion) if expansion else in_chs
        self.expand = ConvBNAct(in_chs, pooled, 1, act=act) if expansion else nn.Identity()
        self.pool = make_global_pool(pool_type)
        self.pool_type = pool_type
        self.mix = nn.Linear(pooled, width)
        self.act = make_activation(act)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def set_pool(self, pool_type: str) -> None:
        self.pool = make_global_pool(pool_type)
        self.pool_type = pool_type

    def make_passthrough(self) -> None:
        """Drops every layer and the pooling: the head then returns its input unchanged."""
        self.expand, self.mix, self.act, self.drop, self.fc = (nn.Identity() for _ in range(5))
        self.set_pool("")

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.expand(x)
        if self.pool_type == "":
            x = x.permute(0, 2, 3, 1)  # channels-last, so that the Linear layers act at each position
        else:
            x = self.pool(x).flatten(1)
        x = self.drop(self.act(self.mix(x)))
        if not pre_logits:
            x = self.fc(x)
        if self.pool_type == "":
            x = x.permute(0, 3, 1, 2)
        return x


class AutoViT(nn.Module):
    """A hybrid CNN + ViT classifier built from an `Arch` (or its dict form), following timm's model
    contract: `num_features` is the width of `forward_features`' output, `head_hidden_size` that of
    the pre-logits (the MBPool width); see docs/architecture.md, "timm contract"."""

    __jit_unused_properties__ = ["_model_args"]

    def __init__(self, arch: Arch | Mapping[str, Any], num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, global_pool: str = "avg", **_: Any) -> None:
        super().__init__()
        if isinstance(arch, Mapping):
            arch = Arch.from_dict(arch)
        elif not isinstance(arch, Arch):
            raise AutovitError(f"AutoViT needs an Arch or its dict form, got {type(arch).__name__}",
                               hint="pass autovit.registry.resolve_arch(name_or_json_path)")
        self.arch = arch
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.grad_checkpointing = False
        lay = arch.layout
        act = lay.activation
        self.stem = ConvBNAct(in_chans, arch.stem_width, lay.stem_kernel, lay.stem_stride, act=act)
        stages: list[nn.Module] = []
        self.feature_info: list[dict[str, Any]] = []
        chs, reduction = arch.stem_width, lay.stem_stride
        for i, (stage, stride) in enumerate(zip(arch.mbconv, lay.mbconv_strides)):
            stages.append(mbconv_stage(chs, stage, stride, act))
            chs, reduction = stage.width, reduction * stride
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{i}"))
        for stage, stride in zip(arch.transformer, lay.transformer_strides):
            stage_module = MQAStageModule if isinstance(stage, MQAStage) else TransformerStageModule
            stages.append(stage_module(chs, stage, stride, arch))
            chs, reduction = stage.width, reduction * stride
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{len(stages) - 1}"))
        self.stages = nn.Sequential(*stages)
        self.head = MBPoolHead(chs, arch.head_width, lay.head_expansion, num_classes, act, drop_rate, global_pool)
        self.num_features = chs
        self.head_hidden_size = arch.head_width
        self.apply(init_weights)

    # timm's factory records its keyword arguments here for `save_for_hf` / hub configs; an `Arch`
    # argument is kept in its JSON form so that the config can be written and re-created from.
    @property
    def _model_args(self) -> dict[str, Any]:
        return self.__dict__.get("_factory_args", {})

    @_model_args.setter
    def _model_args(self, args: Mapping[str, Any]) -> None:
        args = dict(args)
        if isinstance(args.get("arch"), Arch):
            args["arch"] = args["arch"].to_dict()
        self.__dict__["_factory_args"] = args

    # timm-style API -------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (one per `feature_info` entry) picked by `indices` (None: all, int n: the last
        n, list: those), with the final features unless `intermediates_only`. There is no final
        norm, so `norm` changes nothing; `stop_early` skips the stages after the last one taken."""
        if output_fmt != "NCHW":
            raise AutovitError(f"output_fmt '{output_fmt}' is not supported", hint="AutoViT features are NCHW")
        if stop_early and not intermediates_only:
            raise AutovitError("stop_early needs intermediates_only=True",
                               hint="the final features need every stage to run")
        take_indices, max_index = _take_indices(len(self.stages), indices)
        x = self.stem(x)
        stages = self.stages[:max_index + 1] if stop_early else self.stages
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drops the stages after the last of `indices` (and the head, if `prune_head`); returns the
        absolute indices kept (timm's FeatureGetterNet calls this)."""
        take_indices, max_index = _take_indices(len(self.stages), indices)
        if not prune_head and max_index < len(self.stages) - 1:
            raise AutovitError("the head needs the last stage, which these indices prune",
                               hint="pass prune_head=True (the head is dropped) or keep the last stage")
        self.stages = self.stages[:max_index + 1]
        self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head:
            self.head.make_passthrough()
            self.num_classes, self.head_hidden_size = 0, self.num_features
        return take_indices

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier for `num_classes` (0: none, the head returns pre-logits); `global_pool`
        'avg' / 'max' / '' (no pooling) changes the pooling too."""
        if global_pool is not None:
            self.head.set_pool(global_pool)
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for timm's layer-wise LR decay: the stem, then one group per stage."""
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)")


def _take_indices(num_stages: int, indices: int | list[int] | None) -> tuple[list[int], int]:
    """timm's `feature_take_indices` (None: all, int n: the last n, list: those, negative from the
    end), with a clear error for indices out of range."""
    if isinstance(indices, int):
        bad = [] if 0 < indices <= num_stages else [indices]
    else:
        bad = [i for i in indices or [] if not -num_stages <= i < num_stages]
    if bad:
        raise AutovitError(f"feature index {bad[0]} is out of range for a model with {num_stages} stages",
                           hint=f"use indices in 0..{num_stages - 1} (or -{num_stages}..-1), or a count 1..{num_stages}")
    take, max_index = feature_take_indices(num_stages, indices)
    return list(take), max_index


def init_weights(m: nn.Module) -> None:
    """The initialisation of every AutoViT network (static and supernet alike)."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(arch: Arch, num_classes: int = 1000, **kwargs: Any) -> AutoViT:
    """The static network of `arch` with freshly initialised weights."""
    return AutoViT(arch, num_classes=num_classes, **kwargs)
