"""What plays a real game: the `Policy` interface, and the uniformly random policy.

One interface for `collect`, `eval` and `imagine`: `reset(num_envs)` before playing, then
`act(obs, first)` with the frames of every env (K, H, W, 3) uint8, as the envs give them, and
a flag per env saying that its frame starts a new episode (an agent then clears that env's
memory). Actions come back as an int64 array (K,). Randomness comes from the generator passed
in, so the same seed plays the same actions. A trained agent is a policy too
(wmcli.world.agent.AgentPolicy).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


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
