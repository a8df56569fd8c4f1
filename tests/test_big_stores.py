"""Stores larger than RAM (issue 13 §4): segments read from the HDF5 files are the RAM path's,
draw for draw; the automatic choice; prefetching workers (the same batches, the frames through a
ring in shared memory that no ending leaves behind, one error for a dead worker or a damaged file);
training on the disk path with prefetching workers."""

from __future__ import annotations

import glob
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from conftest import MICRO, random_episode

from wmcli.base.errors import WmcliError
from wmcli.base.recipe import load_recipe
from wmcli.base.runtime import make_runtime
from wmcli.data.buffer import EpisodeBuffer, SegmentRequest
from wmcli.data.disk_buffer import DiskEpisodeBuffer, choose_data, open_buffer
from wmcli.data.prefetch import Inline, Prefetcher, Slots, make_ring_file
from wmcli.data.store import Store
from wmcli.training.train_wm import train_world_model

SHAPE = (8, 8, 3)


@pytest.fixture
def store(tmp_path):
    """Eleven synthetic episodes of mixed lengths (one too short for most segments), one under way."""
    env = {"kind": "ale", "name": "Test", "num_actions": 4, "frame_shape": list(SHAPE), "protocol": {}}
    s = Store.create_or_open(tmp_path / "s", env)
    w = s.writer()
    for i, T in enumerate((5, 17, 1, 30, 9, 12, 3, 25, 8, 14)):
        w.write(random_episode(T, shape=SHAPE, seed=i, end=i % 2 == 0))
    w.write_partial(random_episode(11, shape=SHAPE, seed=99, end=False), "feed-000000")
    return s


def same(a, b) -> None:
    for k in ("obs", "act", "rew", "end", "life_loss", "trunc", "mask"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and np.array_equal(x, y), k


@pytest.mark.parametrize("weights", [None, (0.1, 0.1, 0.1, 0.7)])
@pytest.mark.parametrize("pads", [(0, 0), (3, 1), (0, 9)])
def test_disk_gives_the_ram_segments(store, weights, pads):
    paths = store.training_paths()
    ram, disk = EpisodeBuffer(store, episodes=paths), DiskEpisodeBuffer(store, episodes=paths)
    assert disk.num_frames == ram.num_frames and disk.num_episodes == ram.num_episodes == 11
    assert len(disk._obs) == 0  # no frame in RAM
    for seed in range(5):
        a = ram.sample(np.random.default_rng(seed), 16, 6, *pads, weights=weights)
        b = disk.sample(np.random.default_rng(seed), 16, 6, *pads, weights=weights)
        same(a, b)
        if pads != (0, 0):
            assert not a.mask.all()  # padding was exercised
    i = 3
    assert np.array_equal(ram.episode(i).obs, disk.episode(i).obs)
    ctx_r, ctx_d = ram.contexts(4, weights).sample(np.random.default_rng(1), 8), disk.contexts(4, weights).sample(
        np.random.default_rng(1), 8)
    assert all(np.array_equal(x, y) for x, y in zip(ctx_r, ctx_d))


@pytest.mark.parametrize("workers,depth", [(1, None), (3, 2)])
def test_prefetched_steps_are_the_inline_ones(store, workers, depth):
    """Workers compute steps ahead from each step's own generator: the same segments, whatever the
    timing or the order steps are asked in; a batch kept stays as it was while its slot is reused."""
    disk = DiskEpisodeBuffer(store, episodes=store.training_paths())
    ram = EpisodeBuffer(store, episodes=store.training_paths())
    requests = [SegmentRequest(8, 6, 3, 1, (0.1, 0.1, 0.1, 0.7)), SegmentRequest(4, 5, 0, 4, (0.1, 0.1, 0.1, 0.7))]
    order = (2, 3, 4, 6, 7, 11, 5, 3, 9, 2, 2, 10, 8, 11)  # skipped, backwards, repeated, past the slots' count
    with Prefetcher(disk, 7, 0, requests, range(2, 12), workers=workers, depth=depth) as pre:
        got = [pre.get(step) for step in order]
        ring = pre.dir
        assert ring.is_dir() and len(pre.slots.free) + len(pre.futures) + len(pre.slots.busy) == pre.depth + 1
    assert not ring.exists()  # removed by close
    inline = Inline(ram, 7, 0, requests)
    for step, segments in zip(order, got):
        for a, b in zip(inline.get(step), segments):
            same(a, b)


def test_frames_do_not_travel_through_the_pipe(store):
    """A worker returns the step arrays only; the frames reach this process through the ring in /dev/shm."""
    disk = DiskEpisodeBuffer(store, episodes=store.training_paths())
    with Prefetcher(disk, 0, 0, [SegmentRequest(32, 8)], range(10), workers=1) as pre:
        pre.get(0)
        work, _, _ = pre.futures[1]
        frames = 32 * 8 * int(np.prod(SHAPE))
        assert len(pickle.dumps(work.result())) < frames / 4  # what the worker sent back
        if os.path.isdir("/dev/shm"):
            assert pre.dir.parent == Path("/dev/shm") and pre.dir.stat().st_mode & 0o777 == 0o700


def test_each_rank_has_its_own_ring(store):
    disk = DiskEpisodeBuffer(store, episodes=store.training_paths())
    requests = [SegmentRequest(8, 6)]
    with Prefetcher(disk, 0, 0, requests, range(4), workers=1) as p0, Prefetcher(disk, 0, 1, requests, range(4), workers=1) as p1:
        assert p0.dir != p1.dir
        for rank, pre in ((0, p0), (1, p1)):
            for step in range(4):
                same(pre.get(step)[0], Inline(disk, 0, rank, requests).get(step)[0])
    assert not p0.dir.exists() and not p1.dir.exists()


def test_no_room_for_the_ring_is_one_error():
    before = set(glob.glob(f"{tempfile.gettempdir()}/wmcli-prefetch-{os.getpid()}-*"))
    with pytest.raises(WmcliError, match="no room for the data workers' .*data_workers=0"):
        make_ring_file(2**60)  # more than any tmpfs or disk
    assert set(glob.glob(f"{tempfile.gettempdir()}/wmcli-prefetch-{os.getpid()}-*")) == before
    assert not glob.glob(f"/dev/shm/wmcli-prefetch-{os.getpid()}-*")


def test_a_slot_is_free_once_nothing_uses_it():
    slots = Slots(2)
    a, b = slots.take(block=True), slots.take(block=True)
    assert slots.take(block=False) is None
    cancelled, running = Future(), Future()
    cancelled.cancel()
    slots.release(cancelled, a)
    assert slots.take(block=False) == a
    slots.release(running, b)  # its worker may still write the slot, or its frames be copied out
    assert slots.take(block=False) is None
    threading.Timer(0.2, running.set_result, [[]]).start()
    assert slots.take(block=True) == b  # once it ended


TRAINING = """
import sys, time
from wmcli.data.buffer import SegmentRequest
from wmcli.data.disk_buffer import DiskEpisodeBuffer
from wmcli.data.prefetch import Prefetcher
from wmcli.data.store import Store

store = Store.open(sys.argv[1])
buf = DiskEpisodeBuffer(store, episodes=store.training_paths())
with Prefetcher(buf, 0, 0, [SegmentRequest(4, 5)], range(10**6), workers=1) as pre:
    try:
        pre.get(0)  # the worker is up (and ignores Ctrl-C)
        print(pre.dir, flush=True)
        for step in range(1, 10**6):
            pre.get(step)
            time.sleep(0.01)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
print("closed", pre.dir.exists(), flush=True)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_the_ring_goes_with_the_training_process(store, how):
    """Ctrl-C (to the process group, as a terminal sends it): the workers ignore it, the loop stops and
    close() removes the ring. SIGKILL of the training process: its workers remove the ring and exit."""
    # SIGINT back to its default in the child: a suite started in the background by a shell
    # without job control (`.ci/run &`) inherits it ignored, and Python then never raises
    # KeyboardInterrupt (the training loops install their own handler; this script relies on Python's).
    p = subprocess.Popen([sys.executable, "-c", TRAINING, str(store.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        ring = Path(p.stdout.readline().strip())
        assert ring.is_dir(), p.stderr.read()
        time.sleep(0.3)
        os.killpg(p.pid, signal.SIGINT) if how == "ctrl-c" else p.kill()
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    if how == "ctrl-c":
        assert p.returncode == 0 and out.split() == ["interrupted", "closed", "False"] and "Traceback" not in err, err
    for _ in range(50):  # the workers look for their parent once a second
        if not ring.exists():
            break
        time.sleep(0.1)
    assert not ring.exists()


def test_a_dead_worker_is_one_error(store):
    disk = DiskEpisodeBuffer(store, episodes=store.training_paths())
    with Prefetcher(disk, 0, 0, [SegmentRequest(4, 5)], range(100), workers=1) as pre:
        pre.get(0)
        for proc in pre.pool._processes.values():
            os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(WmcliError, match="a data worker process died .*data_workers=0") as e:
            for step in range(1, 100):
                pre.get(step)
        assert "Traceback" not in str(e.value)
    assert not pre.dir.exists()


def test_auto_switches_at_the_budget(store):
    frames = sum(store.episode_length(p) + 1 for p in store.training_paths())
    nbytes = frames * int(np.prod(SHAPE))
    assert choose_data(nbytes, "auto", nbytes / 1e9)[0] == "ram"
    assert choose_data(nbytes + 1, "auto", nbytes / 1e9)[0] == "disk"
    assert choose_data(10**15, "ram", None)[0] == "ram" and choose_data(1, "disk", None)[0] == "disk"
    assert choose_data(1, "auto", None)[0] == "ram"  # default budget: half the available memory
    buf, why = open_buffer(store, store.training_paths(), "auto", (nbytes - 1) / 1e9)
    assert buf.kind == "disk" and isinstance(buf, DiskEpisodeBuffer) and "budget" in why
    buf, _ = open_buffer(store, store.training_paths(), "auto", nbytes / 1e9)
    assert buf.kind == "ram" and not isinstance(buf, DiskEpisodeBuffer)


def test_a_replaced_partial_episode_is_reread(store):
    buf = DiskEpisodeBuffer(store, episodes=store.training_paths())
    i = buf.num_episodes - 1
    old = buf.episode(i)  # opens and caches the file
    assert buf.lengths[i] == 12
    grown = random_episode(20, shape=SHAPE, seed=5, end=False)
    store.writer().write_partial(grown, "feed-000000")  # replaced by a rename, as between epochs
    assert buf.refresh(store.training_paths()) == 1
    assert buf.num_episodes == 11 and buf.lengths[i] == 21 and buf.num_frames == EpisodeBuffer(
        store, episodes=store.training_paths()).num_frames
    new = buf.episode(i)
    assert np.array_equal(new.obs, grown.obs) and np.array_equal(new.act, grown.act)
    assert not np.array_equal(new.obs[:12], old.obs)
    assert buf.refresh(store.training_paths()) == 0


def test_a_worker_error_surfaces_as_one_error(store):
    buf = DiskEpisodeBuffer(store, episodes=store.training_paths())
    buf.paths[3].write_bytes(b"not hdf5 any more")  # damaged after indexing
    # Every segment from episode 3: uniform draws over one episode long enough.
    buf.lengths = np.where(np.arange(buf.num_episodes) == 3, buf.lengths, 0)
    with Prefetcher(buf, 0, 0, [SegmentRequest(2, 4)], range(0, 4), workers=1) as pre:
        with pytest.raises(WmcliError, match="segments of step 0: .*unreadable") as e:
            pre.get(0)
    assert str(buf.paths[3].name) in str(e.value) and "Traceback" not in str(e.value)
    assert not pre.dir.exists()


def test_train_wm_on_the_disk_path(breakout_store, tmp_path):
    """A few steps with prefetching workers; the same losses as the RAM path's, `data: disk` recorded."""
    rt = make_runtime("cpu")
    results = {}
    for data in ("ram", "disk"):
        recipe = load_recipe("tiny", [*MICRO, "train_wm.steps=3", "train_wm.log_every=1", "train_wm.val_every=3",
                                      f"train_wm.data={data}", "train_wm.data_workers=1"])
        out = tmp_path / f"{data}.pt"
        results[data] = train_world_model(recipe, breakout_store.path, out, rt)
        lines = [json.loads(line) for line in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
        assert [m["data"] for m in lines] == [data] * 3
        results[data]["lines"] = lines
    assert results["disk"]["data"] == "disk" and results["ram"]["data"] == "ram"
    for a, b in zip(results["ram"]["lines"], results["disk"]["lines"]):
        assert a["losses/denoiser"] == b["losses/denoiser"] and a["losses/rew_end"] == b["losses/rew_end"]
    assert results["ram"]["val"] == results["disk"]["val"]


def test_auto_picks_disk_below_the_budget(breakout_store, tmp_path):
    recipe = load_recipe("tiny", [*MICRO, "train_wm.steps=1", "train_wm.ram_budget_gb=0.000001",
                                  "train_wm.data_workers=0"])
    r = train_world_model(recipe, breakout_store.path, tmp_path / "wm.pt", make_runtime("cpu"))
    assert r["data"] == "disk" and "budget" in r["data_why"]
    assert os.path.exists(tmp_path / "wm.pt")
