"""Play a policy in real envs and write every episode into the store as soon as it ends.

Episodes are written one by one (atomically), so an interrupted or killed run keeps every
finished episode. When the step budget runs out, episodes still under way are written too,
marked truncated at their last step (a cut, not a game over), so the store holds exactly the
steps played. The same seed gives the same episodes.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wmcli.env import EnvSpec, make_vector_env
from wmcli.store import Episode, Store


@dataclass
class Progress:
    steps: int
    episodes: int
    mean_return: float | None  # of the episodes finished in this run
    steps_per_s: float


class _EpisodeBuilder:
    """Frames and step arrays of one episode under way."""

    def __init__(self, first_obs: np.ndarray, lives: int):
        self.obs = [first_obs.copy()]
        self.steps: dict[str, list] = {"act": [], "rew": [], "end": [], "life_loss": [], "trunc": []}
        self.lives = lives

    def add(self, act, obs, rew, end, trunc, lives) -> None:
        self.obs.append(obs.copy())
        self.steps["act"].append(act)
        self.steps["rew"].append(rew)
        self.steps["end"].append(end)
        self.steps["life_loss"].append(lives < self.lives)
        self.steps["trunc"].append(trunc)
        self.lives = lives

    def __len__(self) -> int:
        return len(self.steps["act"])

    def episode(self, cut: bool = False) -> Episode:
        arrays = {k: np.array(v) for k, v in self.steps.items()}
        if cut:
            arrays["trunc"][-1] = True
        return Episode(obs=np.stack(self.obs), **arrays)


@contextlib.contextmanager
def _stop_on_sigint():
    """Turn the first Ctrl-C into a request to stop after the current step (a second one
    interrupts at once). Interrupting ale-py's vector env between sending actions and receiving
    their results can leave its worker threads waiting forever, so the loop must end cleanly."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def collect(
    spec: EnvSpec,
    store: Store,
    env_steps: int,
    num_envs: int = 1,
    seed: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    policy=None,
) -> dict:
    """Play `env_steps` steps over `num_envs` envs into `store`, with `policy` (a
    wmcli.policy policy; default uniformly random, drawing from the seed)."""
    from wmcli.policy import RandomPolicy

    if seed is None:
        seed = secrets.randbelow(2**31)
    if policy is None:
        policy = RandomPolicy(spec.num_actions, np.random.default_rng(seed))  # envs are seeded seed + i
    writer = store.writer({"seed": seed, "policy": policy.name, "collector": "wmcli collect"})
    venv = make_vector_env(spec, num_envs)
    t0 = last_report = time.perf_counter()
    steps, returns, written = 0, [], 0
    with _stop_on_sigint() as stop:
        try:
            obs, info = venv.reset(seed=seed)
            lives = info.get("lives", np.zeros(num_envs, dtype=np.int64))
            builders = [_EpisodeBuilder(obs[i], int(lives[i])) for i in range(num_envs)]
            restarting = np.zeros(num_envs, dtype=bool)  # finished last step: this step resets it
            policy.reset(num_envs)
            first = np.ones(num_envs, dtype=bool)  # the frame starts an episode
            while steps < env_steps and not stop.is_set():
                act = policy.act(obs, first)
                first = restarting.copy()  # where the last step ended an episode, obs is now a first frame
                obs, rew, term, trunc, info = venv.step(act)
                lives = info.get("lives", np.zeros(num_envs, dtype=np.int64))
                for i in range(num_envs):
                    if restarting[i]:  # the action was ignored; obs is the new episode's first frame
                        builders[i] = _EpisodeBuilder(obs[i], int(lives[i]))
                        restarting[i] = False
                        continue
                    if steps >= env_steps:
                        break
                    b = builders[i]
                    b.add(int(act[i]), obs[i], float(rew[i]), bool(term[i]), bool(trunc[i]), int(lives[i]))
                    steps += 1
                    if term[i] or trunc[i]:
                        writer.write(b.episode())
                        written += 1
                        if term[i]:
                            returns.append(float(np.sum(b.steps["rew"])))
                        restarting[i] = True
                now = time.perf_counter()
                if on_progress and now - last_report > 0.5:
                    last_report = now
                    on_progress(Progress(steps, written, _mean(returns), steps / (now - t0)))
            if not stop.is_set():  # the budget is spent: write the episodes under way as cut
                for i, b in enumerate(builders):
                    if not restarting[i] and len(b) > 0:
                        writer.write(b.episode(cut=True))
                        written += 1
        except KeyboardInterrupt:
            pass  # a second Ctrl-C; every finished episode is already in the store
        finally:
            interrupted = stop.is_set()
            venv.close()
    elapsed = time.perf_counter() - t0
    if on_progress:
        on_progress(Progress(steps, written, _mean(returns), steps / max(elapsed, 1e-9)))
    return {
        "game": spec.name,
        "store": str(store.path),
        "seed": seed,
        "num_envs": num_envs,
        "policy": policy.name,
        "env_steps": steps,
        "episodes_written": written,
        "episodes_finished": len(returns),
        "return_mean": _mean(returns),
        "seconds": elapsed,
        "env_steps_per_s": steps / max(elapsed, 1e-9),
        "interrupted": interrupted,
    }


def _mean(x: list[float]) -> float | None:
    return float(np.mean(x)) if x else None
