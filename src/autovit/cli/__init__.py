"""The `autovit` command line (typer + rich).

Each command group lives in its own module and registers itself on `app` below. Errors
derived from `AutovitError` print one message (no traceback) and exit with code 2.
"""

from __future__ import annotations

import sys

import typer

from autovit.cli._common import err_console
from autovit.errors import AutovitError

app = typer.Typer(
    name="autovit",
    help="Latency-aware architecture search for hybrid CNN + ViT models (AutoViT).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command groups: (module, name or None for top-level commands registered by the module).
_GROUPS = ("space", "model", "bench", "supernet", "latency", "search", "run")


def _register() -> None:
    import importlib

    for name in _GROUPS:
        module = importlib.import_module(f"autovit.cli.{name}")
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `autovit` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except AutovitError as err:
        err_console.print(f"[bold red]error:[/] {err.message}")
        if err.hint:
            err_console.print(f"[yellow]hint:[/] {err.hint}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
