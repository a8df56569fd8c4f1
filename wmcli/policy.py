"""Policies that play real games: uniformly random, or a trained agent (optionally epsilon-greedy).

One interface for `collect`, `eval` and `imagine`: `reset(num_envs)` before playing, then
`act(obs, first)` with the frames of every env (K, H, W, 3) uint8, as the envs give them, and
a flag per env saying that its frame starts a new episode (the agent then clears that env's
LSTM state). Actions come back as an int64 array (K,). Randomness comes from the generator
passed in, so the same seed plays the same actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wmcli.errors import WmcliError


class RandomPolicy:
    name = "random"

    def __init__(self, num_actions: int, rng: np.random.Generator):
        self.num_actions, self.rng = num_actions, rng

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, self.num_actions, size=len(obs))


@dataclass
class Agent:
    """A trained actor-critic loaded from its checkpoint, with what it was trained for."""

    net: torch.nn.Module  # wmcli.actor_critic.ActorCritic
    recipe: object  # wmcli.recipe.Recipe
    env: dict  # the env spec it was trained for (game, actions, frame shape)
    step: int
    path: Path

    def check_env(self, env: dict) -> None:
        """Refuse an env this agent cannot play (other action count or frame shape)."""
        mine, theirs = self.env, env
        if mine["num_actions"] != theirs["num_actions"]:
            raise WmcliError(
                f"agent {self.path} was trained on {mine['name']} with {mine['num_actions']} actions, but "
                f"{theirs['name']} has {theirs['num_actions']}; use an agent trained on this game"
            )
        if list(mine["frame_shape"]) != list(theirs["frame_shape"]):
            raise WmcliError(
                f"agent {self.path} sees {mine['frame_shape']} frames, but this env gives "
                f"{theirs['frame_shape']}; set env.frame_size to {mine['frame_shape'][0]}"
            )


def load_agent(path: str | Path, device: str | torch.device = "cpu") -> Agent:
    from wmcli.actor_critic import ActorCritic
    from wmcli.checkpoint import load_checkpoint
    from wmcli.recipe import recipe_from_dict

    ckpt = load_checkpoint(path, "agent")
    recipe = recipe_from_dict(ckpt["recipe"])
    env = ckpt["env"]
    net = ActorCritic(recipe.actor_critic, env["num_actions"], env["frame_shape"][0])
    net.load_state_dict(ckpt["models"]["actor_critic"])
    net.to(device).eval()
    return Agent(net, recipe, env, ckpt["step"], Path(path))


class AgentPolicy:
    """Actions sampled from the agent's policy (or its most likely action with greedy=True);
    with probability epsilon, a uniformly random action instead."""

    def __init__(self, agent: Agent, rng: np.random.Generator, epsilon: float = 0.0, greedy: bool = False,
                 device: str | torch.device = "cpu"):
        if not 0.0 <= epsilon <= 1.0:
            raise WmcliError(f"--epsilon must be between 0 and 1, got {epsilon}")
        self.agent, self.rng, self.epsilon, self.greedy = agent, rng, epsilon, greedy
        self.device = torch.device(device)
        self.name = f"agent:{agent.path.name}" + (" greedy" if greedy else "") + (f" epsilon={epsilon}" if epsilon else "")
        self.num_actions = agent.env["num_actions"]
        self.state = None

    def reset(self, num_envs: int) -> None:
        self.state = self.agent.net.initial_state(num_envs, self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        from wmcli.frames import to_float

        if self.state is None or self.state[0].shape[0] != len(obs):
            self.reset(len(obs))
        keep = torch.from_numpy(~np.asarray(first, dtype=bool)).float().to(self.device)[:, None]
        state = (self.state[0] * keep, self.state[1] * keep)
        x = to_float(torch.from_numpy(np.ascontiguousarray(obs)).to(self.device))  # (K, 3, H, W)
        logits, _, self.state = self.agent.net(x, state)
        if self.greedy:
            act = logits.argmax(-1).cpu().numpy()
        else:  # inverse-CDF sampling with our numpy generator, so a seed fixes the actions
            cdf = torch.softmax(logits.double(), -1).cumsum(-1).cpu().numpy()
            u = self.rng.random((len(obs), 1))
            act = np.minimum((u > cdf).sum(-1), self.num_actions - 1)
        explore = self.rng.random(len(obs)) < self.epsilon
        act = np.where(explore, self.rng.integers(0, self.num_actions, size=len(obs)), act)
        return act.astype(np.int64)
