"""Shared CLI helpers: consoles, JSON output, tables."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator, Sequence

from rich.console import Console
from rich.table import Table

# Redirected to a file (a pipeline log, CI), text lines are not hard-wrapped at rich's default 80
# columns: a log line stays one line and a path in it stays whole. Tables still fit the width.
console = Console(soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


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


def usage_errors() -> tuple[type, ...]:
    """Exception classes of a bad flag or value: typer >= 0.22 vendors its own click, older typer
    raises click's."""
    import typer

    errors: list[type] = [getattr(typer, "TyperException", typer.BadParameter)]
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(errors)


@contextlib.contextmanager
def phase_progress(enabled: bool = True) -> Iterator[Any]:
    """Yields `update(phase, done, total)` driving a rich progress bar with one task per phase
    (export, measure, fit-..., coarse, fine), with ETA; yields None when not `enabled`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not enabled:
        yield None
        return
    bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), console=err_console, transient=False)
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    with bar:
        yield update
