"""One machine's cores shared among the wmcli processes on it.

torch runs its CPU work on OpenMP threads, one per core by default, and OpenMP threads spin
for a while after each parallel region. Alone that is the fastest setting; beside another
process doing the same it is the slowest: the spinning threads hold the cores the other needs.
Measured on 2 cores (docs/performance.md, "Sharing the machine"), two MinAtar trainings at
once did 51% of the work one does alone with 2 spinning threads each, and 194% of a
one-thread process's with one thread each.

So each wmcli process that runs torch work on the CPU registers here (a file named by its pid
in a per-user folder) and takes `cores // live processes` threads (at least one), looking again
every few seconds as processes come and go (`CoreShare.adjust`, called by the training loops
between steps). An explicit thread count (--threads, WMCLI_THREADS, OMP_NUM_THREADS) turns the
sharing off for that process; WMCLI_SHARE_CORES=0 turns it off everywhere. Processes of other
programs are not seen.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import time
from pathlib import Path

import torch


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class CoreShare:
    """This process's share of the cores among the registered wmcli processes."""

    def __init__(self, folder: Path | None = None, every: float = 5.0):
        self.folder = folder or Path(tempfile.gettempdir()) / f"wmcli-{os.getuid()}" / "cores"
        self.every = every
        self.cores = usable_cores()
        self.me = self.folder / str(os.getpid())
        self.folder.mkdir(parents=True, exist_ok=True)
        self.me.touch()
        atexit.register(self.leave)
        self.last = 0.0
        self.adjust(force=True)

    def live(self) -> int:
        """Registered processes still running (files of ended ones are removed)."""
        n = 0
        for f in self.folder.iterdir():
            try:
                pid = int(f.name)
            except ValueError:
                continue
            if pid == os.getpid() or _alive(pid):
                n += 1
            else:
                f.unlink(missing_ok=True)
        return max(n, 1)

    def threads(self) -> int:
        return max(1, self.cores // self.live())

    def adjust(self, force: bool = False) -> int:
        """Set torch's threads to this process's share, at most every `every` seconds."""
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            n = self.threads()
            if n != torch.get_num_threads():
                torch.set_num_threads(n)
        return torch.get_num_threads()

    def leave(self) -> None:
        self.me.unlink(missing_ok=True)


_share: CoreShare | None = None


def share_cores() -> CoreShare | None:
    """Register this process (once) unless its thread count is fixed or sharing is off."""
    global _share
    if _share is None and os.environ.get("WMCLI_SHARE_CORES", "1") != "0" and not any(
            os.environ.get(k) for k in ("WMCLI_THREADS", "OMP_NUM_THREADS")):
        try:
            _share = CoreShare()
        except OSError:  # no writable temporary folder: no sharing
            _share = None
    return _share


def adjust_threads() -> None:
    """Between training steps: take this process's current share of the cores (cheap)."""
    if _share is not None:
        _share.adjust()
