"""Shared fixtures: real games, real stores (small), the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wmcli.collect import collect
from wmcli.env import EnvConfig, make_spec
from wmcli.store import Store

REPO = Path(__file__).resolve().parents[1]


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


def run_wmcli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run `python -m wmcli ARGS` in a fresh process, as a user's shell would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "wmcli", *args], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def popen_wmcli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wmcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def random_episode(T: int, shape=(64, 64, 3), seed: int = 0, end: bool = True):
    """A synthetic episode (for store unit tests that need exact contents)."""
    from wmcli.store import Episode

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
