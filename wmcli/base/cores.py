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
sharing off for that process; WMCLI_SHARE_CORES=0 turns it off everywhere.

Processes of other programs do not register, so the share also leaves out the cores they keep
busy (`OtherLoad`: the machine's busy time in /proc/stat less this process's own, between two
looks; a tenth of a second's glance when the process registers): with one core of two busy
elsewhere, a MinAtar denoiser on 2 spinning threads sampled 55x slower than on one (0.117 s
against 6.4 s a batch of 32, 2026-12-01, docs/performance.md).
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


class OtherLoad:
    """Cores kept busy by everything but this process since the last call (None when the last
    call is under half a second ago, or the machine has no /proc/stat). Children of this process
    (data workers) count as others: a busy one needs its core too."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.prev = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
        return busy / self.tick, time.process_time(), time.monotonic()

    def glance(self, seconds: float = 0.1) -> float:
        """Cores busy elsewhere over the next `seconds` (this process sleeps meanwhile)."""
        before = self._read()
        time.sleep(seconds)
        now = self._read()
        if before is None or now is None:
            return 0.0
        return max(0.0, ((now[0] - before[0]) - (now[1] - before[1])) / (now[2] - before[2]))

    def __call__(self) -> float | None:
        now = self._read()
        if now is None or self.prev is None or now[2] - self.prev[2] < 0.5:
            return None
        (b0, own0, t0), self.prev = self.prev, now
        return max(0.0, ((now[0] - b0) - (now[1] - own0)) / (now[2] - t0))


class CoreShare:
    """This process's share of the cores among the registered wmcli processes, less the cores
    other programs keep busy."""

    def __init__(self, folder: Path | None = None, every: float = 5.0, other_load=None):
        self.folder = folder or Path(tempfile.gettempdir()) / f"wmcli-{os.getuid()}" / "cores"
        self.every = every
        self.cores = usable_cores()
        # Only where this process may use every core of the machine is /proc/stat's busy time its to share.
        whole = usable_cores() == (os.cpu_count() or 0)
        self.other_load = other_load if other_load is not None else (OtherLoad() if whole else (lambda: 0.0))
        # Until the first look a few seconds on: a tenth of a second's look now (the load average
        # lags by a minute: a job that just ended would cost an interactive `play` its second thread).
        self.others = self.other_load.glance() if isinstance(self.other_load, OtherLoad) else 0.0
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
        load = self.other_load()
        if load is not None:
            self.others = load
        return max(1, min(self.cores // self.live(), self.cores - round(self.others)))

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
