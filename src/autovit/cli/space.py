"""`autovit space show`: the choices, constraint, cardinality and parameter range of a space."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import typer

from autovit.cli._common import console, make_table, print_json

space_app = typer.Typer(help="Inspect search spaces (builtin xxs|xs|s|mnv4_s|mnv4_m or a YAML file).",
                        no_args_is_help=True)

# Paper section 3.2 / abstract: the constraint shrinks the space from about 10^16 to 10^10.
PAPER_LOG10_CARDINALITY = {"unconstrained": 16, "constrained": 10}


def space_summary(space: Any) -> dict[str, Any]:
    """Everything `space show` prints, as plain data (also used by docs and reports)."""
    from autovit.costs import count_params

    small, large = space.width_extremes()
    constrained, unconstrained = space.cardinality(True), space.cardinality(False)
    return {
        "name": space.name,
        "description": space.description,
        "choices": {k: v for k, v in space.to_dict().items()
                    if k not in ("name", "description", "layout", "constraints", "paper_param_range")},
        "constraint": {"nondecreasing_widths": space.nondecreasing_widths},
        "cardinality": {"constrained": constrained, "unconstrained": unconstrained,
                        "log10_constrained": round(math.log10(constrained), 2),
                        "log10_unconstrained": round(math.log10(unconstrained), 2)},
        "paper_log10_cardinality": PAPER_LOG10_CARDINALITY,
        "param_range": {"min": count_params(small), "max": count_params(large),
                        "min_arch": small.key(), "max_arch": large.key()},
        "paper_param_range": list(space.paper_param_range) if space.paper_param_range else None,
        "layout": space.layout.to_dict(),
    }


def _fmt(values: Any) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"


@space_app.command("show")
def show(
    space: str = typer.Argument(..., help="xxs, xs, s, mnv4_s, mnv4_m or the path of a space YAML file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Choices per dimension, the constraint, exact cardinality and the parameter range."""
    from autovit.space import SearchSpace

    sp = SearchSpace.load(space)
    data = space_summary(sp)
    if as_json:
        print_json(data)
        return
    title = f"search space '{sp.name}'"
    rows: list[list[Any]] = [["resolution", _fmt(sp.resolution)], ["Conv (stem) width", _fmt(sp.stem_width)],
                             ["transformer stages", _fmt(sp.num_transformer_stages)],
                             ["MBPool width", _fmt(sp.head_width)]]
    if sp.description:
        console.print(sp.description)
    console.print(make_table(title, ["dimension", "choices"], rows))
    for kind, slots in ((sp.conv_kind, sp.mbconv), (sp.attention_kind, sp.transformer)):
        if not slots:
            continue
        # A later (defaulted) field gets a column only where the space searches it.
        names = [f.name for f in kind.fields
                 if f.default is None or any(getattr(c, f.name) != (f.default,) for c in slots)]
        rows = [[f"{kind.title}-{i + 1}"] + [_fmt(getattr(c, n)) for n in names] for i, c in enumerate(slots)]
        console.print(make_table(None, ["block"] + [n.replace("_", " ") for n in names], rows))
    card = data["cardinality"]
    pr, ppr = data["param_range"], data["paper_param_range"]
    paper_range = f"{ppr[0] / 1e6:.1f}-{ppr[1] / 1e6:.1f}M" if ppr else "-"
    summary = [
        ["non-decreasing transformer widths", "on" if sp.nondecreasing_widths else "off", "-"],
        ["cardinality, constraint off", f"{card['unconstrained']:,} (10^{card['log10_unconstrained']})", "~10^16"],
        ["cardinality, constraint on", f"{card['constrained']:,} (10^{card['log10_constrained']})", "~10^10"],
        ["params range (1000 classes)", f"{pr['min'] / 1e6:.3f}-{pr['max'] / 1e6:.3f}M", paper_range],
    ]
    console.print(make_table(None, ["", "ours", "paper"], summary))
    layout = ", ".join(f"{f.name}={getattr(sp.layout, f.name)}" for f in fields(sp.layout))
    console.print(f"[dim]layout: {layout}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Adds `autovit space ...` to the main app."""
    app.add_typer(space_app, name="space")
