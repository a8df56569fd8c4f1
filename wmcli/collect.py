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
def stop_on_sigint():
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


class Collector:
    """Envs kept running between calls to `play`, so an episode may span several calls (as in
    DIAMOND's loop, which collects a few steps per epoch): every episode is written when it
    ends, and `close()` writes the ones still under way as cut. `policy` may be swapped
    between calls. Ctrl-C during `play` stops it after the current step (`interrupted`).
    With several envs, a budget that ends inside a vector step leaves the envs past it
    mid-episode: their episodes so far are written as cut and go on as new pieces."""

    def __init__(self, spec: EnvSpec, store: Store, num_envs: int = 1, seed: int | None = None, policy=None,
                 collector_name: str = "wmcli collect"):
        from wmcli.policy import RandomPolicy

        self.seed = secrets.randbelow(2**31) if seed is None else seed
        self.spec, self.store, self.num_envs = spec, store, num_envs
        self.policy = policy or RandomPolicy(spec.num_actions, np.random.default_rng(self.seed))  # envs: seed + i
        self.writer = store.writer({"seed": self.seed, "policy": self.policy.name, "collector": collector_name})
        self.venv = None
        self.steps, self.returns, self.written, self.seconds = 0, [], 0, 0.0
        self.interrupted = False

    def _start(self) -> None:
        self.venv = make_vector_env(self.spec, self.num_envs)
        obs, info = self.venv.reset(seed=self.seed)
        lives = info.get("lives", np.zeros(self.num_envs, dtype=np.int64))
        self.obs = obs
        self.builders = [_EpisodeBuilder(obs[i], int(lives[i])) for i in range(self.num_envs)]
        self.restarting = np.zeros(self.num_envs, dtype=bool)  # finished last step: the next step resets it
        self.first = np.ones(self.num_envs, dtype=bool)  # the frame starts an episode
        self.policy.reset(self.num_envs)

    @property
    def pending_steps(self) -> int:
        """Steps played in episodes still under way (not in the store yet)."""
        if self.venv is None:
            return 0
        return sum(len(b) for i, b in enumerate(self.builders) if not self.restarting[i])

    @property
    def pending_rewards(self) -> np.ndarray:
        """Rewards of the steps in `pending_steps`."""
        if self.venv is None:
            return np.zeros(0, dtype=np.float32)
        rews = [b.steps["rew"] for i, b in enumerate(self.builders) if not self.restarting[i]]
        return np.array([r for rew in rews for r in rew], dtype=np.float32)

    def set_policy(self, policy) -> None:
        """Play on with another policy (its memory starts fresh in every env)."""
        self.policy = policy
        self.writer.attrs["policy"] = policy.name
        policy.reset(self.num_envs)

    def play(self, env_steps: int, on_progress: Callable[[Progress], None] | None = None) -> int:
        """Play exactly `env_steps` more steps (fewer when interrupted); returns how many."""
        done_before = self.steps
        target = self.steps + env_steps
        t0 = last_report = time.perf_counter()
        with stop_on_sigint() as stop:
            try:
                if self.venv is None:
                    self._start()
                while self.steps < target and not stop.is_set():
                    act = self.policy.act(self.obs, self.first)
                    self.first = self.restarting.copy()  # where the last step ended an episode, obs is now a first frame
                    obs, rew, term, trunc, info = self.venv.step(act)
                    self.obs = obs
                    lives = info.get("lives", np.zeros(self.num_envs, dtype=np.int64))
                    for i in range(self.num_envs):
                        if self.restarting[i]:  # the action was ignored; obs is the new episode's first frame
                            self.builders[i] = _EpisodeBuilder(obs[i], int(lives[i]))
                            self.restarting[i] = False
                            continue
                        if self.steps >= target:  # the budget ended inside this vector step: this env's
                            b = self.builders[i]  # step is not counted; its episode so far is kept as cut,
                            if len(b) > 0:  # and a new piece starts at the frame it reached
                                self.writer.write(b.episode(cut=True))
                                self.written += 1
                            self.builders[i] = _EpisodeBuilder(obs[i], int(lives[i]))
                            continue
                        b = self.builders[i]
                        b.add(int(act[i]), obs[i], float(rew[i]), bool(term[i]), bool(trunc[i]), int(lives[i]))
                        self.steps += 1
                        if term[i] or trunc[i]:
                            self.writer.write(b.episode())
                            self.written += 1
                            if term[i]:
                                self.returns.append(float(np.sum(b.steps["rew"])))
                            self.restarting[i] = True
                    now = time.perf_counter()
                    if on_progress and now - last_report > 0.5:
                        last_report = now
                        on_progress(self._progress(self.steps - done_before, now - t0))
            except KeyboardInterrupt:
                stop.set()  # a second Ctrl-C; every finished episode is already in the store
            finally:
                self.interrupted = stop.is_set()
                self.seconds += time.perf_counter() - t0
        if on_progress:
            on_progress(self._progress(self.steps - done_before, time.perf_counter() - t0))
        return self.steps - done_before

    def _progress(self, steps: int, seconds: float) -> Progress:
        return Progress(self.steps, self.written, _mean(self.returns), steps / max(seconds, 1e-9))

    def close(self, write_unfinished: bool = True) -> None:
        """Write the episodes under way as cut (trunc[-1] = True), and close the envs."""
        if self.venv is None:
            return
        if write_unfinished and not self.interrupted:
            for i, b in enumerate(self.builders):
                if not self.restarting[i] and len(b) > 0:
                    self.writer.write(b.episode(cut=True))
                    self.written += 1
        self.venv.close()
        self.venv = None


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
    c = Collector(spec, store, num_envs, seed, policy)
    try:
        c.play(env_steps, on_progress)
    finally:
        c.close()
    return {
        "game": spec.name,
        "store": str(store.path),
        "seed": c.seed,
        "num_envs": num_envs,
        "policy": c.policy.name,
        "env_steps": c.steps,
        "episodes_written": c.written,
        "episodes_finished": len(c.returns),
        "return_mean": _mean(c.returns),
        "seconds": c.seconds,
        "env_steps_per_s": c.steps / max(c.seconds, 1e-9),
        "interrupted": c.interrupted,
    }


def _mean(x: list[float]) -> float | None:
    return float(np.mean(x)) if x else None
