"""The `autovit` command line (typer + rich).

Each command group lives in its own module and registers itself on `app` below. Errors
derived from `AutovitError` print one message (no traceback) and exit with code 2. Command modules
import torch, timm and onnx inside their command bodies only, so `--help` and `--version` are fast
(tests/test_cli_spelling.py checks that importing this package leaves torch unimported).
"""

from __future__ import annotations

import sys

import typer

from autovit.cli._common import err_console, print_problem
from autovit.cli.aliases import AliasGroup
from autovit.errors import AutovitError

app = typer.Typer(
    name="autovit",
    cls=AliasGroup,
    help="Latency-aware architecture search for hybrid CNN + ViT models (AutoViT).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command groups: (module, name or None for top-level commands registered by the module).
_GROUPS = ("space", "model", "bench", "supernet", "latency", "search", "run")


def package_version() -> str:
    """The installed distribution's version (the source tree's when autovit is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autovit")
    except PackageNotFoundError:
        import autovit

        return autovit.__version__


def _print_version(value: bool) -> None:
    if value:
        print(f"autovit {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the autovit version and exit.")) -> None:
    """Latency-aware architecture search for hybrid CNN + ViT models (AutoViT)."""


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
        print_problem("error", err.message)
        if err.hint:
            print_problem("hint", err.hint)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
