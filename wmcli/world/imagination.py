"""The imagination env: games dreamed by the world model, B at a time.

`WorldModelEnv` is the batched torch core the agent trains in. `reset()` draws B real contexts
from a context sampler (num_context frames and the actions taken at all but the last; e.g.
`EpisodeBuffer(store).contexts(n)`, wmcli.data.buffer), burns the
reward/end model's LSTM in on them and returns the last context frame; the caller burns its own
policy in on `info["context_obs"]` and `info["context_act"]`. `step(act)` samples each next frame
with the recipe's sampler (a video denoiser keeps each env's frames in flight between steps:
world_model.NextFrame), then samples reward sign and end from the reward/end heads; a dreamed
game is truncated after `horizon` steps (DIAMOND: 15). Frames are float (B, 3, H, W) in [-1, 1].
Everything runs under no_grad; randomness comes from the numpy and torch generators it holds
(`set_generators` swaps them, so a training loop can make every draw reproducible).

`WorldModelVectorEnv` wraps the core as a standard gymnasium vector env (uint8 (B, H, W, 3)
frames, as the real envs give, next-step autoreset), so other RL libraries can train in the
dream; `WorldModelGymEnv` is its one-game view, which passes gymnasium's `check_env`.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from wmcli.base.config import SamplerConfig
from wmcli.base.frames import to_float, to_uint8
from wmcli.world.world_model import NextFrame, WorldModel


class ContextSampler(Protocol):
    """Where dreams start: sample(rng, k) -> k windows of n real frames (k, n, H, W, 3) uint8 and
    the actions taken at them (k, n) int64 (wmcli.data.buffer.Contexts is one)."""

    def sample(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class WorldModelEnv:
    def __init__(self, wm: WorldModel, contexts: ContextSampler, num_envs: int, horizon: int | None = 15,
                 sampler: SamplerConfig | None = None, device: str | torch.device = "cpu", seed: int = 0,
                 autocast=contextlib.nullcontext):
        """wm: the world model; contexts: real starting points for its dreams, of its num_context frames;
        horizon: steps after which a dream is truncated (None: never, as when a person plays it)."""
        self.denoiser, self.rew_end = wm.denoiser, wm.rew_end
        self.n = wm.num_context
        self.contexts, self.num_envs, self.horizon = contexts, num_envs, horizon
        self.next_frame = NextFrame(self.denoiser, sampler or wm.recipe.sampler, num_envs)
        self.device = torch.device(device)
        self.autocast = autocast
        self.set_generators(np.random.default_rng(seed), torch.Generator(self.device).manual_seed(seed))
        self.obs = self.act = self.hidden = self.t = None

    @property
    def sampler(self) -> SamplerConfig:
        return self.next_frame.cfg

    @sampler.setter
    def sampler(self, cfg: SamplerConfig) -> None:
        """A new sampler from the next step on (a video model's dreams restart their frames in flight)."""
        self.next_frame.set_sampler(cfg)

    def set_generators(self, rng: np.random.Generator, g: torch.Generator) -> None:
        self.rng, self.g = rng, g

    def _contexts(self, k: int) -> tuple[Tensor, Tensor]:
        obs, act = self.contexts.sample(self.rng, k)
        return to_float(torch.from_numpy(obs).to(self.device)), torch.from_numpy(act).to(self.device)  # (k, n, ...)

    @torch.no_grad()
    def reset(self, mask: Tensor | None = None) -> tuple[Tensor, dict]:
        """Start new dreams in every env, or in those where `mask` (B,) is true. Returns the
        current frames (B, 3, H, W) and, for the reset envs in order, their earlier context
        frames (k, n - 1, 3, H, W), the actions taken there (k, n - 1) and their indices."""
        B = self.num_envs
        idx = torch.arange(B, device=self.device) if mask is None else mask.nonzero().squeeze(1)
        obs, act = self._contexts(len(idx))
        with self.autocast():
            _, _, (h, c) = self.rew_end(obs[:, :-1], act[:, :-1], obs[:, 1:])  # burn in on the context
        if mask is None or self.obs is None:
            self.obs, self.act = obs, act[:, :-1]
            self.hidden = (h, c)
            self.t = torch.zeros(B, dtype=torch.long, device=self.device)
        else:
            self.obs[idx], self.act[idx] = obs, act[:, :-1]
            self.hidden[0][:, idx], self.hidden[1][:, idx] = h.to(self.hidden[0].dtype), c.to(self.hidden[1].dtype)
            self.t[idx] = 0
        self.next_frame.reset(None if mask is None else idx, self.g)
        return self.obs[:, -1], {"context_obs": obs[:, :-1], "context_act": act[:, :-1], "reset_envs": idx}

    @torch.no_grad()
    def step(self, act: Tensor, active: Tensor | None = None):
        """Advance every env (or those where `active` (B,) is true; the others keep their state)
        by the actions act (B,). Returns next frames (B, 3, H, W), rewards (B,) in {-1, 0, 1},
        ends (B,) bool, truncations (B,) bool and an empty info dict."""
        act = act.to(self.device)
        act_hist = torch.cat([self.act, act[:, None]], dim=1)  # the actions at the n context frames
        with self.autocast():
            nxt = self.next_frame(self.obs, act_hist, self.g, rows=None if active is None else active.to(self.device)).float()
            logits_rew, logits_end, hidden = self.rew_end(self.obs[:, -1:], act[:, None], nxt[:, None], self.hidden)
        rew = torch.multinomial(logits_rew[:, 0].float().softmax(-1), 1, generator=self.g).squeeze(1).float() - 1
        end = torch.multinomial(logits_end[:, 0].float().softmax(-1), 1, generator=self.g).squeeze(1).bool()
        obs = torch.cat([self.obs[:, 1:], nxt[:, None]], dim=1)
        t = self.t + 1
        if active is not None:
            a = active.to(self.device)
            obs = torch.where(a[:, None, None, None, None], obs, self.obs)
            act_hist = torch.where(a[:, None], act_hist, torch.cat([act_hist[:, :1], self.act], dim=1))
            hidden = tuple(torch.where(a[None, :, None], new, old) for new, old in zip(hidden, self.hidden))
            t = torch.where(a, t, self.t)
        self.obs, self.act, self.hidden, self.t = obs, act_hist[:, 1:], hidden, t
        trunc = (t >= self.horizon) & ~end if self.horizon is not None else torch.zeros_like(end)
        return nxt, rew, end, trunc, {}


class WorldModelVectorEnv(gym.vector.VectorEnv):
    """The dream as a gymnasium vector env: frames (B, H, W, 3) uint8, actions (B,) ints, rewards
    in {-1, 0, 1}, next-step autoreset (the step after an end or truncation returns a fresh
    dream's first frame, reward 0, and ignores the action).

        wm = load_world_model("wm.pt")  # wmcli.world.world_model
        contexts = EpisodeBuffer(Store.open("runs/Breakout/store")).contexts(wm.num_context)  # wmcli.data
        envs = WorldModelVectorEnv(wm, contexts, num_envs=16)
        obs, info = envs.reset(seed=0)
        obs, rew, terminated, truncated, info = envs.step(envs.action_space.sample())
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, wm: WorldModel, contexts: ContextSampler, num_envs: int = 1, horizon: int = 15,
                 device: str = "cpu"):
        self.core = WorldModelEnv(wm, contexts, num_envs, horizon, device=device)
        self.num_envs = num_envs
        num_actions = wm.spec.num_actions
        frame_shape = tuple(wm.spec.frame_shape)
        self.single_observation_space = gym.spaces.Box(0, 255, frame_shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(num_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._restart = np.zeros(num_envs, dtype=bool)

    def _frames(self, obs: Tensor) -> np.ndarray:
        return to_uint8(obs).cpu().numpy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.set_generators(np.random.default_rng(seed), torch.Generator(self.core.device).manual_seed(seed))
        obs, _ = self.core.reset()
        self._restart[:] = False
        return self._frames(obs), {}

    def step(self, actions):
        act = torch.as_tensor(np.asarray(actions, dtype=np.int64))
        restart = torch.from_numpy(self._restart.copy())
        if restart.any():
            self.core.reset(restart)
        obs, rew, end, trunc, _ = self.core.step(act, active=~restart)
        obs = torch.where(restart[:, None, None, None], self.core.obs[:, -1], obs)
        rew, end, trunc = rew.masked_fill(restart, 0.0), end & ~restart, trunc & ~restart
        self._restart = (end | trunc).cpu().numpy()
        return self._frames(obs), rew.cpu().numpy(), end.cpu().numpy(), trunc.cpu().numpy(), {}


class WorldModelGymEnv(gym.Env):
    """One dreamed game as a gymnasium env (the vector env with one env, without autoreset)."""

    metadata = {"render_modes": []}

    def __init__(self, wm: WorldModel, contexts: ContextSampler, horizon: int = 15, device: str = "cpu"):
        self.vec = WorldModelVectorEnv(wm, contexts, 1, horizon, device)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self.vec.reset(seed=seed)
        return obs[0], info

    def step(self, action):
        obs, rew, end, trunc, info = self.vec.core.step(torch.tensor([int(action)]))
        return self.vec._frames(obs)[0], float(rew[0]), bool(end[0]), bool(trunc[0]), info
