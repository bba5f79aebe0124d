"""Shared CLI helpers: consoles, JSON output, tables."""

from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


_LABELS = {"error": "bold red", "hint": "yellow", "warning": "yellow", "note": "yellow"}


def print_problem(label: str, message: str) -> None:
    """One `label: message` line on stderr: the message is printed as is (no rich markup, no
    highlighting) and never hard-wrapped, so a path in it stays whole."""
    from rich.markup import escape

    err_console.print(f"[{_LABELS[label]}]{label}:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Machine-readable output for `--json` (plain stdout, no rich markup)."""
    print(json.dumps(obj, indent=2, default=str))


def make_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    return table
