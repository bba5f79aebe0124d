"""The paper's searched models (Table 5) and their registration with timm.

After `import autovit`, `timm.create_model("autovit_xxs", num_classes=10)` works, including
`features_only=True`. (A process whose first autovit import was `autovit.cli` imports the package
lazily; code there that builds autovit_* models by name imports this module itself.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from autovit.arch import Arch, MBConvStage as M, TransformerStage as T
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


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 256, 256), "pool_size": (8, 8),
        "crop_pct": 0.9, "interpolation": "bicubic", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
        "first_conv": "stem.conv", "classifier": "head.fc", **kwargs,
    }


default_cfgs = generate_default_cfgs({f"{name}.untrained": _cfg() for name in MODEL_NAMES})


def create_autovit(variant: str, arch: Arch | None = None, pretrained: bool = False, **kwargs: Any) -> AutoViT:
    """Build through timm's builder (pretrained cfg, features_only, ...)."""
    arch = arch or paper_arch(variant.removeprefix("autovit_"))
    return build_model_with_cfg(AutoViT, variant, pretrained, arch=arch,
                                feature_cfg=dict(flatten_sequential=True), **kwargs)


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
