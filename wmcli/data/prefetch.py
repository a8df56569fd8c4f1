"""Each training step's segments, drawn in the training process or computed ahead by workers.

A training step k of rank r draws its batches from the generator `step_rng(seed, r, k)`
(wmcli.base.seeds), so the batches of any step can be computed by any process, at any time:
`step_segments` is that computation, `Segments` for each `SegmentRequest` in turn from the one
generator. `Inline` runs it in the training process when asked (the RAM path). `Prefetcher`
runs it in worker processes for the next `depth` steps (the disk path), so the HDF5 reads and
gzip decoding overlap the training step; results are keyed by step, so they do not depend on
which worker finished first.

The frames do not travel back through the pool's pipe: for an atari100k step's 10 MB, pickling,
the pipe and unpickling made one worker deliver a step every ~50 ms where reading takes ~25 (2
busy cores, docs/performance.md), so it fell behind steps shorter than that. The requests fix every shape, so the
Prefetcher maps a ring of `depth + 1` slots of one step's frames each (a file in a private
directory under /dev/shm, i.e. RAM, or under tempfile's directory when /dev/shm is missing or
full; its blocks reserved at start, so a full tmpfs fails there and not with SIGBUS mid-run). A
step takes a free slot when submitted; its worker writes the frames there and returns the small
per-step arrays; as soon as it is done, the pool's thread in this process copies the frames out
(~1-3 ms for 10 MB, beside the training step) and `get` returns them at once. The slot is free
again only when nothing can read or write it: a batch kept by the caller never changes. The
window of steps in flight plus the one asked for needs at most `depth + 1` slots; a step dropped
while running (asked out of order) keeps its slot until it ends.

The workers are spawned (not forked: h5py handles and torch's threads are not fork-safe), each
gets a pickled copy of the buffer's index and opens its own files; they ignore Ctrl-C (the
training loop decides when to stop and closes the pool) and exit when their parent is gone,
removing the ring's directory first (a parent killed by SIGKILL or SIGTERM runs no cleanup of its
own; close() and interpreter exit remove it otherwise). An error in a worker (a damaged file)
surfaces as one WmcliError in the training process.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.base.seeds import step_rng
from wmcli.data.buffer import EpisodeBuffer, SegmentRequest, Segments

STEP_ARRAYS = ("act", "rew", "end", "life_loss", "trunc", "mask")
"""The fields of Segments that travel through the pool's pipe (obs goes through the ring)."""


def step_segments(buf: EpisodeBuffer, seed: int, rank: int, step: int, requests: Sequence[SegmentRequest]) -> list[Segments]:
    """The segments of one training step: one `buf.sample` per request, in order, from the step's generator."""
    rng, _ = step_rng(seed, rank, step)
    return [buf.sample(rng, *r) for r in requests]


class Inline:
    """Each step's segments drawn when asked, in this process."""

    def __init__(self, buf: EpisodeBuffer, seed: int, rank: int, requests: Sequence[SegmentRequest]):
        self.buf, self.seed, self.rank, self.requests = buf, seed, rank, list(requests)

    def get(self, step: int) -> list[Segments]:
        return step_segments(self.buf, self.seed, self.rank, step, self.requests)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Prefetcher(Inline):
    """Each step's segments computed ahead by `workers` processes, up to `depth` steps ahead of
    the last one asked for (default 2 per worker), within `steps`; frames pass through a ring of
    shared slots (see the module docstring)."""

    def __init__(self, buf: EpisodeBuffer, seed: int, rank: int, requests: Sequence[SegmentRequest], steps: range,
                 workers: int = 2, depth: int | None = None):
        super().__init__(buf, seed, rank, requests)
        self.steps = steps
        self.depth = depth if depth is not None else 2 * workers
        # A slot holds request i's frames, (B_i, L_i, H, W, C) uint8, at bytes spans[i] of it.
        self.shapes = [(r.batch_size, r.seq_len, *buf.frame_shape) for r in self.requests]
        ends = np.cumsum([math.prod(s) for s in self.shapes]).tolist()
        self.spans = list(zip([0, *ends[:-1]], ends))
        num_slots = self.depth + 1
        self.dir, path = make_ring_file(num_slots * ends[-1])
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)  # also at exit
        self.ring = np.memmap(path, np.uint8, "r+", shape=(num_slots, ends[-1]))  # (slots, bytes per step)
        self.slots = Slots(num_slots)
        self.futures: dict[int, tuple[Future, Future, int]] = {}  # step -> (its work, its batches, its slot)
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                        initargs=(buf, seed, rank, self.requests, os.getpid(), self.dir, path,
                                                  self.ring.shape, self.spans))

    def get(self, step: int) -> list[Segments]:
        # Steps outside the window [step, step + depth] are not needed any more (skipped, or asked out of order).
        for k in [k for k in self.futures if not step <= k <= step + self.depth]:
            self._drop(*self.futures.pop(k))
        if step not in self.futures:
            self.futures[step] = self._submit(step, self.slots.take(block=True))
        # Keep the next `depth` steps in flight, as far as slots are free.
        for k in range(step + 1, min(step + 1 + self.depth, self.steps.stop)):
            if k not in self.futures:
                slot = self.slots.take(block=False)
                if slot is None:
                    break
                self.futures[k] = self._submit(k, slot)
        work, batches, slot = self.futures.pop(step)
        try:
            return batches.result()
        except BrokenProcessPool:
            raise WmcliError(_DIED) from None
        except WmcliError as e:
            raise WmcliError(f"reading the segments of step {step}: {e}") from None
        except Exception as e:  # anything else a worker raised, named once
            raise WmcliError(f"a data worker failed reading the segments of step {step}: {type(e).__name__}: {e}") from None
        finally:  # the frames are copied out (or there are none): the slot can go
            self._drop(work, batches, slot)

    def _submit(self, step: int, slot: int) -> tuple[Future, Future, int]:
        """Step `step` sent to a worker, to write its frames into `slot`; its batches (a future)
        are made in this process as soon as the worker is done."""
        try:
            work = self.pool.submit(_work, step, slot)
        except BrokenProcessPool:
            raise WmcliError(_DIED) from None
        batches = Future()
        work.add_done_callback(partial(_copy_out, batches=batches, ring=self.ring, slot=slot, spans=self.spans,
                                       shapes=self.shapes))
        return work, batches, slot

    def _drop(self, work: Future, batches: Future, slot: int) -> None:
        """Step no longer wanted: cancelled if it has not started; its slot free once its batches are made (or not)."""
        work.cancel()
        self.slots.release(batches, slot)

    def close(self) -> None:
        """Cancel what is queued, wait for the few steps being read, end the workers, remove the ring."""
        for work, _, _ in self.futures.values():
            work.cancel()
        self.futures.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.ring = None  # unmapped once no array refers to it (get's batches are copies)
        self._remove_dir()


def _copy_out(work: Future, batches: Future, ring: np.ndarray, slot: int, spans: list[tuple[int, int]],
              shapes: list[tuple[int, ...]]) -> None:
    """Called when the worker is done with a step (in the pool's thread; numpy's copy lets the
    training thread run): the step's Segments, frames copied out of the slot, or its error."""
    if work.cancelled():
        batches.cancel()
        return
    try:
        steps = work.result()  # one dict of small arrays per request
        frames = [np.array(ring[slot, a:b]).reshape(shape) for (a, b), shape in zip(spans, shapes)]
        batches.set_result([Segments(obs=obs, **s) for obs, s in zip(frames, steps)])
    except BaseException as e:  # the worker's error (or a dead worker), raised by get
        batches.set_exception(e)


class Slots:
    """Which slots of the ring are free. A slot is taken when its step is submitted and released
    with a future that ends when nothing reads or writes the slot any more (the step's batches:
    made, failed, or cancelled before its worker started); a released slot is free once it has."""

    def __init__(self, n: int):
        self.free = list(range(n))
        self.busy: list[tuple[Future, int]] = []  # released, but a worker may still write them

    def take(self, block: bool) -> int | None:
        """A free slot; when none is, None, or with block: wait for a released step's worker to end."""
        while True:
            for f, slot in [b for b in self.busy if b[0].done()]:
                self.busy.remove((f, slot))
                self.free.append(slot)
            if self.free:
                return self.free.pop()
            if not block:
                return None
            # The Prefetcher blocks for the asked step only, when not in flight: the rest of its
            # window holds at most `depth` of the `depth + 1` slots, so a released step holds one.
            assert self.busy, "every slot is held by a step in flight"
            wait([f for f, _ in self.busy], return_when=FIRST_COMPLETED)

    def release(self, future: Future, slot: int) -> None:
        if future.done():
            self.free.append(slot)
        else:
            self.busy.append((future, slot))


_DIED = ("a data worker process died (killed, or out of memory); rerun, or set "
         "train_wm.data_workers=0 to read segments in the training process")


def make_ring_file(nbytes: int) -> tuple[Path, Path]:
    """A private directory holding one file of `nbytes` with its blocks reserved: under /dev/shm
    (RAM) when it exists and has room, else under tempfile's directory. Returns (directory, file)."""
    errors = []
    for base in (["/dev/shm"] if os.path.isdir("/dev/shm") else []) + [tempfile.gettempdir()]:
        try:
            d = Path(tempfile.mkdtemp(prefix=f"wmcli-prefetch-{os.getpid()}-", dir=base))  # mode 0700
        except OSError as e:
            errors.append(f"{base}: {e.strerror or e}")
            continue
        path = d / "ring"
        try:
            with open(path, "wb") as f:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(f.fileno(), 0, nbytes)  # ENOSPC now, not SIGBUS on a later write
                else:
                    f.truncate(nbytes)
            return d, path
        except OSError as e:
            shutil.rmtree(d, ignore_errors=True)
            errors.append(f"{base}: {e.strerror or e}")
    raise WmcliError(f"no room for the data workers' {nbytes / 1e6:.0f} MB of batches in flight ({'; '.join(errors)}); "
                     f"free space there, or set train_wm.data_workers=0 to read segments in the training process")


def batches_for(buf: EpisodeBuffer, seed: int, rank: int, requests: Sequence[SegmentRequest], steps: range,
                workers: int) -> Inline:
    """What a training loop draws its segments from: prefetching workers for a disk buffer (when
    `workers` > 0 and there are steps to run), else in-process draws."""
    if buf.kind == "disk" and workers > 0 and len(steps) > 0:
        return Prefetcher(buf, seed, rank, requests, steps, workers)
    return Inline(buf, seed, rank, requests)


class Staged:
    """Batches for a loop whose requests change at stage boundaries (a video model's growing
    windows): stages are (steps, requests) pairs; each stage's `batches_for` opens when the loop
    reaches its first step and closes when it leaves. Draws depend on (seed, rank, step) alone,
    so a resumed run sees the batches a straight one would."""

    def __init__(self, buf: EpisodeBuffer, seed: int, rank: int, stages: Sequence[tuple[range, Sequence[SegmentRequest]]],
                 workers: int):
        self.buf, self.seed, self.rank, self.stages, self.workers = buf, seed, rank, list(stages), workers
        self.current: tuple[range, Inline] | None = None

    def get(self, step: int) -> list[Segments]:
        if self.current is None or step not in self.current[0]:
            self.close()
            steps, requests = next((r, q) for r, q in self.stages if step in r)
            ahead = range(step, steps.stop)
            self.current = (ahead, batches_for(self.buf, self.seed, self.rank, requests, ahead, self.workers))
        return self.current[1].get(step)

    def close(self) -> None:
        if self.current is not None:
            self.current[1].close()
            self.current = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- in the worker process ---------------------------------------------------------------------

_worker: dict = {}


def _start_worker(buf: EpisodeBuffer, seed: int, rank: int, requests: list[SegmentRequest], parent: int, ring_dir: Path,
                  ring_path: Path, ring_shape: tuple[int, int], spans: list[tuple[int, int]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the training loop handles Ctrl-C and closes the pool
    ring = np.memmap(ring_path, np.uint8, "r+", shape=ring_shape)
    _worker.update(buf=buf, seed=seed, rank=rank, requests=requests, ring=ring, spans=spans)
    threading.Thread(target=_exit_with, args=(parent, ring_dir), daemon=True).start()


def _exit_with(parent: int, ring_dir: Path) -> None:
    """End this worker when its parent is gone (killed without closing the pool), removing the ring."""
    while os.getppid() == parent:
        time.sleep(1.0)
    shutil.rmtree(ring_dir, ignore_errors=True)
    os._exit(1)


def _work(step: int, slot: int) -> list[dict[str, np.ndarray]]:
    """Step `step`'s segments: the frames written into ring slot `slot`, the rest returned."""
    w = _worker
    segments = step_segments(w["buf"], w["seed"], w["rank"], step, w["requests"])
    for seg, (a, b) in zip(segments, w["spans"]):
        w["ring"][slot, a:b] = seg.obs.reshape(-1)
    return [{k: getattr(seg, k) for k in STEP_ARRAYS} for seg in segments]
