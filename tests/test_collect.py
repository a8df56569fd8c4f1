"""`collect` on real games: budgets, determinism, and the store surviving kills and concurrency."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from conftest import popen_wmcli, run_wmcli

from wmcli.base.config import EnvConfig
from wmcli.data.buffer import EpisodeBuffer
from wmcli.data.collect import collect
from wmcli.data.env import make_spec
from wmcli.data.store import Store, summarize


def _episodes(store):
    return [ep for _, ep in store.iter_episodes()]


def test_collect_plays_exactly_the_budget(breakout_store):
    s = summarize(breakout_store)
    assert s["steps"] == 600 and s["episodes"] >= 3
    assert s["life_losses"] > 0 and sum(s["action_histogram"].values()) == 600
    for ep in _episodes(breakout_store):
        assert ep.obs.shape == (len(ep) + 1, 64, 64, 3)
        assert ep.end[-1] or ep.trunc[-1]  # ends in a game over or a cut
        assert not ep.end[:-1].any() and not ep.trunc[:-1].any()
        assert ep.obs.std() > 10  # real frames
        assert ep.attrs["seed"] == 0 and ep.attrs["policy"] == "random"
        lives_lost = int(ep.life_loss.sum())
        assert lives_lost <= 5
        if ep.end[-1]:  # Breakout: a game over takes all 5 lives
            assert lives_lost == 5
    # Life losses are flags apart from game over.
    assert sum(int(ep.life_loss.sum()) for ep in _episodes(breakout_store)) > sum(
        int(ep.end.sum()) for ep in _episodes(breakout_store)
    )


def test_same_seed_same_episodes(tmp_path, breakout_spec):
    stores = []
    for name in ("a", "b"):
        st = Store.create_or_open(tmp_path / name, breakout_spec.to_dict())
        collect(breakout_spec, st, env_steps=400, num_envs=2, seed=5)
        stores.append(_episodes(st))
    a, b = stores
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        for k in ("obs", "act", "rew", "end", "life_loss", "trunc"):
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k))
    other = Store.create_or_open(tmp_path / "c", breakout_spec.to_dict())
    collect(breakout_spec, other, env_steps=400, num_envs=2, seed=6)
    assert not np.array_equal(_episodes(other)[0].act[:50], a[0].act[:50])


def test_collect_minatar(tmp_path):
    spec = make_spec(EnvConfig(game="minatar:Breakout", frame_size=16))
    st = Store.create_or_open(tmp_path / "m", spec.to_dict())
    out = collect(spec, st, env_steps=300, num_envs=2, seed=0)
    s = summarize(st)
    assert out["env_steps"] == 300 and s["steps"] == 300 and s["frame_shape"] == [16, 16, 3]
    assert s["life_losses"] == 0 and s["complete_episodes"] >= 1


def _wait_for_episodes(path, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        d = path / "episodes"
        if d.is_dir() and len([p for p in d.iterdir() if not p.name.startswith(".")]) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("collector produced no episodes in time")


@pytest.mark.parametrize("kill_after_episodes", [1, 6])
def test_sigkill_keeps_every_finished_episode(tmp_path, kill_after_episodes):
    path = tmp_path / "killed"
    proc = popen_wmcli("collect", "--env", "Breakout", "--env-steps", "1000000", "--store", str(path), "--seed", "1")
    _wait_for_episodes(path, kill_after_episodes, proc)
    time.sleep(0.05 * kill_after_episodes)  # land somewhere inside the next episode or write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    st = Store.open(path)
    assert st.bad_files() == []
    eps = _episodes(st)
    assert len(eps) >= kill_after_episodes
    for ep in eps:  # every visible episode is whole: ends in a game over (none was cut)
        assert ep.end[-1] and ep.obs.shape[0] == len(ep) + 1
    # The same seed replays the same game: the killed run's episodes are a prefix of a clean run's.
    clean = Store.create_or_open(tmp_path / "clean", st.env)
    spec = make_spec(EnvConfig(game="Breakout"))
    collect(spec, clean, env_steps=sum(len(e) for e in eps), num_envs=1, seed=1)
    for x, y in zip(eps, _episodes(clean)):
        np.testing.assert_array_equal(x.obs, y.obs)
        np.testing.assert_array_equal(x.act, y.act)
    # And appending after the kill works.
    res = run_wmcli("collect", "--env", "Breakout", "--env-steps", "50", "--store", str(path), "--json")
    assert res.returncode == 0, res.stderr
    assert summarize(Store.open(path))["episodes"] == len(eps) + 1


def test_reader_sees_episodes_while_a_writer_runs(tmp_path):
    path = tmp_path / "live"
    proc = popen_wmcli("collect", "--env", "Breakout", "--env-steps", "2500", "--store", str(path), "--seed", "2")
    _wait_for_episodes(path, 1, proc)
    buf = EpisodeBuffer(Store.open(path))
    counts = [buf.num_episodes]
    while proc.poll() is None:
        buf.refresh()  # reads only renamed-in, whole episodes
        counts.append(buf.num_episodes)
        time.sleep(0.1)
    assert proc.returncode == 0, proc.communicate()
    buf.refresh()
    assert buf.num_frames == 2500 + buf.num_episodes
    assert len(set(counts)) >= 3  # it saw the store grow, episode by episode


def test_two_writers_at_once(tmp_path):
    path = tmp_path / "shared"
    procs = [
        popen_wmcli("collect", "--env", "Breakout", "--env-steps", "700", "--store", str(path), "--seed", str(s))
        for s in (10, 20)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    st = Store.open(path)
    assert st.bad_files() == []
    s = summarize(st)
    assert s["steps"] == 1400
    assert {ep.attrs["seed"] for ep in _episodes(st)} == {10, 20}


def test_collector_keeps_episodes_whole_across_calls(tmp_path, breakout_spec):
    from wmcli.data.collect import Collector

    store = Store.create_or_open(tmp_path / "s", breakout_spec.to_dict())
    c = Collector(breakout_spec, store, num_envs=1, seed=0)
    assert c.play(40) == 40 and c.pending_steps == 40 and store.episode_paths() == []  # random Breakout lasts longer
    assert c.play(30) == 30 and c.pending_steps == 70
    c.close()
    (path,) = store.episode_paths()  # one piece of 70 steps, not two
    ep = store.read_episode(path)
    assert len(ep) == 70 and ep.trunc[-1] and not ep.trunc[:-1].any() and not ep.end.any()
    # The same seed played in one call gives the same 70 steps.
    one = Store.create_or_open(tmp_path / "t", breakout_spec.to_dict())
    collect(breakout_spec, one, 70, seed=0)
    ep1 = one.read_episode(one.episode_paths()[0])
    assert np.array_equal(ep.act, ep1.act) and np.array_equal(ep.obs, ep1.obs)


def test_collector_with_two_envs_ending_inside_a_vector_step(tmp_path, breakout_spec):
    from wmcli.data.collect import Collector

    store = Store.create_or_open(tmp_path / "s", breakout_spec.to_dict())
    c = Collector(breakout_spec, store, num_envs=2, seed=1)
    c.play(31)  # the 16th vector step counts env 0's step only; env 1's episode so far is written as cut
    assert c.steps == 31
    c.play(9)
    c.close()
    eps = [store.read_episode(p) for p in store.episode_paths()]
    assert sum(len(e) for e in eps) == 40
    for e in eps:  # every piece is consistent: obs has one more frame than steps
        assert e.obs.shape[0] == len(e) + 1 and e.trunc[-1]
