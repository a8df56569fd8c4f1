"""Play a policy in real envs and write every episode into the store as soon as it ends.

Episodes are written one by one (atomically), so an interrupted or killed run keeps every
finished episode. When the step budget runs out, episodes still under way are written too,
marked truncated at their last step (a cut, not a game over), so the store holds exactly the
steps played. The same seed gives the same episodes. `Collector.write_partial` puts the
episodes still under way into the store's partial/ folder (replacing their earlier versions),
so training sees them before they end, as DIAMOND's loop does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wmcli.base.progress import Every, Progress
from wmcli.base.seeds import draw_seed
from wmcli.base.signals import stop_on_sigint
from wmcli.data.env import default_store_path
from wmcli.data.play import VectorPlayer
from wmcli.data.policy import Policy, RandomPolicy
from wmcli.data.spec import EnvSpec
from wmcli.data.store import STEP_KEYS, Episode, Store
from wmcli.data.store_summary import summarize


class EpisodeBuilder:
    """Frames and step arrays of one episode under way; `id` once it has a file in the store,
    `stored` its steps in that (partial) file."""

    def __init__(self, first_obs: np.ndarray, lives: int):
        self.obs = [first_obs.copy()]
        self.steps: dict[str, list] = {k: [] for k in STEP_KEYS}
        self.lives = lives
        self.id: str | None = None
        self.stored = 0

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


class Collector:
    """Envs kept running between calls to `play`, so an episode may span several calls (as in
    DIAMOND's loop, which collects a few steps per epoch): every episode is written when it
    ends, and `close()` writes the ones still under way as cut. `policy` may be swapped
    between calls. Ctrl-C during `play` stops it after the current step (`interrupted`).
    With several envs, a budget that ends inside a vector step leaves the envs past it
    mid-episode: their episodes so far are written as cut and go on as new pieces.
    `write_partial()` writes the episodes under way to the store's partial/ folder, each
    replacing its earlier version; when such an episode ends, it lands under the same id and
    its partial file goes. Its steps then count as stored (`pending_steps` excludes them)."""

    def __init__(self, spec: EnvSpec, store: Store, num_envs: int = 1, seed: int | None = None,
                 policy: Policy | None = None, collector_name: str = "wmcli collect"):
        self.seed = draw_seed(seed)
        self.spec, self.store, self.num_envs = spec, store, num_envs
        self.policy = policy or RandomPolicy(spec.num_actions, np.random.default_rng(self.seed))  # envs: seed + i
        self.writer = store.writer({"seed": self.seed, "policy": self.policy.name, "collector": collector_name})
        self.player: VectorPlayer | None = None
        self.steps, self.returns, self.written, self.seconds = 0, [], 0, 0.0
        self.interrupted = False

    def _start(self) -> None:
        self.player = VectorPlayer(self.spec, self.num_envs, self.policy, self.seed)
        self.builders = [EpisodeBuilder(self.player.obs[i], int(self.player.lives[i])) for i in range(self.num_envs)]

    def _under_way(self) -> list[EpisodeBuilder]:
        if self.player is None:
            return []
        return [b for i, b in enumerate(self.builders) if not self.player.restarting[i]]

    @property
    def pending_steps(self) -> int:
        """Steps played in episodes still under way and not in the store yet (not even in partial/)."""
        return sum(len(b) - b.stored for b in self._under_way())

    @property
    def pending_rewards(self) -> np.ndarray:
        """Rewards of the steps in `pending_steps`."""
        return np.array([r for b in self._under_way() for r in b.steps["rew"][b.stored:]], dtype=np.float32)

    def write_partial(self) -> int:
        """Write every episode under way that grew since its last write to the store's partial/
        folder, replacing its earlier version (atomically); returns how many were written."""
        written = 0
        for b in self._under_way():
            if len(b) > b.stored:
                b.id = b.id or self.writer.new_id()
                self.writer.write_partial(b.episode(), b.id)
                b.stored = len(b)
                written += 1
        return written

    def set_policy(self, policy: Policy) -> None:
        """Play on with another policy (its memory starts fresh in every env). To keep a
        recurrent policy's memory, keep the policy and update its weights in place instead."""
        self.policy = policy
        self.writer.attrs["policy"] = policy.name
        if self.player is not None:
            self.player.set_policy(policy)

    def _write(self, b: EpisodeBuilder, cut: bool = False) -> None:
        self.writer.write(b.episode(cut=cut), episode_id=b.id)  # replaces its partial file, if any
        self.written += 1

    def play(self, env_steps: int, on_progress: Callable[[Progress], None] | None = None) -> int:
        """Play exactly `env_steps` more steps (fewer when interrupted); returns how many."""
        done_before = self.steps
        target = self.steps + env_steps
        t0 = time.perf_counter()
        every = Every(0.5)
        with stop_on_sigint() as stop:
            try:
                if self.player is None:
                    self._start()
                while self.steps < target and not stop.is_set():
                    for s in self.player.step():
                        i = s.env
                        if s.restarted:
                            self.builders[i] = EpisodeBuilder(s.obs, s.lives)
                        elif self.steps >= target:  # the budget ended inside this vector step: this env's
                            if len(self.builders[i]) > 0:  # step is not counted; its episode so far is kept
                                self._write(self.builders[i], cut=True)  # as cut, and a new piece starts
                            self.builders[i] = EpisodeBuilder(s.obs, s.lives)  # at the frame it reached
                        else:
                            b = self.builders[i]
                            b.add(s.act, s.obs, s.rew, s.term, s.trunc, s.lives)
                            self.steps += 1
                            if s.term or s.trunc:
                                self._write(b)
                                if s.term:
                                    self.returns.append(float(np.sum(b.steps["rew"])))
                    if on_progress and every():
                        on_progress(self._progress(self.steps - done_before, env_steps, time.perf_counter() - t0))
            except KeyboardInterrupt:
                stop.set()  # a second Ctrl-C; every finished episode is already in the store
            finally:
                self.interrupted = stop.is_set()
                self.seconds += time.perf_counter() - t0
        if on_progress:
            on_progress(self._progress(self.steps - done_before, env_steps, time.perf_counter() - t0))
        return self.steps - done_before

    def _progress(self, steps: int, total: int, seconds: float) -> Progress:
        return Progress(f"collect {self.spec.name}", steps, total, "steps", {
            "steps/s": steps / max(seconds, 1e-9), "episodes": self.written, "mean return": _mean(self.returns)},
            seconds=seconds)

    def close(self, write_unfinished: bool = True) -> None:
        """Write the episodes under way as cut (trunc[-1] = True), and close the envs."""
        if self.player is None:
            return
        if write_unfinished and not self.interrupted:
            for b in self._under_way():
                if len(b) > 0:
                    self._write(b, cut=True)
        self.player.close()
        self.player = None


def collect(
    spec: EnvSpec,
    store: Store,
    env_steps: int,
    num_envs: int = 1,
    seed: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    policy: Policy | None = None,
) -> dict:
    """Play `env_steps` steps over `num_envs` envs into `store`, with `policy` (a
    wmcli.data.policy policy; default uniformly random, drawing from the seed)."""
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


def collect_into_store(spec: EnvSpec, policy: Policy, seed: int, store: str | Path | None = None,
                       env_steps: int = 5000, num_envs: int = 1,
                       on_progress: Callable[[Progress], None] | None = None) -> dict:
    """`wmcli collect`: play into `store` (default: runs/<game>/store, created or appended to);
    the result holds the store's summary after the collection."""
    path = Path(store) if store is not None else default_store_path(spec.name)
    st = Store.create_or_open(path, spec.to_dict())
    result = collect(spec, st, env_steps, num_envs=num_envs, seed=seed, on_progress=on_progress, policy=policy)
    result["store_summary"] = summarize(st)
    return result


def _mean(x: list[float]) -> float | None:
    return float(np.mean(x)) if x else None
