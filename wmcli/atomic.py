"""Atomic file writes: write beside the target under a hidden temporary name, fsync, rename.

A rename within one folder is atomic on POSIX, so a reader (or a process restarted after a
SIGKILL) sees the old file or the new one, never a half-written one. Stores and checkpoints
are written this way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A hidden temporary name beside `path`, unique to this process."""
    return path.with_name(f".tmp-{os.getpid()}-{os.urandom(4).hex()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, exclusive: bool = False):
    """Yield a temporary path to write; on success it becomes `path` in one step.

    exclusive: fail with FileExistsError instead of replacing an existing `path`
    (hard link then unlink, so two processes racing to create it cannot both win).
    On any error the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        fsync_file(tmp)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` in one step (small files: run state, resolved recipes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
