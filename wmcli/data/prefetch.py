"""Each training step's segments, drawn in the training process or computed ahead by workers.

A training step k of rank r draws its batches from the generator `step_rng(seed, r, k)`
(wmcli.base.seeds), so the batches of any step can be computed by any process, at any time:
`step_segments` is that computation, `Segments` for each `SegmentRequest` in turn from the one
generator. `Inline` runs it in the training process when asked (the RAM path). `Prefetcher`
runs it in worker processes for the next `depth` steps (the disk path), so the HDF5 reads and
gzip decoding overlap the training step; results are keyed by step, so they do not depend on
which worker finished first.

The workers are spawned (not forked: h5py handles and torch's threads are not fork-safe), each
gets a pickled copy of the buffer's index and opens its own files; they ignore Ctrl-C (the
training loop decides when to stop and closes the pool) and exit when their parent is gone.
An error in a worker (a damaged file) surfaces as one WmcliError in the training process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from wmcli.base.errors import WmcliError
from wmcli.base.seeds import step_rng
from wmcli.data.buffer import EpisodeBuffer, SegmentRequest, Segments


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
    the last one asked for (default 2 per worker), within `steps`."""

    def __init__(self, buf: EpisodeBuffer, seed: int, rank: int, requests: Sequence[SegmentRequest], steps: range,
                 workers: int = 2, depth: int | None = None):
        super().__init__(buf, seed, rank, requests)
        self.steps = steps
        self.depth = depth if depth is not None else 2 * workers
        self.futures: dict[int, Future] = {}
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                        initargs=(buf, seed, rank, self.requests, os.getpid()))

    def get(self, step: int) -> list[Segments]:
        # Keep the next `depth` steps in flight; a step asked out of order is computed too.
        for k in range(step, min(step + 1 + self.depth, self.steps.stop)):
            if k not in self.futures:
                self.futures[k] = self._submit(k)
        future = self.futures.pop(step, None) or self._submit(step)
        for k in [k for k in self.futures if k < step]:  # skipped steps: not needed any more
            self.futures.pop(k).cancel()
        try:
            return future.result()
        except BrokenProcessPool:
            raise WmcliError("a data worker process died (killed, or out of memory); rerun, or set "
                             "train_wm.data_workers=0 to read segments in the training process") from None
        except WmcliError as e:
            raise WmcliError(f"reading the segments of step {step}: {e}") from None
        except Exception as e:  # anything else a worker raised, named once
            raise WmcliError(f"a data worker failed reading the segments of step {step}: {type(e).__name__}: {e}") from None

    def _submit(self, step: int) -> Future:
        try:
            return self.pool.submit(_work, step)
        except BrokenProcessPool:
            raise WmcliError("a data worker process died (killed, or out of memory); rerun, or set "
                             "train_wm.data_workers=0 to read segments in the training process") from None

    def close(self) -> None:
        """Cancel what is queued, wait for the few steps being read, end the workers."""
        for f in self.futures.values():
            f.cancel()
        self.futures.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


def batches_for(buf: EpisodeBuffer, seed: int, rank: int, requests: Sequence[SegmentRequest], steps: range,
                workers: int) -> Inline:
    """What a training loop draws its segments from: prefetching workers for a disk buffer (when
    `workers` > 0 and there are steps to run), else in-process draws."""
    if buf.kind == "disk" and workers > 0 and len(steps) > 0:
        return Prefetcher(buf, seed, rank, requests, steps, workers)
    return Inline(buf, seed, rank, requests)


# ---- in the worker process ---------------------------------------------------------------------

_worker: dict = {}


def _start_worker(buf: EpisodeBuffer, seed: int, rank: int, requests: list[SegmentRequest], parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the training loop handles Ctrl-C and closes the pool
    _worker.update(buf=buf, seed=seed, rank=rank, requests=requests)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker when its parent is gone (killed without closing the pool)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _work(step: int) -> list[Segments]:
    return step_segments(_worker["buf"], _worker["seed"], _worker["rank"], step, _worker["requests"])
