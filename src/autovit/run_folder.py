"""Run folders: the marker that says autovit created a folder, the lock that keeps a second run
out of it, orphan cleanup after a kill, and the only deletion `--fresh` may do.

A run folder (`autovit run`'s `out`, `autovit supernet train --out`, `autovit search --out`) holds:

- `.autovit-run`: the marker, written when autovit creates the folder (or finds it empty). Only a
  folder with the marker may be deleted by `--fresh`.
- `.autovit.lock`: locked (`flock`, exclusive) by the process using the folder, with its pid inside.
  A second run on the same folder is refused while the first one lives; the kernel drops the lock
  when the process dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from autovit.errors import AutovitError
from autovit.io_utils import ensure_writable_dir

MARKER_FILE = ".autovit-run"
LOCK_FILE = ".autovit.lock"
# `io_utils.atomic_write` temp files: mkstemp(prefix=".<name>.", suffix=".tmp"), 8 random characters.
_ORPHAN_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def has_marker(folder: str | Path) -> bool:
    return (Path(folder) / MARKER_FILE).is_file()


def _is_main_process() -> bool:
    """False on the non-zero ranks of a torchrun group (only rank 0 owns the folder)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def prepare(folder: str | Path, kind: str) -> bool:
    """Creates `folder` if needed and writes the marker when it is new or empty; returns whether
    the folder carries the marker (i.e. is autovit's own)."""
    folder = Path(folder)
    ensure_writable_dir(folder, "the run folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AutovitError(f"cannot create the run folder {folder}: {err.strerror}",
                           hint="pass an output folder you can write to") from None
    if has_marker(folder):
        return True
    if any(p.name != LOCK_FILE for p in folder.iterdir()):
        return False
    from autovit.io_utils import save_json

    save_json(folder / MARKER_FILE, {"autovit_run": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return True


def adopt(folder: str | Path, kind: str) -> None:
    """Marks an existing folder as autovit's (a run folder written by a version without markers)."""
    from autovit.io_utils import save_json

    save_json(Path(folder) / MARKER_FILE, {"autovit_run": kind, "adopted": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def remove_orphan_tmp_files(folder: str | Path) -> list[Path]:
    """Deletes the temp files of atomic writes a killed process left under `folder`; returns them.

    Call only while holding the folder's lock (a live writer's temp file must not be removed)."""
    removed = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if _ORPHAN_TMP.match(name):
                path = Path(root) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _lock(folder: Path) -> IO[str]:
    handle = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise AutovitError(f"another autovit run holds {folder} (pid {pid})",
                           hint="wait for it to finish, or write to another output folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@contextlib.contextmanager
def open_run_folder(folder: str | Path, kind: str,
                    log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Holds `folder` for one run: creates it (with the marker when new), takes its lock (refused
    while another process holds it) and removes orphan temp files of killed writes. A folder this
    call created is removed again if the run wrote nothing into it (e.g. refused bad input). Ranks
    other than 0 under torchrun only get the path (they do not write)."""
    folder = Path(folder)
    if not _is_main_process():
        yield folder
        return
    created = not folder.exists()
    own = prepare(folder, kind)
    handle = _lock(folder)
    try:
        if own:
            removed = remove_orphan_tmp_files(folder)
            if removed and log is not None:
                log(f"removed {len(removed)} temp file(s) left by an interrupted write in {folder}")
        yield folder
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
        if created and {p.name for p in folder.iterdir()} <= {MARKER_FILE, LOCK_FILE}:
            shutil.rmtree(folder)  # a run refused before it wrote anything leaves no folder behind


def delete_run_folder(folder: str | Path, keep: Iterable[str | Path] = ()) -> bool:
    """`--fresh`: deletes `folder` if autovit created it; returns whether anything was deleted.

    Refuses a folder without the marker, the working directory, any parent of it, the home folder
    and /, a symlink, a folder holding one of the `keep` files (inputs the run still needs), and a
    folder another run holds."""
    folder = Path(folder)
    if folder.is_symlink():
        raise AutovitError(f"refusing to delete {folder}: it is a symbolic link",
                           hint="point the run's output at the folder itself, or delete it yourself")
    if not folder.exists():
        return False
    resolved, cwd = folder.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve() or resolved == Path("/"):
        raise AutovitError(f"refusing to delete {folder}: it is the working directory, a parent of it, "
                           "the home folder or /",
                           hint="point the run's output (`out:` or --out) at a folder of its own, e.g. runs/my-run")
    if not folder.is_dir():
        raise AutovitError(f"refusing to delete {folder}: it is a file, not a run folder",
                           hint="point the run's output at a folder of its own, e.g. runs/my-run")
    if not has_marker(folder):
        raise AutovitError(f"refusing to delete {folder}: it has no {MARKER_FILE} marker, so autovit did not "
                           "create it",
                           hint="delete it yourself if it is an old run, or point the run's output at a new folder")
    inside = [Path(p) for p in keep if Path(p).resolve().is_relative_to(resolved)]
    if inside:
        raise AutovitError(f"refusing to delete {folder}: the config reads {inside[0]} from it",
                           hint="copy that file out of the run folder and point the config at the copy")
    handle = _lock(folder)  # refused while another run uses it
    try:
        shutil.rmtree(folder)
    finally:
        handle.close()
    return True
