"""The static AutoViT network built from an `Arch`.

Conv stem -> MBConv (or UIB) stages -> MobileViT-style transformer stages -> MBPool head -> classifier.
Block choices (activation, norm, head dim, strides, fusion) are documented in docs/architecture.md;
`autovit.costs` mirrors this module in closed form, so change both together.
"""

# No `from __future__ import annotations` here: torch.fx copies forward()'s annotations into the
# code it generates, and string annotations there break scripting an FX graph (timm's fx + jit test).
from typing import Any, Mapping

import torch
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn

from autovit.arch import Arch, MBConvStage, MQAStage, UIBStage
from autovit.blocks.base import expand_width  # noqa: F401  (re-exported)
from autovit.errors import AutovitError

# Each block kind's static module lives in its kind package (`autovit.blocks.<kind>.nn`); they are
# re-exported here so that `autovit.model.MBConv` etc. keep working.
from autovit.blocks.layers import Attention, ConvBNAct, Mlp, make_activation, multi_head_attention  # noqa: F401
from autovit.blocks.head.nn import POOL_TYPES, MBPoolHead, make_global_pool  # noqa: F401
from autovit.blocks.mbconv.nn import MBConv
from autovit.blocks.mobilevit.nn import (  # noqa: F401
    MobileViTBlock,
    TransformerLayer,
    TransformerStageModule,
    fold_patches,
    unfold_patches,
)
from autovit.blocks.mqa.nn import MQALayer, MQAStageModule, MultiQueryAttention2d, multi_query_attention  # noqa: F401
from autovit.blocks.uib.nn import UIB


def mbconv_stage(in_chs: int, stage: MBConvStage | UIBStage, stride: int, act: str) -> nn.Sequential:
    """The blocks of one conv stage (MBConv or UIB, after the gene's type)."""
    if isinstance(stage, UIBStage):
        return nn.Sequential(*[UIB(in_chs if i == 0 else stage.width, stage.width, stage.expansion, stage.start_kernel,
                                   stage.mid_kernel, stride if i == 0 else 1, act) for i in range(stage.depth)])
    return nn.Sequential(*[MBConv(in_chs if i == 0 else stage.width, stage.width, stage.expansion, stage.kernel,
                                  stride if i == 0 else 1, act, stage.se) for i in range(stage.depth)])


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
