"""Atomic file writes (temp file + rename) so an interrupted job never leaves a half file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls `write(tmp_path)` then renames tmp_path onto `path` (same directory, atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600 files, and some writers (safetensors) replace the file with their own
        # 0600 temp file: set the usual umask permissions after writing, on whatever file is there.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def save_json(path: str | Path, obj: Any) -> Path:
    """Pretty JSON, written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_default) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def parse_yaml(text: str, source: str, error: "type[Exception] | None" = None) -> Any:
    """`yaml.safe_load` whose syntax errors become one `error` naming `source`, line and column."""
    import yaml

    from autovit.errors import AutovitError

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise (error or AutovitError)(f"{source}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None


def read_yaml(path: str | Path, what: str, hint: str, error: "type[Exception] | None" = None) -> Any:
    """Parses the YAML file `path`; a missing, binary or malformed file raises one `error`
    ("<what> not found: <path>" with `hint`, "not a text file", "malformed YAML at line ...")."""
    from autovit.errors import AutovitError

    error = error or AutovitError
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}", hint=hint)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file", hint=hint) from None
    return parse_yaml(text, str(path), error)


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
