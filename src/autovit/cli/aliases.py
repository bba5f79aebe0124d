"""Old option spellings, still accepted: each is rewritten to its current name with a one-line note.

One name per concept across commands (the table is in README.md, "Option names"):
`--supernet` a supernet checkpoint, `--dataset` / `--data-dir` the data, `--force-*` names what it
forces, `--resume` continues the run in `--out` (`--resume-from PATH` another checkpoint),
`--blocks` which block variants a latency table times. The current names are the only ones in
`--help`; the old ones keep scripts written against earlier versions working.
"""

from __future__ import annotations

from typing import Callable, Sequence

import click
from typer.core import TyperGroup

# command path -> {old spelling: current spelling}
RENAMED: dict[tuple[str, ...], dict[str, str]] = {
    ("supernet", "train"): {"--init-from": "--supernet"},
    ("supernet", "eval"): {"--ckpt": "--supernet"},
    ("train",): {"--init-from": "--supernet"},
    ("search",): {"--data": "--dataset"},
    ("export",): {"--calib-data": "--dataset", "--checkpoint": "--subnet"},
    ("latency", "profile"): {"--force": "--force-unstable", "--measure": "--blocks"},
    ("latency", "export-suite"): {"--measure": "--blocks"},
    ("latency", "predict"): {"--force": "--force-arch"},
    ("latency", "validate"): {"--force": "--force-table"},
}

# Commands where `--resume` used to take a value: 'auto' (now the plain flag) or a checkpoint path
# (now `--resume-from PATH`). None of them has positional arguments, so a value is unambiguous.
RESUME_TOOK_A_VALUE = {("supernet", "train"), ("train",)}


def command_path(args: Sequence[str]) -> tuple[str, ...]:
    """The longest command path of `args` that has renamed options (e.g. ('latency', 'profile'))."""
    words = tuple(args[:2])
    for n in (2, 1):
        if words[:n] in RENAMED or words[:n] in RESUME_TOOK_A_VALUE:
            return words[:n]
    return ()


def rewrite_args(args: Sequence[str], note: Callable[[str], None] | None = None) -> list[str]:
    """`args` with every old spelling replaced by the current one; `note` gets one line per rewrite."""
    path = command_path(args)
    if not path:
        return list(args)
    renamed = RENAMED.get(path, {})
    where = "autovit " + " ".join(path)
    out = list(args[:len(path)])
    rest = list(args[len(path):])
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token == "--":
            out += rest[i - 1:]
            break
        name, eq, value = token.partition("=")
        if name == "--resume" and path in RESUME_TOOK_A_VALUE:
            if not eq and i < len(rest) and not rest[i].startswith("-"):
                value, eq = rest[i], "="
                i += 1
            if eq:
                new = ["--resume"] if value == "auto" else ["--resume-from", value]
                if note:
                    note(f"`{where} --resume {value}` is now `{' '.join(new)}`")
                out += new
                continue
        if name in renamed:
            if note:
                note(f"`{where} {name}` is now `{renamed[name]}` (the old spelling still works)")
            token = renamed[name] + eq + value
        out.append(token)
    return out


class AliasGroup(TyperGroup):
    """The top-level command group: rewrites old option spellings before click parses them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from autovit.cli._common import print_problem

        return super().parse_args(ctx, rewrite_args(args, lambda message: print_problem("note", message)))
