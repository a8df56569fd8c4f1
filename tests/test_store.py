"""The HDF5 store: round trip, appending, metadata checks, corrupt files, segment sampling."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import random_episode

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.data.buffer import EpisodeBuffer, recency_weights
from wmcli.data.env import make_spec
from wmcli.data.store import Store
from wmcli.data.store_summary import summarize


@pytest.fixture()
def store(tmp_path, breakout_spec):
    return Store.create_or_open(tmp_path / "s", breakout_spec.to_dict())


def test_round_trip_exact(store):
    eps = [random_episode(T, seed=T) for T in (5, 17, 1)]
    w = store.writer({"seed": 42, "policy": "random"})
    for ep in eps:
        w.write(ep)
    paths = store.episode_paths()
    assert len(paths) == 3
    for p, ep in zip(paths, eps):  # oldest first
        back = store.read_episode(p)
        for k in ("obs", "act", "rew", "end", "life_loss", "trunc"):
            np.testing.assert_array_equal(getattr(back, k), getattr(ep, k))
        assert back.attrs["seed"] == 42 and back.attrs["policy"] == "random"
        assert back.attrs["length"] == len(ep)


def test_plain_h5py_reads_the_format(store):
    """docs/store.md promises the format is readable without wmcli."""
    store.writer().write(random_episode(9))
    meta = json.loads((store.path / "wmcli-store.json").read_text())
    assert meta["format"] == "wmcli-store/1" and meta["env"]["name"] == "Breakout"
    (path,) = sorted((store.path / "episodes").glob("*.h5"))
    with h5py.File(path, "r") as f:
        assert f["obs"].shape == (10, 64, 64, 3) and f["obs"].dtype == np.uint8
        assert f["act"].shape == (9,) and f["rew"].dtype == np.float32 and f["end"].dtype == bool
        assert json.loads(f.attrs["env"])["protocol"]["frame_skip"] == 4


def test_reopen_appends_and_refuses_other_game(store, tmp_path):
    store.writer().write(random_episode(4))
    again = Store.create_or_open(store.path, store.env)
    again.writer().write(random_episode(4, seed=1))
    assert len(Store.open(store.path).episode_paths()) == 2
    other = make_spec(EnvConfig(game="Pong")).to_dict()
    with pytest.raises(WmcliError, match="holds Breakout episodes"):
        Store.create_or_open(store.path, other)
    small = make_spec(EnvConfig(game="Breakout", frame_size=32)).to_dict()
    with pytest.raises(WmcliError, match="frame_shape"):
        Store.create_or_open(store.path, small)


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(WmcliError, match="no store at"):
        Store.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(WmcliError, match="not a wmcli store"):
        Store.open(tmp_path / "plain")


def test_corrupt_and_foreign_files_are_named_and_the_rest_stay_readable(store):
    w = store.writer()
    for i in range(3):
        w.write(random_episode(6, seed=i))
    paths = store.episode_paths()
    # Truncate one file mid-way (as a disk error would), and drop a foreign HDF5 file in.
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 3])
    with h5py.File(store.episodes_dir / "zz-foreign.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WmcliError) as e:
        list(store.iter_episodes())
    assert paths[1].name in str(e.value) and "--skip-bad" in str(e.value)
    bad = dict(store.bad_files())
    assert set(p.name for p in bad) == {paths[1].name, "zz-foreign.h5"}
    good = list(store.iter_episodes(skip_bad=True))
    assert [p for p, _ in good] == [paths[0], paths[2]]
    assert summarize(store, skip_bad=True)["episodes"] == 2


def test_temporary_files_are_invisible(store):
    store.writer().write(random_episode(3))
    (store.episodes_dir / ".tmp-123-abcd-00001.h5").write_bytes(b"half written")
    assert len(store.episode_paths()) == 1
    assert summarize(store)["episodes"] == 1


def test_summary_counts(store):
    w = store.writer()
    w.write(random_episode(10, seed=1))
    w.write(random_episode(7, seed=2, end=False))  # a cut episode
    s = summarize(store)
    assert (s["episodes"], s["complete_episodes"], s["cut_episodes"]) == (2, 1, 1)
    assert s["steps"] == 17 and s["frames"] == 19
    assert sum(s["action_histogram"].values()) == 17
    ep = store.read_episode(store.episode_paths()[0])
    assert s["return_mean"] == pytest.approx(ep.ret)


def test_segments_match_the_episodes(store):
    eps = [random_episode(T, seed=T, shape=(64, 64, 3)) for T in (3, 12, 30)]
    w = store.writer()
    for ep in eps:
        w.write(ep)
    buf = EpisodeBuffer(store)
    assert buf.num_episodes == 3 and buf.num_frames == 4 + 13 + 31
    rng = np.random.default_rng(0)
    L, before, after = 6, 3, 1
    seg = buf.sample(rng, 256, L, pad_before=before, pad_after=after)
    assert seg.obs.shape == (256, L, 64, 64, 3)
    seen_left_pad = seen_right_pad = False
    for b in range(256):
        # Recover which episode and start this segment came from via its first real frame.
        j = int(np.argmax(seg.mask[b]))
        matches = [
            (e, t) for e, ep in enumerate(eps) for t in range(len(ep) + 1)
            if np.array_equal(ep.obs[t], seg.obs[b, j])
        ]
        assert len(matches) == 1
        e, t = matches[0]
        ep, s = eps[e], t - j
        assert -before <= s <= len(ep) + 1 + after - L
        for i in range(L):
            pos = s + i
            real = 0 <= pos <= len(ep)
            assert seg.mask[b, i] == real
            if not real:
                assert not seg.obs[b, i].any() and seg.act[b, i] == 0 and seg.rew[b, i] == 0
                seen_left_pad |= pos < 0
                seen_right_pad |= pos > len(ep)
                continue
            np.testing.assert_array_equal(seg.obs[b, i], ep.obs[pos])
            if pos < len(ep):
                assert seg.act[b, i] == ep.act[pos] and seg.rew[b, i] == ep.rew[pos]
                assert seg.end[b, i] == ep.end[pos] and seg.life_loss[b, i] == ep.life_loss[pos]
            else:  # the last frame: no action taken there
                assert seg.act[b, i] == 0 and not seg.end[b, i]
    assert seen_left_pad and seen_right_pad
    # Episodes too short for any start are never drawn; all too short is an error.
    with pytest.raises(ValueError):
        buf.sample(rng, 4, 40)


def test_segment_starts_are_uniform(store):
    w = store.writer()
    for T, value in ((9, 1), (29, 2)):  # 10 and 30 frames, told apart by their pixel value
        ep = random_episode(T, seed=T)
        ep.obs[:] = value
        w.write(ep)
    seg = EpisodeBuffer(store).sample(np.random.default_rng(1), 20000, 5)
    from_short = seg.obs[:, 0, 0, 0, 0] == 1
    # 6 valid starts in the short episode, 26 in the long: P(short) = 6/32.
    assert abs(from_short.mean() - 6 / 32) < 0.01


def test_recency_weights_split_episodes_into_chunks_of_equal_count():
    # 10 episodes in 4 chunks: 2, 2, 2 and the last 4 (the remainder goes to the newest chunk).
    p = recency_weights(10, (0.1, 0.1, 0.1, 0.7))
    np.testing.assert_allclose(p, [0.05] * 6 + [0.175] * 4)
    assert recency_weights(3, (0.1, 0.1, 0.1, 0.7)) is None  # fewer episodes than chunks: uniform
    assert recency_weights(10, None) is None
    # Episodes that can't be drawn: the chunk's weight goes to its others; an empty chunk drops out.
    valid = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    np.testing.assert_allclose(recency_weights(10, (0.1, 0.1, 0.1, 0.7), valid),
                               np.array([0.05, 0.05, 0, 0, 0.1, 0, 0.175, 0.175, 0.175, 0.175]) / 0.9)


def test_recency_weighted_segments_favour_the_newest_episodes(store):
    """DIAMOND's [0.1, 0.1, 0.1, 0.7]: the newest quarter of the episodes gives 70% of the segments,
    whatever their lengths; an episode too short for a segment is never drawn."""
    w = store.writer()
    lengths = [29, 9, 49, 19, 29, 9, 39, 2]  # steps; the last (3 frames) is too short for 5
    for i, T in enumerate(lengths):
        ep = random_episode(T, seed=i)
        ep.obs[:] = i  # told apart by pixel value; written oldest first
        w.write(ep)
    buf = EpisodeBuffer(store)
    seg = buf.sample(np.random.default_rng(2), 40000, 5, weights=(0.1, 0.1, 0.1, 0.7))
    ep = seg.obs[:, 0, 0, 0, 0]
    share = np.bincount(ep, minlength=8) / len(ep)
    # Chunks of 2 episodes; within a chunk, episodes are equally likely; episode 7 can't be drawn,
    # so episode 6 takes the newest chunk's whole 0.7.
    np.testing.assert_allclose(share, [0.05] * 6 + [0.7, 0.0], atol=0.01)
    assert seg.mask.all()  # no padding was asked for
    uniform = buf.sample(np.random.default_rng(2), 40000, 5)  # no weights: uniform over all starts
    counts = np.array([T + 1 - 5 + 1 for T in lengths]).clip(0)
    np.testing.assert_allclose(np.bincount(uniform.obs[:, 0, 0, 0, 0], minlength=8) / 40000,
                               counts / counts.sum(), atol=0.01)


def test_buffer_refresh_sees_new_episodes(store):
    w = store.writer()
    w.write(random_episode(5))
    buf = EpisodeBuffer(store)
    assert buf.num_episodes == 1
    w.write(random_episode(6, seed=3))
    w.write(random_episode(7, seed=4))
    assert buf.refresh() == 2 and buf.num_episodes == 3 and buf.num_frames == 6 + 7 + 8
    np.testing.assert_array_equal(buf.episode(2).obs, store.read_episode(store.episode_paths()[2]).obs)


def test_an_unfinished_episode_is_replaced_as_it_grows_and_lands_once(store):
    """partial/ holds the episode under way: each write replaces it; finishing lands it in
    episodes/ under the same id and removes it. Counts keep the two kinds apart."""
    from wmcli.data.store import episode_id

    full = random_episode(12, seed=3)
    w = store.writer({"policy": "random"})
    eid = w.new_id()

    def first(n: int):
        return type(full)(obs=full.obs[: n + 1], **{k: getattr(full, k)[:n] for k in ("act", "rew", "end", "life_loss", "trunc")})

    w.write_partial(first(4), eid)
    (p,) = store.partial_paths()
    assert store.episode_paths() == [] and store.training_paths() == [p] and store.is_partial(p)
    assert len(EpisodeBuffer(store, episodes=store.training_paths()).episode(0)) == 4
    w.write_partial(first(9), eid)
    assert store.partial_paths() == [p] and len(store.read_episode(p)) == 9  # replaced, not duplicated
    back = store.read_episode(p)
    assert back.attrs["unfinished"] and not back.trunc.any()
    s = summarize(store)
    assert (s["episodes"], s["steps"], s["unfinished_episodes"], s["unfinished_steps"]) == (0, 0, 1, 9)
    w.write(full, episode_id=eid)
    assert store.partial_paths() == [] and not any(store.partial_dir.iterdir())
    (f,) = store.episode_paths()
    assert episode_id(f) == eid and len(store.read_episode(f)) == 12
    s = summarize(store)
    assert (s["episodes"], s["complete_episodes"], s["steps"], s["unfinished_episodes"]) == (1, 1, 12, 0)


def test_a_stale_partial_is_never_counted_twice_and_seal_keeps_the_steps(store):
    """A writer killed between landing an episode and removing its partial file leaves both:
    readers skip the stale one. seal_partial (a resumed run) turns the live ones into cut episodes."""
    import shutil

    w = store.writer()
    done, live = w.new_id(), w.new_id()
    w.write_partial(random_episode(5, seed=1, end=False), done)
    kept = store.partial_dir / f"{done}.h5.bak"
    shutil.copy(store.partial_dir / f"{done}.h5", kept)
    w.write(random_episode(8, seed=1), episode_id=done)
    kept.rename(store.partial_dir / f"{done}.h5")  # the kill: the partial file is still there
    ep = random_episode(6, seed=2)
    ep.end[:] = False
    w.write_partial(ep, live)
    assert [p.stem for p in store.partial_paths()] == [live]
    assert sum(store.episode_length(p) for p in store.training_paths()) == 8 + 6
    assert store.seal_partial() == 1
    assert store.partial_paths() == [] and not any(store.partial_dir.iterdir())
    sealed = [store.read_episode(p) for p in store.episode_paths()]
    assert [len(e) for e in sealed] == [8, 6] and sealed[1].trunc[-1] and not sealed[1].end.any()
    assert "unfinished" not in sealed[1].attrs
    assert summarize(store)["cut_episodes"] == 1


def test_an_exception_mid_write_leaves_the_store_as_it_was(store):
    """A write that fails half-way (here: an action array that cannot be stored, after the frames
    are written) leaves the finished episodes and the last version of the partial one intact."""
    w = store.writer()
    w.write(random_episode(7, seed=1))
    eid = w.new_id()
    w.write_partial(random_episode(5, seed=2, end=False), eid)
    bad = random_episode(9, seed=3, end=False)
    bad.act = np.array(["x"] * 9)
    for write in (lambda: w.write_partial(bad, eid), lambda: w.write(bad, episode_id=eid)):
        with pytest.raises(ValueError):
            write()
        assert [store.episode_length(p) for p in store.training_paths()] == [7, 5]
        assert store.bad_files() == [] and not any(p.name.startswith(".") for p in store.partial_dir.iterdir())


def test_clear_empties_a_test_store(store):
    w = store.writer()
    w.write(random_episode(3))
    w.write_partial(random_episode(2, end=False), w.new_id())
    store.clear()
    assert store.training_paths() == [] and Store.exists(store.path)
