"""Stores larger than RAM: segments read straight from the episodes' HDF5 files, and the choice
between this and the RAM buffer.

`DiskEpisodeBuffer` is an `EpisodeBuffer` that keeps the per-episode index (paths, lengths,
starts) and the small per-step arrays (act, rew, flags: 19 bytes a step) in RAM, and reads each
segment's frames from its episode's file when drawn: one contiguous slice `obs[a:b]` per segment
(a 16-frame gzip chunk or two), never fancy indexing. Which episode and start each segment takes
is drawn by the same `draw_segments` as in RAM, so one generator gives the same batch from both.
Open files are cached per process (at most `max_open`, least recently used closed first) and
never inherited: a forked or spawned worker opens its own.

`refresh()` re-reads an episode whose file was replaced since it was indexed (the episodes under
way in partial/ are rewritten by a rename between epochs), closing the stale handle.

`open_buffer` applies the recipe's rule: `data: ram | disk | auto`, auto meaning disk when the
frames (frames x H x W x 3 bytes) exceed the RAM budget, by default half of MemAvailable.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.data.buffer import EpisodeBuffer
from wmcli.data.store import Episode, Store


class DiskEpisodeBuffer(EpisodeBuffer):
    """Every episode of a store in landing order, its frames left on disk (see the module docstring)."""

    kind = "disk"
    frames_in_ram = False

    def __init__(self, store: Store, skip_bad: bool = False, episodes: list[Path] | None = None, max_open: int = 128):
        self.max_open = max_open
        self._files: OrderedDict[Path, h5py.File] = OrderedDict()
        self._pid = os.getpid()
        self._stamps: dict[Path, tuple] = {}
        super().__init__(store, skip_bad=skip_bad, episodes=episodes)

    # ---- the index -----------------------------------------------------------------------

    def add(self, path: Path, ep: Episode) -> None:
        self._stamps[path] = _stamp(path)
        super().add(path, ep)

    def refresh(self, episodes: list[Path] | None = None) -> int:
        """Index episodes not indexed yet; an indexed one whose file was replaced (or removed) since
        is re-read (or dropped). Returns how many episodes were added or re-read."""
        changed = [p for p in self.paths if _stamp(p) != self._stamps.get(p)]
        if not changed:
            return super().refresh(episodes)
        for path in changed:
            self._close(path)
        keep = [p for p in self.paths if p.exists()]
        wanted = keep + [p for p in (episodes if episodes is not None else self.store.episode_paths()) if p not in set(keep)]
        self.paths, self.size = [], 0
        self.starts = np.zeros(0, dtype=np.int64)
        self.lengths = np.zeros(0, dtype=np.int64)
        self._steps = {k: a[:0] for k, a in self._steps.items()}
        self._stamps = {}
        known = len(keep) - len([p for p in changed if p.exists()])
        return super().refresh(wanted) - known

    # ---- frames --------------------------------------------------------------------------

    def _frames(self, ep: np.ndarray, start: np.ndarray, seq_len: int, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """One contiguous read per segment; padding stays zeros."""
        B = len(ep)
        obs = np.zeros((B, seq_len, *self.frame_shape), dtype=np.uint8)  # (B, L, H, W, 3)
        for b in range(B):
            e, s = int(ep[b]), int(start[b])
            lo, hi = max(s, 0), min(s + seq_len, int(self.lengths[e]))
            if hi > lo:  # a segment may lie wholly in the padding after its episode
                obs[b, lo - s : hi - s] = self._read(e, lo, hi)
        return obs

    def episode(self, i: int) -> Episode:
        s, n = self.starts[i], self.lengths[i]
        steps = {k: self._steps[k][s : s + n - 1] for k in self._steps}
        return Episode(obs=self._read(i, 0, int(n)), **steps)

    def _read(self, i: int, lo: int, hi: int) -> np.ndarray:
        path = self.paths[i]
        try:
            return self._file(path)["obs"][lo:hi]
        except OSError as e:
            self._close(path)
            raise WmcliError(f"{path}: unreadable frames {lo}:{hi} ({e}); move the file out of the store "
                             f"(the other episodes are unaffected)") from None

    def _file(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # a forked child: the parent's handles are not ours to use or close
            self._files, self._pid = OrderedDict(), os.getpid()
        f = self._files.get(path)
        if f is None:
            while len(self._files) >= self.max_open:
                self._files.popitem(last=False)[1].close()
            f = self._files[path] = self.store._open_h5(path)
        else:
            self._files.move_to_end(path)
        return f

    def _close(self, path: Path) -> None:
        f = self._files.pop(path, None)
        if f is not None and self._pid == os.getpid():
            f.close()

    def close(self) -> None:
        """Close every cached file (they are also closed when the buffer is collected)."""
        for path in list(self._files):
            self._close(path)

    def __getstate__(self) -> dict:
        """Pickled for a worker process: the index without the open files."""
        state = dict(self.__dict__)
        state["_files"] = OrderedDict()
        state["_pid"] = None
        return state


def _stamp(path: Path) -> tuple | None:
    """What changes when a file is replaced by a rename or rewritten; None when it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# ---- which buffer ------------------------------------------------------------------------------

def available_memory() -> int:
    """Bytes of memory available to new allocations now (MemAvailable; free pages elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def ram_budget(budget_gb: float | None) -> int:
    """The RAM budget in bytes: the recipe's, or half the available memory shared among this
    node's ranks (torchrun's LOCAL_WORLD_SIZE; each rank holds its own copy)."""
    if budget_gb is not None:
        return int(budget_gb * 1e9)
    return available_memory() // 2 // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def choose_data(frame_bytes: int, mode: str, budget_gb: float | None) -> tuple[str, str]:
    """("ram" | "disk", why) for frames of `frame_bytes` under the recipe's `data` mode."""
    if mode != "auto":
        return mode, f"data: {mode} in the recipe"
    budget = ram_budget(budget_gb)
    kind = "disk" if frame_bytes > budget else "ram"
    rel = ">" if kind == "disk" else "<="
    src = "ram_budget_gb" if budget_gb is not None else "half the available memory"
    return kind, f"frames {frame_bytes / 1e9:.2f} GB {rel} budget {budget / 1e9:.2f} GB ({src})"


def open_buffer(store: Store, episodes: list[Path], mode: str = "auto", budget_gb: float | None = None,
                skip_bad: bool = False, section: str = "train_wm") -> tuple[EpisodeBuffer, str]:
    """The episodes as an EpisodeBuffer (RAM) or a DiskEpisodeBuffer by the recipe's rule (its
    `kind` says which), and why. section: the recipe section named in a message."""
    H, W, C = store.spec.frame_shape
    frame_bytes = sum(store.episode_length(p) + 1 for p in episodes) * H * W * C
    kind, why = choose_data(frame_bytes, mode, budget_gb)
    cls = DiskEpisodeBuffer if kind == "disk" else EpisodeBuffer
    try:
        buf = cls(store, skip_bad=skip_bad, episodes=episodes)
    except MemoryError:
        raise WmcliError(f"the episodes of {store.path} ({frame_bytes / 1e9:.1f} GB of frames) do not fit in RAM; "
                         f"set {section}.data=disk (or {section}.data=auto with a smaller ram_budget_gb)") from None
    return buf, why
