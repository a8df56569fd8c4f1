"""`collect` on real games: budgets, determinism, and the store surviving kills and concurrency."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from conftest import popen_wmcli, run_wmcli

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.data.buffer import EpisodeBuffer
from wmcli.data.collect import collect
from wmcli.data.env import make_spec
from wmcli.data.store import Store
from wmcli.data.store_summary import summarize


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


def _minatar(tmp_path, name="s"):
    spec = make_spec(EnvConfig(game="minatar:Breakout", frame_size=16))
    return spec, Store.create_or_open(tmp_path / name, spec.to_dict())


def test_the_episode_under_way_reaches_training_grows_in_place_and_lands_once(tmp_path):
    """DIAMOND trains on the episode under way: write_partial puts it in the store (partial/),
    a later write replaces it, and when the game ends it lands as one finished episode."""
    from wmcli.data.collect import Collector
    from wmcli.data.store import episode_id

    spec, store = _minatar(tmp_path)
    c = Collector(spec, store, num_envs=1, seed=1)  # its first game lasts 28 steps
    c.play(5)
    assert c.write_partial() == 1 and c.pending_steps == 0
    (part,) = store.partial_paths()
    assert store.episode_paths() == []
    buf = EpisodeBuffer(store, episodes=store.training_paths())  # what train-wm reads
    assert buf.num_episodes == 1 and buf.num_frames == 6
    c.play(4)
    assert c.pending_steps == 4 and c.write_partial() == 1 and c.write_partial() == 0
    assert store.partial_paths() == [part]  # replaced, not duplicated
    grown = store.read_episode(part)
    assert len(grown) == 9 and not grown.trunc.any() and not grown.end.any()
    assert summarize(store)["unfinished_steps"] == 9 and summarize(store)["steps"] == 0
    while c.written == 0:  # play on until the game ends (random MinAtar Breakout: tens of steps)
        c.play(1)
    (fin,) = store.episode_paths()
    ep = store.read_episode(fin)
    assert store.partial_paths() == [] and episode_id(fin) == part.stem
    assert ep.end[-1] or ep.trunc[-1]
    assert np.array_equal(ep.act[:9], grown.act) and np.array_equal(ep.obs[:10], grown.obs)
    assert len(ep) + c.pending_steps == c.steps  # every step once: landed, or under way
    c.close()


def test_a_killed_collector_loses_no_finished_episode(tmp_path):
    """A collector writing its episode under way after every few steps, SIGKILLed: every
    finished episode is whole, the partial one is readable or absent, and sealing it keeps
    every stored step exactly once."""
    import subprocess
    import sys
    import textwrap

    spec, store = _minatar(tmp_path)
    script = textwrap.dedent(f"""
        from wmcli.base.config import EnvConfig
        from wmcli.data.collect import Collector
        from wmcli.data.env import make_spec
        from wmcli.data.store import Store
        spec = make_spec(EnvConfig(game="minatar:Breakout", frame_size=16))
        c = Collector(spec, Store.open({str(store.path)!r}), num_envs=2, seed=3)
        while True:
            c.play(3)
            c.write_partial()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(store.episode_paths()) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(store.episode_paths()) >= 4, proc.stderr.read().decode()
    assert store.bad_files() == []
    eps = [store.read_episode(p) for p in store.episode_paths()]
    assert all(e.end[-1] or e.trunc[-1] for e in eps) and all(e.obs.shape[0] == len(e) + 1 for e in eps)
    partial = [store.read_episode(p) for p in store.partial_paths()]  # each one readable
    steps = sum(store.episode_length(p) for p in store.training_paths())
    store.seal_partial()
    assert store.partial_paths() == [] and len(store.episode_paths()) == len(eps) + sum(len(e) > 0 for e in partial)
    assert sum(store.episode_length(p) for p in store.episode_paths()) == steps


def _micro_agent(spec, seed: int, path):
    import torch

    from wmcli.base.recipe import load_recipe
    from wmcli.models.actor_critic import ActorCritic
    from wmcli.world.agent import Agent

    recipe = load_recipe("tiny", ["env.game=minatar:Breakout", "env.frame_size=16", "actor_critic.channels=[4,4]",
                                  "actor_critic.lstm_dim=8"])
    torch.manual_seed(seed)
    net = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0]).eval()
    torch.nn.init.normal_(net.policy.weight, std=2.0)  # a fresh head is zero (uniform): give it preferences
    return Agent(net, recipe, spec, seed, path)


def test_the_collecting_agent_keeps_its_memory_when_new_weights_arrive(tmp_path):
    """`wmcli run` keeps one policy across epochs and loads each epoch's weights into it: the
    LSTM state of a game under way is the one it had, not zeros, and the next action uses it."""
    import torch

    from wmcli.base.frames import to_float
    from wmcli.data.collect import Collector
    from wmcli.world.agent import AgentPolicy

    spec, store = _minatar(tmp_path)
    policy = AgentPolicy(_micro_agent(spec, 0, tmp_path / "agent.pt"), np.random.default_rng(0))
    c = Collector(spec, store, num_envs=1, seed=1, policy=policy)
    c.play(3)
    assert c.written == 0  # the game goes on past the epoch boundary
    h, cell = (t.clone() for t in policy.state)
    assert h.abs().sum() > 0
    newer = _micro_agent(spec, 1, tmp_path / "agent.pt")
    policy.load_weights(newer)  # the epoch boundary
    assert torch.equal(policy.state[0], h) and torch.equal(policy.state[1], cell)
    for a, b in zip(policy.agent.net.parameters(), newer.net.parameters()):
        assert torch.equal(a, b)
    obs = c.player.obs.copy()
    c.play(1)
    x = to_float(torch.from_numpy(obs))
    with torch.no_grad():
        kept = newer.net(x, (h, cell))[2][0]
        fresh = newer.net(x, newer.net.initial_state(1))[2][0]
    assert torch.allclose(policy.state[0], kept) and not torch.allclose(policy.state[0], fresh)
    c.close()


def test_the_actor_temperature_sharpens_or_flattens_the_sampled_actions(tmp_path):
    from wmcli.world.agent import AgentPolicy

    spec, _ = _minatar(tmp_path)
    agent = _micro_agent(spec, 0, tmp_path / "agent.pt")
    obs = np.repeat(np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), 4000, axis=0)
    first = np.ones(len(obs), dtype=bool)  # every row: the same frame, a fresh memory

    def freqs(temperature: float) -> np.ndarray:
        p = AgentPolicy(agent, np.random.default_rng(1), temperature=temperature)
        return np.bincount(p.act(obs, first), minlength=spec.num_actions) / len(obs)

    greedy = AgentPolicy(agent, np.random.default_rng(1), greedy=True).act(obs[:1], first[:1])[0]
    cold, warm, hot = freqs(1e-4), freqs(1.0), freqs(100.0)
    assert cold[greedy] == 1.0  # toward 0: the most likely action, always
    assert warm[greedy] < 1.0 and (warm > 0).sum() >= 2
    assert np.abs(hot - 1 / spec.num_actions).max() < 0.05  # very hot: nearly uniform
    assert "temperature=0.01" in AgentPolicy(agent, np.random.default_rng(1), temperature=0.01).name
    with pytest.raises(WmcliError, match="temperature must be above 0"):
        AgentPolicy(agent, np.random.default_rng(1), temperature=0.0)
