"""`autovit model info`: params, MACs and per-stage breakdown of an AutoViT architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from autovit.arch import attention_kind, conv_kind
from autovit.cli._common import console, make_table, print_json

model_app = typer.Typer(help="Inspect AutoViT models (paper models or arch JSON files).", no_args_is_help=True)


@model_app.command("info")
def info(
    model: str = typer.Argument(..., help="autovit_xxs|xs|s or the path of an arch JSON file."),
    space: Optional[str] = typer.Option(None, help="Validate the arch against this space (name or YAML)."),
    num_classes: int = typer.Option(1000, "--num-classes", help="Classifier size."),
    resolution: Optional[int] = typer.Option(None, "--resolution", "-r",
                                             help="Count MACs at this input side (default: the arch's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Params, MACs and the per-stage breakdown of a model (closed form, nothing is built)."""
    from autovit.costs import stage_costs
    from autovit.errors import AutovitError
    from autovit.registry import resolve_arch
    from autovit.space import SearchSpace

    if num_classes < 0:
        raise AutovitError(f"--num-classes must be >= 0, got {num_classes}")
    if space is not None:
        sp = SearchSpace.load(space)
        # An arch JSON takes the space's layout when it has none; a paper model is checked as is.
        is_file = model.endswith(".json") or Path(model).is_file()
        arch = sp.parse_arch(Path(model)) if is_file else sp.validate(resolve_arch(model))
    else:
        arch = resolve_arch(model)
    if resolution is not None:
        if resolution < 8:
            raise AutovitError(f"--resolution must be >= 8, got {resolution}")
        arch = arch.replace(resolution=resolution)
    stages = stage_costs(arch, num_classes)
    params, macs = sum(s.params for s in stages), sum(s.macs for s in stages)
    data = {
        "model": model, "key": arch.key(), "resolution": arch.resolution, "num_classes": num_classes,
        "params": params, "macs": macs, "space": space,
        "stages": [dict(name=s.name, params=s.params, macs=s.macs, out_channels=s.out_channels,
                        out_size=s.out_size) for s in stages],
        "arch": arch.to_dict(),
    }
    if as_json:
        print_json(data)
        return
    rows = [[s.name, s.out_channels, f"{s.out_size}x{s.out_size}", f"{s.params:,}", f"{100 * s.params / params:.1f}",
             f"{s.macs / 1e6:.2f}", f"{100 * s.macs / macs:.1f}"] for s in stages]
    rows.append(["total", "", "", f"{params:,}", "100.0", f"{macs / 1e6:.2f}", "100.0"])
    title = f"{model} @ {arch.resolution}x{arch.resolution}: {params / 1e6:.3f}M params, {macs / 1e9:.3f} GMACs"
    console.print(make_table(title, ["stage", "out ch", "out size", "params", "% params", "MMACs", "% MACs"], rows))
    details = [[kind.name + str(i + 1), s.width, s.depth,
                ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in kind.to_dict(s).items()
                          if name not in ("width", kind.depth_field))]
               for kind, stages in ((conv_kind(arch.mbconv), arch.mbconv), (attention_kind(arch.transformer), arch.transformer))
               for i, s in enumerate(stages)]
    title = f"stem {arch.stem_width}, MBPool {arch.head_width}" + (f", valid in space {space}" if space else "")
    console.print(make_table(title, ["stage", "width", "depth", "details"], details))
    console.print(f"[dim]key: {arch.key()}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Adds `autovit model ...` to the main app."""
    app.add_typer(model_app, name="model")
