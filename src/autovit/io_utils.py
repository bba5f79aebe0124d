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


# ----------------------------------------------------------------------------- output paths
def _check_parents(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a folder this process can write into."""
    from autovit.errors import AutovitError

    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise AutovitError(f"{what} {path} cannot be created: {parent} is a file, not a folder",
                           hint=f"choose a path outside {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AutovitError(f"{what} {path} cannot be created: the folder {parent} is not writable",
                           hint="choose a folder you can write to, or fix its permissions")


def ensure_writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Checks, before any work, that `path` is a writable folder or can be created as one.

    Raises one `AutovitError` naming the problem when `path` is an existing file, lies under a
    file, or its folder is not writable. Creates nothing."""
    from autovit.errors import AutovitError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AutovitError(f"{what} {path} is an existing file, but a folder is expected here",
                           hint="pass the path of a folder (it is created when missing)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise AutovitError(f"{what} {path} is not writable", hint="choose a folder you can write to, "
                                                                      "or fix its permissions")
        return path
    _check_parents(path, what)
    return path


def ensure_writable_file(path: str | Path, what: str = "--out") -> Path:
    """Checks, before any work, that the file `path` can be written (created or replaced).

    Raises one `AutovitError` naming the problem when `path` is an existing folder, lies under a
    file, or its folder is not writable. Creates nothing."""
    from autovit.errors import AutovitError

    path = Path(path)
    if path.is_dir():
        raise AutovitError(f"{what} {path} is an existing folder, but a file is expected here",
                           hint=f"pass a file path, e.g. {path / 'out.json'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise AutovitError(f"{what} {path} exists and is not writable",
                           hint="choose another file name, or fix its permissions")
    if path.parent.is_dir():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise AutovitError(f"{what} {path} cannot be written: the folder {path.parent} is not writable",
                               hint="choose a folder you can write to, or fix its permissions")
        return path
    _check_parents(path, what)
    return path


# ----------------------------------------------------------------------------- safe checkpoint reading
def torch_load_tensors(path: str | Path, what: str = "checkpoint", hint: str | None = None) -> Any:
    """`torch.load(path, weights_only=True)` on CPU; any failure is one `AutovitError`.

    A file with pickled Python objects (classes, functions) is refused as "not a plain-tensor
    checkpoint", and the message never suggests `weights_only=False` (that would run the pickle)."""
    import re

    import torch

    from autovit.errors import AutovitError

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable files
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise AutovitError(
                f"{what} {path} is not a plain-tensor checkpoint written by autovit: it holds a pickled Python "
                f"object ({found.group(1)}), which is never loaded because unpickling can run arbitrary code",
                hint=hint or "re-create the file with autovit, or convert it from a trusted source into a plain "
                             "state dict of tensors (torch.save(model.state_dict())) or a .safetensors file") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
        reason = detail.group(1).strip() if detail else (text.splitlines() or [""])[0]
        if "weights_only" in reason:  # keep torch's advice to disable the safety check out of our message
            reason = "unreadable"
        raise AutovitError(f"corrupt or unreadable {what} {path} ({type(err).__name__}: {reason[:200]})",
                           hint=hint or "the file is damaged or not a PyTorch checkpoint; use an earlier copy or "
                                        "re-create it") from None
