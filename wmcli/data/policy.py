"""What plays a real game: the `Policy` interface, and the uniformly random policy.

One interface for `collect`, `eval` and `imagine`: `reset(num_envs)` before playing, then
`act(obs, first)` with the frames of every env (K, H, W, 3) uint8, as the envs give them, and
a flag per env saying that its frame starts a new episode (an agent then clears that env's
memory). Actions come back as an int64 array (K,). Randomness comes from the generator passed
in, so the same seed plays the same actions. A trained agent is a policy too
(wmcli.world.agent.AgentPolicy; `game_and_policy` there settles either kind). `random_play` is
the random half of it, reachable without torch, so random collection starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.base.seeds import draw_seed
from wmcli.data.env import make_spec
from wmcli.data.spec import EnvSpec


class Policy(Protocol):
    name: str

    def reset(self, num_envs: int) -> None: ...

    def act(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray: ...


class RandomPolicy:
    name = "random"

    def __init__(self, num_actions: int, rng: np.random.Generator):
        self.num_actions, self.rng = num_actions, rng

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, self.num_actions, size=len(obs))


@dataclass
class GamePolicy:
    """What plays what: a policy, the game it plays, and the seed of its envs and actions."""

    spec: EnvSpec
    policy: Policy
    seed: int


def random_play(game: str | None, seed: int | None = None, env_options: dict | None = None) -> GamePolicy:
    """Uniformly random actions in `game` (built with env_options), drawing from `seed` (None: a
    fresh seed, returned so it can be recorded)."""
    if game is None:
        raise WmcliError("--env is required with --policy random (e.g. --env Breakout)")
    seed = draw_seed(seed)
    options = {k: v for k, v in (env_options or {}).items() if v is not None}
    spec = make_spec(EnvConfig(game=game, **options))
    return GamePolicy(spec, RandomPolicy(spec.num_actions, np.random.default_rng(seed)), seed)
