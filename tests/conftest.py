"""Shared fixtures: real games, real stores (small), the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wmcli.base.config import EnvConfig
from wmcli.data.collect import collect
from wmcli.data.env import make_spec
from wmcli.data.store import Store

REPO = Path(__file__).resolve().parents[1]

# The test models are micro-sized: intra-op threads gain nothing there, and on a shared 2-core
# machine two threads waiting on a busy core make each conv many times slower. One thread in
# this process and in every wmcli subprocess keeps the suite's time steady.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

# `--precision auto` picks bf16 autocast on CPUs with bf16 matrix units (AMX, AVX512-BF16) and
# fp32 elsewhere: the suite pins fp32 (WMCLI_PRECISION, the documented override) so its numbers
# do not depend on the machine CI lands on; tests/test_runtime.py checks the automatic choice
# and runs the bf16 path explicitly.
os.environ["WMCLI_PRECISION"] = "fp32"

# A world model small enough for a test: 2 U-Net levels of 8 channels, a 2-level reward/end
# encoder; and an agent to match (2 residual blocks of 4 channels, LSTM 8).
MICRO = [
    "denoiser.unet.channels=[8,8]", "denoiser.unet.depths=[1,1]", "denoiser.unet.attn_depths=[false,false]",
    "denoiser.unet.cond_channels=16", "denoiser.action_emb_dim=4", "denoiser.unet.attn_head_dim=4",
    "reward_end.channels=[8,8]", "reward_end.depths=[1,1]", "reward_end.cond_channels=8",
    "reward_end.lstm_dim=16", "reward_end.attn_head_dim=4",
    "train_wm.batch_size=4", "train_wm.rew_end_batch_size=2", "train_wm.rew_end_seq_len=4",
    "train_wm.val_batches=1", "train_wm.warmup_steps=5", "train_wm.lr=0.001",
    "actor_critic.channels=[4,4]", "actor_critic.lstm_dim=8",
    "train_agent.batch_size=2", "train_agent.horizon=3", "train_agent.warmup_steps=2", "train_agent.lr=0.001",
]


@pytest.fixture(scope="session")
def breakout_spec():
    return make_spec(EnvConfig(game="Breakout"))


@pytest.fixture(scope="session")
def breakout_store(tmp_path_factory, breakout_spec):
    """A real store of 600 random Breakout steps (a few episodes). Read-only for tests."""
    path = tmp_path_factory.mktemp("stores") / "breakout"
    store = Store.create_or_open(path, breakout_spec.to_dict())
    collect(breakout_spec, store, env_steps=600, num_envs=2, seed=0)
    return Store.open(path)


@pytest.fixture(scope="session")
def micro_wm(tmp_path_factory, breakout_store):
    """A micro world model trained 4 steps on breakout_store (its checkpoint path). Read-only."""
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.training.train_wm import train_world_model

    out = tmp_path_factory.mktemp("models") / "wm.pt"
    recipe = load_recipe("tiny", [*MICRO, "train_wm.steps=4", "train_wm.val_every=1000"])
    train_world_model(recipe, breakout_store.path, out, make_runtime("cpu"))
    return out


def run_wmcli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run `python -m wmcli ARGS` in a fresh process, as a user's shell would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "wmcli", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def free_port() -> str:
    """A TCP port nothing listens on now (torchrun's rendezvous; a fixed one can be taken)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def popen_wmcli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wmcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def random_episode(T: int, shape=(64, 64, 3), seed: int = 0, end: bool = True):
    """A synthetic episode (for store unit tests that need exact contents)."""
    from wmcli.data.store import Episode

    rng = np.random.default_rng(seed)
    e = np.zeros(T, dtype=bool)
    e[-1] = end
    return Episode(
        obs=rng.integers(0, 256, size=(T + 1, *shape), dtype=np.uint8),
        act=rng.integers(0, 4, size=T),
        rew=rng.choice([0.0, 1.0, -1.0], size=T).astype(np.float32),
        end=e,
        life_loss=rng.random(T) < 0.1,
        trunc=np.zeros(T, dtype=bool) if end else np.eye(1, T, T - 1, dtype=bool)[0],
    )
