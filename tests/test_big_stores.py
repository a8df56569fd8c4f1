"""Stores larger than RAM (issue 13 §4): segments read from the HDF5 files are the RAM path's,
draw for draw; the automatic choice; training on the disk path with prefetching workers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import MICRO, random_episode

from wmcli.base.errors import WmcliError
from wmcli.base.recipe import load_recipe
from wmcli.base.runtime import make_runtime
from wmcli.data.buffer import EpisodeBuffer, SegmentRequest
from wmcli.data.disk_buffer import DiskEpisodeBuffer, choose_data, open_buffer
from wmcli.data.prefetch import Inline, Prefetcher
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


def test_prefetched_steps_are_the_inline_ones(store):
    """Workers compute steps ahead from each step's own generator: the same segments, whatever the timing."""
    disk = DiskEpisodeBuffer(store, episodes=store.training_paths())
    ram = EpisodeBuffer(store, episodes=store.training_paths())
    requests = [SegmentRequest(8, 6, 3, 1, (0.1, 0.1, 0.1, 0.7)), SegmentRequest(4, 5, 0, 4, (0.1, 0.1, 0.1, 0.7))]
    with Prefetcher(disk, 7, 0, requests, range(2, 12), workers=2) as pre, Inline(ram, 7, 0, requests) as inline:
        for step in (2, 3, 4, 6, 7, 11):  # a skipped step is fine too
            for a, b in zip(inline.get(step), pre.get(step)):
                same(a, b)


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
