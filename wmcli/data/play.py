"""The one loop that plays a policy in real vector envs, for collection and evaluation alike.

`VectorPlayer` steps K envs together with a policy and says, env by env, what each vector step
did: a step of the episode under way (action, next frame, reward, game over, cut, lives), or a
restart (the envs reset themselves on the step after an episode ends, ignoring that step's
action, as gymnasium's next-step autoreset does). It keeps the policy's "this frame starts an
episode" flags right across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wmcli.data.env import make_vector_env
from wmcli.data.policy import Policy
from wmcli.data.spec import EnvSpec


@dataclass
class EnvStep:
    """What one env did in one vector step."""

    env: int
    restarted: bool  # a new episode began: obs is its first frame (no action was taken, rew is 0)
    act: int
    obs: np.ndarray  # (H, W, 3) uint8, the frame now shown
    rew: float
    term: bool  # game over after this step
    trunc: bool  # cut after this step (the env's frame cap)
    lives: int


class VectorPlayer:
    """`policy` playing `num_envs` envs of `spec` (env i seeded seed + i) one vector step at a time."""

    def __init__(self, spec: EnvSpec, num_envs: int, policy: Policy, seed: int):
        self.num_envs, self.policy = num_envs, policy
        self.venv = make_vector_env(spec, num_envs)
        obs, info = self.venv.reset(seed=seed)
        self.obs = obs  # (K, H, W, 3): the frames the policy acts on next
        self.lives = _lives(info, num_envs)  # (K,)
        self.restarting = np.zeros(num_envs, dtype=bool)  # ended last step: this step resets it
        self.first = np.ones(num_envs, dtype=bool)  # the frame starts an episode
        policy.reset(num_envs)

    def set_policy(self, policy: Policy) -> None:
        """Play on with another policy (its memory starts fresh in every env)."""
        self.policy = policy
        policy.reset(self.num_envs)

    def step(self) -> list[EnvStep]:
        """The policy acts in every env; one EnvStep per env, in env order."""
        act = self.policy.act(self.obs, self.first)
        self.first = self.restarting.copy()  # where the last step ended an episode, obs is now a first frame
        obs, rew, term, trunc, info = self.venv.step(act)
        lives = _lives(info, self.num_envs)
        out = []
        for i in range(self.num_envs):
            if self.restarting[i]:  # the action was ignored; obs is the new episode's first frame
                out.append(EnvStep(i, True, 0, obs[i], 0.0, False, False, int(lives[i])))
                self.restarting[i] = False
            else:
                out.append(EnvStep(i, False, int(act[i]), obs[i], float(rew[i]), bool(term[i]), bool(trunc[i]),
                                   int(lives[i])))
                self.restarting[i] = bool(term[i] or trunc[i])
        self.obs, self.lives = obs, lives
        return out

    def close(self) -> None:
        self.venv.close()


def _lives(info: dict, K: int) -> np.ndarray:
    return np.asarray(info.get("lives", np.zeros(K, dtype=np.int64)))
