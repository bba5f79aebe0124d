"""Timestamped log lines for the benchmark scripts (their output usually goes to a log file)."""

from __future__ import annotations

import time


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class LogConsole:
    """Plain console for the trainer's periodic log lines (no progress bar in a log file)."""

    is_terminal = False

    def print(self, msg: str) -> None:
        log(msg)
