"""The static AutoViT network built from an `Arch`.

Conv stem -> MBConv stages -> MobileViT-style transformer stages -> MBPool head -> classifier.
Block choices (activation, norm, head dim, strides, fusion) are documented in docs/architecture.md;
`autovit.costs` mirrors this module in closed form, so change both together.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autovit.arch import Arch, MBConvStage, TransformerStage


def make_activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "hardswish": nn.Hardswish}[name]()


def expand_width(channels: int, ratio: float) -> int:
    """Hidden width of an expanded layer (MBConv expansion, MLP ratio)."""
    return max(1, int(round(channels * ratio)))


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + optional activation."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = make_activation(act) if act else nn.Identity()


class MBConv(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand -> kxk depthwise -> 1x1 linear projection.

    The 1x1 expand conv is kept at expansion 1 too (as timm's MobileViT does), so that in the
    supernet the depthwise conv always sees the output of the same expand conv.
    """

    def __init__(self, in_chs: int, out_chs: int, expansion: float, kernel: int, stride: int, act: str) -> None:
        super().__init__()
        hidden = expand_width(in_chs, expansion)
        self.expand = ConvBNAct(in_chs, hidden, 1, act=act)
        self.dw = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.project = ConvBNAct(hidden, out_chs, 1, act=None)
        self.has_residual = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw(self.expand(x)))
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


def unfold_patches(x: torch.Tensor, patch: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """[B, C, H, W] -> [B * patch^2, N, C]: one sequence of N patches per pixel position.

    Maps whose sides are not multiples of `patch` are resized up first (as MobileViT does).
    """
    B, C, H, W = x.shape
    new_h, new_w = math.ceil(H / patch) * patch, math.ceil(W / patch) * patch
    resized = (new_h, new_w) != (H, W)
    if resized:
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    nh, nw = new_h // patch, new_w // patch
    x = x.reshape(B * C * nh, patch, nw, patch).transpose(1, 2)
    x = x.reshape(B, C, nh * nw, patch * patch).transpose(1, 3).reshape(B * patch * patch, nh * nw, C)
    return x, {"B": B, "C": C, "H": H, "W": W, "nh": nh, "nw": nw, "resized": resized}


def fold_patches(x: torch.Tensor, patch: int, info: dict[str, Any]) -> torch.Tensor:
    """Inverse of `unfold_patches`."""
    B, C, nh, nw = info["B"], info["C"], info["nh"], info["nw"]
    x = x.contiguous().view(B, patch * patch, nh * nw, C)
    x = x.transpose(1, 3).reshape(B * C * nh, nw, patch, patch)
    x = x.transpose(1, 2).reshape(B, C, nh * patch, nw * patch)
    if info["resized"]:
        x = F.interpolate(x, size=(info["H"], info["W"]), mode="bilinear", align_corners=False)
    return x


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
        y, info = unfold_patches(self.conv_1x1(self.conv_kxk(x)), self.patch)
        y = self.norm(self.layers(y))
        y = self.conv_proj(fold_patches(y, self.patch, info))
        if self.fusion is None:
            return shortcut + y
        return self.fusion(torch.cat((shortcut, y), dim=1))


class TransformerStageModule(nn.Module):
    """Downsampling MBConv (the stage transition) followed by a MobileViT block."""

    def __init__(self, in_chs: int, stage: TransformerStage, stride: int, arch: Arch) -> None:
        super().__init__()
        lay = arch.layout
        self.transition = MBConv(in_chs, stage.width, lay.transition_expansion, 3, stride, lay.activation)
        self.block = MobileViTBlock(stage.width, stage, lay.head_dim, lay.patch_size, lay.local_kernel,
                                    lay.fusion_kernel, lay.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.transition(x))


def mbconv_stage(in_chs: int, stage: MBConvStage, stride: int, act: str) -> nn.Sequential:
    return nn.Sequential(*[MBConv(in_chs if i == 0 else stage.width, stage.width, stage.expansion, stage.kernel,
                                  stride if i == 0 else 1, act) for i in range(stage.depth)])


class MBPoolHead(nn.Module):
    """MBPool: [1x1 expand conv] -> global average pool -> 1x1 feature-mix to `width` -> classifier."""

    def __init__(self, in_chs: int, width: int, expansion: float, num_classes: int, act: str,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        pooled = expand_width(in_chs, expansion) if expansion else in_chs
        self.expand = ConvBNAct(in_chs, pooled, 1, act=act) if expansion else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mix = nn.Linear(pooled, width)
        self.act = make_activation(act)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        self.num_features = width

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.mix(self.pool(self.expand(x)).flatten(1)))
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class AutoViT(nn.Module):
    """A hybrid CNN + ViT classifier built from an `Arch` (timm-compatible interface)."""

    def __init__(self, arch: Arch, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 **_: Any) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
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
            stages.append(TransformerStageModule(chs, stage, stride, arch))
            chs, reduction = stage.width, reduction * stride
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{len(stages) - 1}"))
        self.stages = nn.Sequential(*stages)
        self.head = MBPoolHead(chs, arch.head_width, lay.head_expansion, num_classes, act, drop_rate)
        self.num_features = self.head_hidden_size = arch.head_width
        self.apply(_init_weights)

    # timm-style API -------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.head.num_features, num_classes) if num_classes > 0 else nn.Identity()


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(arch: Arch, num_classes: int = 1000, **kwargs: Any) -> AutoViT:
    """The static network of `arch` with freshly initialised weights."""
    return AutoViT(arch, num_classes=num_classes, **kwargs)
