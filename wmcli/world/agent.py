"""A trained agent loaded from its checkpoint, and the agent as a policy for real (or dreamed) games.

`load_agent` rebuilds the actor-critic from a checkpoint alone. `AgentPolicy` plays it through
the `Policy` interface of wmcli.data.policy (sampled actions, or its most likely one, with an
optional epsilon of random actions). `game_and_policy` settles what `collect` and `eval` play:
"random" or an agent checkpoint, in the game given or the agent's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wmcli.base.checkpoint import load_checkpoint, load_weights
from wmcli.base.config import EnvConfig, Recipe
from wmcli.base.errors import WmcliError
from wmcli.base.frames import to_float
from wmcli.base.recipe import recipe_from_dict
from wmcli.base.seeds import draw_seed
from wmcli.data.env import make_spec
from wmcli.data.policy import GamePolicy, random_play
from wmcli.data.spec import EnvSpec
from wmcli.models.actor_critic import ActorCritic


@dataclass
class Agent:
    """A trained actor-critic loaded from its checkpoint, with what it was trained for."""

    net: ActorCritic
    recipe: Recipe
    spec: EnvSpec  # the game it was trained for (actions, frame shape, protocol)
    step: int
    path: Path

    def check_plays(self, spec: EnvSpec) -> None:
        """Refuse a game this agent cannot play (another action count or frame shape)."""
        fix = ("use an agent trained on this game" if self.spec.num_actions != spec.num_actions
               else f"set the frame size to the agent's, {self.spec.frame_shape[0]} (--frame-size or env.frame_size)")
        self.spec.check_fits(spec, f"agent {self.path}", "this env", fix)


def load_agent(path: str | Path, device: str | torch.device = "cpu", hint: str | None = None) -> Agent:
    """The agent of a checkpoint, on `device`, in eval mode; `hint` says what to do instead when
    the file is a world model's."""
    ckpt = load_checkpoint(path, "agent", hint)
    recipe = recipe_from_dict(ckpt["recipe"])
    spec = EnvSpec.from_dict(ckpt["env"])
    net = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    load_weights(net, ckpt["models"]["actor_critic"], "actor-critic")
    net.to(device).eval()
    return Agent(net, recipe, spec, ckpt["step"], Path(path))


class AgentPolicy:
    """Actions sampled from the agent's policy at `temperature` (logits divided by it; toward 0
    the most likely action; greedy=True takes it outright); with probability epsilon, a
    uniformly random action instead. `load_weights` swaps in newer weights and keeps the
    LSTM memory of the games under way, as DIAMOND's collector does across epochs."""

    def __init__(self, agent: Agent, rng: np.random.Generator, epsilon: float = 0.0, greedy: bool = False,
                 device: str | torch.device = "cpu", temperature: float = 1.0):
        if not 0.0 <= epsilon <= 1.0:
            raise WmcliError(f"epsilon must be between 0 and 1, got {epsilon}")
        if not temperature > 0:
            raise WmcliError(f"the actor's temperature must be above 0, got {temperature}")
        self.agent, self.rng, self.epsilon, self.greedy = agent, rng, epsilon, greedy
        self.temperature = float(temperature)
        self.device = torch.device(device)
        self.name = (f"agent:{agent.path.name}" + (" greedy" if greedy else "") + (f" epsilon={epsilon}" if epsilon else "")
                     + (f" temperature={temperature:g}" if temperature != 1.0 else ""))
        self.num_actions = agent.spec.num_actions
        self.state = None

    def load_weights(self, agent: Agent) -> None:
        """Play on with `agent`'s weights (a newer checkpoint of the same agent), copied into this
        policy's network in place: the memory of every game under way is kept."""
        agent.check_plays(self.agent.spec)
        self.agent.net.load_state_dict(agent.net.state_dict())
        self.agent.step = agent.step

    def reset(self, num_envs: int) -> None:
        self.state = self.agent.net.initial_state(num_envs, self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray) -> np.ndarray:
        if self.state is None or self.state[0].shape[0] != len(obs):
            self.reset(len(obs))
        keep = torch.from_numpy(~np.asarray(first, dtype=bool)).float().to(self.device)[:, None]
        state = (self.state[0] * keep, self.state[1] * keep)
        x = to_float(torch.from_numpy(np.ascontiguousarray(obs)).to(self.device))  # (K, 3, H, W)
        logits, _, self.state = self.agent.net(x, state)
        logits = logits / self.temperature
        if self.greedy:
            act = logits.argmax(-1).cpu().numpy()
        else:  # inverse-CDF sampling with our numpy generator, so a seed fixes the actions
            cdf = torch.softmax(logits.double(), -1).cumsum(-1).cpu().numpy()
            u = self.rng.random((len(obs), 1))
            act = np.minimum((u > cdf).sum(-1), self.num_actions - 1)
        explore = self.rng.random(len(obs)) < self.epsilon
        act = np.where(explore, self.rng.integers(0, self.num_actions, size=len(obs)), act)
        return act.astype(np.int64)


def game_and_policy(game: str | None, policy: str | Path = "random", seed: int | None = None, epsilon: float = 0.0,
                    greedy: bool = False, env_options: dict | None = None,
                    device: str | torch.device = "cpu") -> GamePolicy:
    """The game to play and the policy to play it with, drawing from `seed` (None: a fresh seed,
    returned so it can be recorded).

    policy "random": uniformly random actions in `game` (required). An agent checkpoint: that
    agent, in its own game and frame protocol when `game` is None (env_options mode/difficulty
    still apply), else in `game` built with env_options, checked against the agent."""
    if str(policy) == "random":
        return random_play(game, seed, env_options)
    seed = draw_seed(seed)
    options = {k: v for k, v in (env_options or {}).items() if v is not None}
    if not Path(policy).exists():
        raise WmcliError(f"--policy {str(policy)!r} is neither 'random' nor an existing agent checkpoint "
                         f"(the file `wmcli train-agent -o` wrote)")
    agent = load_agent(policy, device, hint="to measure a world model on a store's held-out episodes, pass "
                                            "--store PATH (wmcli eval WM.pt --store STORE); to play, an agent checkpoint")
    if game is None:
        config = agent.spec.config
        modes = {k: options[k] for k in ("mode", "difficulty") if k in options}
        spec = make_spec(dataclasses.replace(config, **modes)) if modes else make_spec(config)
    else:
        spec = make_spec(EnvConfig(game=game, **options))
    agent.check_plays(spec)
    return GamePolicy(spec, AgentPolicy(agent, np.random.default_rng(seed), epsilon=epsilon, greedy=greedy,
                                        device=device), seed)
