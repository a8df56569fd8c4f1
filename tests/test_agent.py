"""The agent side: the imagination env (core and gymnasium views), `wmcli train-agent`, and
playing real games with an agent (`collect --policy`), on a real store and a micro world model."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import MICRO, free_port, run_wmcli
from typer.testing import CliRunner

from wmcli.base.checkpoint import load_checkpoint
from wmcli.base.config import ActorCriticConfig
from wmcli.cli import app
from wmcli.data.buffer import EpisodeBuffer
from wmcli.data.store import Store
from wmcli.models.actor_critic import actor_critic_loss
from wmcli.world.imagination import WorldModelEnv, WorldModelGymEnv, WorldModelVectorEnv
from wmcli.world.world_model import load_world_model

runner = CliRunner()


def sets(*extra: str) -> list[str]:
    return [a for s in (*MICRO, *extra) for a in ("--set", s)]


def make_env(micro_wm, breakout_store, B=3, horizon=4, seed=0) -> WorldModelEnv:
    wm = load_world_model(micro_wm)
    return WorldModelEnv(wm, EpisodeBuffer(breakout_store).contexts(wm.num_context), B, horizon, seed=seed)


def dream(env: WorldModelEnv, steps: int, actions=None):
    obs, info = env.reset()
    out = [obs]
    for t in range(steps):
        a = torch.full((env.num_envs,), t % 4) if actions is None else actions[t]
        obs, rew, end, trunc, _ = env.step(a)
        out.append((obs, rew, end, trunc))
    return info, out


def test_imagination_env_shapes_and_truncation(micro_wm, breakout_store):
    env = make_env(micro_wm, breakout_store, B=3, horizon=4)
    info, out = dream(env, 4)
    assert out[0].shape == (3, 3, 64, 64)
    assert info["context_obs"].shape == (3, 3, 3, 64, 64) and info["context_act"].shape == (3, 3)
    # The current frame is the context's last real frame, in [-1, 1].
    assert out[0].min() >= -1 and out[0].max() <= 1
    for t, (obs, rew, end, trunc) in enumerate(out[1:], start=1):
        assert obs.shape == (3, 3, 64, 64) and obs.min() >= -1 and obs.max() <= 1
        assert rew.shape == (3,) and set(rew.tolist()) <= {-1.0, 0.0, 1.0}
        assert end.dtype == torch.bool and trunc.dtype == torch.bool
        assert not (end & trunc).any()
        if t < 4:
            assert not trunc.any()
    obs, rew, end, trunc = out[-1]
    assert (trunc | end).all()  # every dream stops at the horizon (4)
    # Frames are quantised to 8 bits, as the real ones.
    q = (obs + 1) * 127.5
    torch.testing.assert_close(q, q.round(), atol=1e-3, rtol=0)


def test_imagination_env_is_deterministic_under_fixed_noise(micro_wm, breakout_store):
    a = dream(make_env(micro_wm, breakout_store, seed=5), 3)[1]
    b = dream(make_env(micro_wm, breakout_store, seed=5), 3)[1]
    c = dream(make_env(micro_wm, breakout_store, seed=6), 3)[1]
    for x, y in zip(a[1:], b[1:]):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    assert not torch.equal(a[1][0], c[1][0])


def test_inactive_envs_keep_their_state_and_reset_touches_only_masked(micro_wm, breakout_store):
    env = make_env(micro_wm, breakout_store, B=3)
    env.reset()
    obs0, act0, h0 = env.obs.clone(), env.act.clone(), env.hidden[0].clone()
    active = torch.tensor([True, False, True])
    env.step(torch.tensor([1, 2, 3]), active=active)
    assert torch.equal(env.obs[1], obs0[1]) and torch.equal(env.act[1], act0[1])
    assert torch.equal(env.hidden[0][:, 1], h0[:, 1]) and env.t.tolist() == [1, 0, 1]
    assert not torch.equal(env.obs[0], obs0[0])
    kept = env.obs[2].clone()
    env.reset(torch.tensor([True, False, False]))
    assert env.t.tolist() == [0, 0, 1] and torch.equal(env.obs[2], kept)


def test_gymnasium_checks_pass(micro_wm, breakout_store):
    from gymnasium.utils.env_checker import check_env

    env = WorldModelGymEnv(load_world_model(micro_wm), EpisodeBuffer(breakout_store).contexts(4), horizon=3)
    check_env(env, skip_render_check=True)  # spaces, seeding determinism, step determinism, API
    obs, _ = env.reset(seed=1)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)


def test_vector_env_autoresets_on_the_next_step(micro_wm, breakout_store):
    venv = WorldModelVectorEnv(load_world_model(micro_wm), EpisodeBuffer(breakout_store).contexts(4), num_envs=2, horizon=2)
    assert isinstance(venv, gym.vector.VectorEnv)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3) and venv.observation_space.contains(obs)
    done = np.zeros(2, dtype=bool)
    for _ in range(2):
        obs, rew, term, trunc, _ = venv.step(venv.action_space.sample())
        done |= term | trunc
    assert done.all()  # horizon 2
    obs, rew, term, trunc, _ = venv.step(np.array([0, 0]))  # the autoreset step
    assert (rew == 0).all() and not term.any() and not trunc.any()
    assert venv.core.t.tolist() == [0, 0]


def test_loss_ignores_masked_steps():
    cfg = ActorCriticConfig()
    torch.manual_seed(0)
    logits, values = torch.randn(2, 3, 4), torch.randn(2, 4)
    act, rew = torch.randint(0, 4, (2, 3)), torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    end = torch.tensor([[False, True, False], [False, False, False]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loss, _ = actor_critic_loss(logits, values, act, rew, end, cfg, mask=mask)
    garbage = logits.clone()
    garbage[0, 2] = 100.0  # after the end: must not matter
    loss2, _ = actor_critic_loss(garbage, values, act, rew, end, cfg, mask=mask)
    torch.testing.assert_close(loss, loss2)
    loss3, _ = actor_critic_loss(garbage, values, act, rew, end, cfg)
    assert not torch.allclose(loss, loss3)


def train_agent(wm, out, *extra, steps=4):
    r = runner.invoke(app, ["train-agent", str(wm), "-o", str(out), "--steps", str(steps), "--json",
                            *sets("train_agent.log_every=1", "train_agent.checkpoint_every=1000"), *extra])
    assert r.exit_code == 0, r.stderr + r.stdout
    return json.loads(r.stdout)


def test_train_agent_writes_a_checkpoint_and_metrics(micro_wm, tmp_path):
    res = train_agent(micro_wm, tmp_path / "agent.pt", "--recipe", "tiny")
    ckpt = load_checkpoint(tmp_path / "agent.pt", "agent")
    assert ckpt["step"] == 4 and ckpt["env"]["name"] == "Breakout"
    assert ckpt["world_model"]["path"] == str(micro_wm)
    lines = [json.loads(x) for x in (tmp_path / "agent.metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert all(np.isfinite(m["losses/total"]) and m["perf/imagined_frames_per_s"] > 0 for m in lines)
    assert res["store"] == str(load_checkpoint(micro_wm, "world_model")["store"])
    assert res["imagined_frames"] == 4 * 2 * 3 and res["imagined_frames_per_s"] > 0  # steps x batch x horizon


def test_train_agent_resume_gives_identical_weights(micro_wm, tmp_path):
    train_agent(micro_wm, tmp_path / "straight.pt", "--recipe", "tiny", steps=4)
    train_agent(micro_wm, tmp_path / "halves.pt", "--recipe", "tiny", steps=2)
    train_agent(micro_wm, tmp_path / "halves.pt", "--recipe", "tiny", "--resume", steps=4)
    a = load_checkpoint(tmp_path / "straight.pt", "agent")["models"]["actor_critic"]
    b = load_checkpoint(tmp_path / "halves.pt", "agent")["models"]["actor_critic"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "policy" in k)  # it did learn something


def test_train_agent_bad_inputs(micro_wm, breakout_store, tmp_path):
    agent = tmp_path / "agent.pt"
    train_agent(micro_wm, agent, "--recipe", "tiny", steps=1)
    r = run_wmcli("train-agent", str(agent), "-o", str(tmp_path / "x.pt"))  # an agent given as world model
    assert r.returncode == 1 and "agent checkpoint" in r.stderr and "world-model checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_wmcli("train-agent", str(tmp_path / "missing.pt"))
    assert r.returncode == 1 and "not found" in r.stderr
    r = run_wmcli("train-agent", str(micro_wm), "-o", str(agent))  # exists, no --resume
    assert r.returncode == 1 and "--resume" in r.stderr
    r = run_wmcli("train-agent", str(micro_wm), "-o", str(tmp_path / "y.pt"), "--set", "train_agent.horizn=3")
    assert r.returncode == 1 and "train_agent.horizon" in r.stderr


def test_collect_with_an_agent(micro_wm, tmp_path):
    agent = tmp_path / "agent.pt"
    train_agent(micro_wm, agent, "--recipe", "tiny", steps=1)
    st = tmp_path / "st"
    r = run_wmcli("collect", "--policy", str(agent), "--epsilon", "0.1", "--env-steps", "60", "--store", str(st),
                  "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["env_steps"] == 60 and out["policy"].startswith("agent:agent.pt")
    store = Store.open(st)
    assert store.spec.name == "Breakout"  # the agent's game, without --env
    ep = store.read_episode(store.episode_paths()[0])
    assert ep.attrs["policy"].startswith("agent:")
    # Same seed, same actions.
    r2 = run_wmcli("collect", "--policy", str(agent), "--epsilon", "0.1", "--env-steps", "60",
                   "--store", str(tmp_path / "st2"), "--seed", "3", "--json")
    s2 = Store.open(tmp_path / "st2")
    assert np.array_equal(ep.act, s2.read_episode(s2.episode_paths()[0]).act), r2.stderr
    # A game with another action count, a world model given as policy: one clear line each.
    r = run_wmcli("collect", "--policy", str(agent), "--env", "Pong", "--env-steps", "5", "--store", str(tmp_path / "p"))
    assert r.returncode == 1 and "4 actions" in r.stderr and "6" in r.stderr
    assert not (tmp_path / "p").exists()
    r = run_wmcli("collect", "--policy", str(micro_wm), "--env-steps", "5", "--store", str(tmp_path / "q"))
    assert r.returncode == 1 and "world-model checkpoint" in r.stderr


@pytest.mark.parametrize("bad", ["1.5", "-0.1"])
def test_collect_refuses_a_bad_epsilon(bad, tmp_path):
    r = run_wmcli("collect", "--env", "Breakout", "--epsilon", bad, "--env-steps", "5", "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and "epsilon" in r.stderr


def test_train_agent_ddp_two_cpu_processes(micro_wm, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port(),
           "-m", "wmcli", "train-agent", str(micro_wm), "--recipe", "tiny", "-o", str(out), "--steps", "3",
           "--device", "cpu", "--json", *sets("train_agent.log_every=1", "train_agent.batch_size=4")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["world_size"] == 2  # one JSON document: rank 0 alone prints and writes
    assert load_checkpoint(out, "agent")["step"] == 3
    lines = (tmp_path / "ddp.metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_recency_weights_reach_the_dream_contexts_and_training_batches(micro_wm, breakout_spec, tmp_path):
    """train_agent.sample_weights reaches WorldModelEnv's contexts, and train_wm.sample_weights the
    denoiser and reward/end batches: with all weight on the newest chunk, only its episodes appear."""
    from conftest import random_episode

    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.world.batches import denoiser_batch, rew_end_batch

    store = Store.create_or_open(tmp_path / "s", breakout_spec.to_dict())
    w = store.writer()
    for i in range(8):  # chunks of 2 episodes; the newest chunk holds episodes 6 and 7
        ep = random_episode(20, seed=i)
        ep.obs[:] = 10 * i
        w.write(ep)
    buf, newest = EpisodeBuffer(store), {60, 70}
    env = WorldModelEnv(load_world_model(micro_wm), buf.contexts(4, (0, 0, 0, 1)), 16, 4, seed=0)
    _, info = env.reset()
    values = np.rint((info["context_obs"][:, :, 0, 0, 0].numpy() + 1) * 127.5).astype(int)
    assert set(values.ravel()) <= newest and len(set(values.ravel())) == 2

    recipe = load_recipe("tiny", [*MICRO, "train_wm.sample_weights=[0, 0, 0, 1]"])
    cfg, rt, rng = recipe.train_wm, make_runtime("cpu"), np.random.default_rng(0)
    batch = denoiser_batch(buf, rng, cfg, 4, rt, 32, cfg.sample_weights)
    frames = batch["obs"][batch["mask"]][:, 0, 0, 0]  # real frames only (padding is zeros)
    rb = rew_end_batch(buf, rng, cfg, rt, 32, cfg.sample_weights)
    frames = torch.cat([frames, rb["obs"][rb["mask"]][:, 0, 0, 0]])
    assert set(np.rint((frames.numpy() + 1) * 127.5).astype(int)) <= newest
