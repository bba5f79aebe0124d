"""User-facing errors: one clear message naming the problem and the fix."""

from __future__ import annotations


class AutovitError(Exception):
    """Base class for errors caused by user input (bad files, values, budgets).

    The CLI prints ``str(err)`` without a traceback and exits with code 2.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ArchError(AutovitError, ValueError):
    """An architecture is malformed or outside its search space."""


class SpaceError(AutovitError, ValueError):
    """A search-space definition is malformed."""
