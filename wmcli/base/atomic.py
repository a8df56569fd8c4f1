"""Atomic file writes: write beside the target under a hidden temporary name, fsync, rename.

A rename within one folder is atomic on POSIX, so a reader (or a process restarted after a
SIGKILL) sees the old file or the new one, never a half-written one. Every file wmcli writes
goes this way (stores, checkpoints, videos, run state), or is opened by `open_for_append`
(metrics logs); whole folders (model folders, merged stores) go through `atomic_dir`. A place
that cannot be written (no permission, read-only, full disk) ends in one WmcliError naming the
path, and the file that was there is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from wmcli.base.errors import WmcliError


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
    make_parent(path)
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
    except FileExistsError:
        raise  # exclusive creation lost the race: the caller decides
    except OSError as e:
        raise unwritable(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, label: str = ""):
    """Yield a new hidden folder beside `path` to fill; on success it becomes `path` in one rename.

    An existing `path` steps aside first (POSIX renames a folder only over an empty one), is put
    back if the rename fails, and is removed once the new folder is in place. On any error or
    interruption the temporary folder is removed and `path` is as it was; OSError goes to the
    caller, which says what could not be written. A SIGKILL can leave the hidden `.tmp-` folder
    (or, between the two renames, the old folder under its hidden `.old-` name). `label` tags the
    hidden names (`.tmp-merge-...`)."""
    path = Path(path)
    tag = f"{label}-" if label else ""
    tmp = path.with_name(f".tmp-{tag}{os.getpid()}-{os.urandom(4).hex()}-{path.name}")
    old = None
    try:
        tmp.mkdir()
        yield tmp
        fsync_dir(tmp)
        if path.exists():
            old = path.with_name(f".old-{tmp.name.removeprefix('.tmp-')}")
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)  # the old folder back under its name
                old = None
            raise
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def unwritable(path: str | os.PathLike, e: OSError) -> WmcliError:
    """The one message for a place wmcli cannot write."""
    blocked = _file_in_the_way(path)
    why = f"{blocked} is a file, not a folder" if blocked is not None else (e.strerror or type(e).__name__)
    return WmcliError(f"cannot write {path} ({why}); choose a writable place (or free some space)")


def _file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The nearest existing ancestor of `path` when it is a file (nothing can be made under it)."""
    blocked = next((p for p in Path(path).parents if p.exists()), None)
    return blocked if blocked is not None and not blocked.is_dir() else None


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, with one clear line, when `path` could not be written later (its folder is missing
    or does not take new files, or it is a folder): long work checks its outputs before it starts."""
    path = Path(path)
    if path.is_dir():
        raise WmcliError(f"cannot write {path}: it is a folder; name a file in it instead")
    make_parent(path)
    probe = temp_path(path)
    try:
        probe.touch()
    except OSError as e:
        raise unwritable(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def make_parent(path: str | os.PathLike) -> None:
    """Check that the folder that will hold `path` is there: outputs go into folders that exist
    (only run folders and stores are created, by `make_dir`), else one line names the missing one."""
    parent = Path(path).parent
    if parent.is_dir():
        return
    if _file_in_the_way(path) is not None:
        raise unwritable(path, NotADirectoryError(20, "Not a directory"))
    raise WmcliError(f"cannot write {path}: the folder {parent} does not exist; create it (mkdir -p {parent}) "
                     f"or choose another place")


def make_dir(path: str | os.PathLike) -> Path:
    """Create a folder (and its parents) that wmcli will write into, or fail with one clear line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(path, e) from None
    if not os.access(path, os.W_OK):
        raise unwritable(path, PermissionError(13, "Permission denied"))
    return path


def open_for_append(path: str | os.PathLike):
    """A text file opened for appending lines (metrics logs), or one clear error."""
    make_parent(path)
    try:
        return open(path, "a")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise unwritable(path, e) from None


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` in one step (small files: run state, resolved recipes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
