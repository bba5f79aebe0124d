"""The paper's searched models (Table 5) and their registration with timm.

After `import autovit`, `timm.create_model("autovit_xxs", num_classes=10)` works, including
`features_only=True` (also `feature_cls="getter"`), and `arch=` builds a searched architecture under
timm's interface (`timm.create_model("autovit_xs", arch="runs/search/best.json")`). (A process whose first autovit import was `autovit.cli` imports the package
lazily; code there that builds autovit_* models by name imports this module itself.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from autovit.arch import Arch, MBConvStage as M, TransformerStage as T
from autovit.costs import stage_costs
from autovit.errors import AutovitError
from autovit.model import AutoViT
from autovit.space import SearchSpace

# Table 5, exactly as printed (the S stem kernel "33" is read as 3).
_TABLE5: dict[str, dict[str, Any]] = {
    "xxs": dict(stem_width=16, mbconv=(M(16, 1, 1, 3), M(24, 2, 2, 3), M(32, 2, 2, 3)),
                transformer=(T(48, 4, 3, 1), T(64, 3, 3, 1.5), T(80, 3, 3, 2), T(96, 2, 4, 2)), head_width=1000),
    "xs": dict(stem_width=16, mbconv=(M(16, 1, 1, 3), M(24, 2, 2, 3), M(32, 3, 2, 3)),
               transformer=(T(96, 4, 4, 1.5), T(120, 3, 6, 2), T(144, 4, 4, 2), T(168, 4, 4, 2)), head_width=1280),
    "s": dict(stem_width=16, mbconv=(M(16, 2, 1, 3), M(24, 3, 2, 3), M(32, 3, 2, 3)),
              transformer=(T(128, 5, 9, 1.5), T(176, 4, 8, 2), T(224, 4, 8, 2), T(272, 5, 9, 1.5)), head_width=1560),
}

PAPER_NUMBERS = {  # Table 2: params (M), FLOPs (G), ImageNet top-1 (%), iPhone latency (ms)
    "xxs": dict(params_m=1.8, flops_g=0.3, top1=71.3, latency_ms=10.2),
    "xs": dict(params_m=2.5, flops_g=0.8, top1=75.5, latency_ms=19.3),
    "s": dict(params_m=6.3, flops_g=1.3, top1=79.2, latency_ms=27.9),
}

MODEL_NAMES = tuple(f"autovit_{k}" for k in _TABLE5)


def paper_arch(size: str, resolution: int = 256) -> Arch:
    """The searched architecture of Table 5 ('xxs', 'xs' or 's') with its space's layout."""
    space = SearchSpace.builtin(size)
    return Arch(resolution=resolution, layout=space.layout, **_TABLE5[size])


def resolve_arch(name_or_path: str | Path) -> Arch:
    """`autovit_xxs` / `xxs` style names, or the path of an arch JSON file."""
    text = str(name_or_path)
    short = text.removeprefix("autovit_")
    if short in _TABLE5:
        return paper_arch(short)
    if text.endswith(".json") or Path(text).is_file():
        return Arch.load(text)
    raise AutovitError(f"unknown model '{text}'",
                       hint=f"use one of {', '.join(MODEL_NAMES)} or the path of an arch JSON file")


def model_cfg(arch: Arch, **kwargs: Any) -> dict[str, Any]:
    """timm pretrained cfg of `arch`: its input size and final feature-map size, and the
    preprocessing of autovit's own pipeline (`autovit.data`: ImageNet mean/std, bicubic resize,
    eval crop_pct 1.0), which is what any weights trained with autovit expect."""
    side = [c for c in stage_costs(arch) if c.name != "head"][-1].out_size  # the last stage's output map
    return {
        "url": "", "num_classes": 1000, "input_size": (3, arch.resolution, arch.resolution),
        "pool_size": (side, side), "crop_pct": 1.0, "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv", "classifier": "head.fc", **kwargs,
    }


default_cfgs = generate_default_cfgs({f"autovit_{size}.untrained": model_cfg(paper_arch(size)) for size in _TABLE5})


def timm_model_name(arch: Arch) -> str:
    """The registered name to build `arch` under: that of the first built-in space (xxs, xs, s) that
    contains it at its resolution, else autovit_xxs. Any of them builds `arch` when it is passed as
    `arch=`; the name only labels hub configs."""
    for size in _TABLE5:
        if SearchSpace.builtin(size).with_resolution(arch.resolution).contains(arch):
            return f"autovit_{size}"
    return MODEL_NAMES[0]


def create_autovit(variant: str, arch: Arch | Mapping[str, Any] | str | Path | None = None, pretrained: bool = False,
                   **kwargs: Any) -> AutoViT:
    """Build through timm's builder (pretrained cfg, features_only, ...). `arch` (an `Arch`, its dict
    form, a paper model name or an arch JSON path) replaces the variant's paper architecture; the
    cfg's input and pool sizes then follow it."""
    given = arch is not None
    if arch is None:
        arch = paper_arch(variant.removeprefix("autovit_"))
    elif isinstance(arch, Mapping):
        arch = Arch.from_dict(arch)
    elif not isinstance(arch, Arch):
        arch = resolve_arch(arch)
    cfg = model_cfg(arch)
    overlay = {k: cfg[k] for k in ("input_size", "pool_size")}
    overlay.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
    model = build_model_with_cfg(AutoViT, variant, pretrained, arch=arch, pretrained_cfg_overlay=overlay,
                                 feature_cfg=dict(flatten_sequential=True), **kwargs)
    if given and isinstance(model, AutoViT):  # reconstruction args for hub configs (timm.models.save_for_hf)
        model._model_args = {"arch": arch}
    return model


@register_model
def autovit_xxs(pretrained: bool = False, **kwargs: Any) -> AutoViT:
    """AutoViT-XXS (paper Table 5)."""
    return create_autovit("autovit_xxs", pretrained=pretrained, **kwargs)


@register_model
def autovit_xs(pretrained: bool = False, **kwargs: Any) -> AutoViT:
    """AutoViT-XS (paper Table 5)."""
    return create_autovit("autovit_xs", pretrained=pretrained, **kwargs)


@register_model
def autovit_s(pretrained: bool = False, **kwargs: Any) -> AutoViT:
    """AutoViT-S (paper Table 5)."""
    return create_autovit("autovit_s", pretrained=pretrained, **kwargs)
