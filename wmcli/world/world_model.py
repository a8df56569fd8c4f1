"""A trained world model loaded from its checkpoint, and autoregressive rollouts of it.

`WorldModel` holds the denoiser and reward/end model with the recipe and env spec they were
trained with; `load_world_model` rebuilds one from a checkpoint alone (no training code is
involved). `dream_frames` dreams frames one after another: each new frame is sampled from the
last `num_context` frames (real ones first, then its own) and the actions taken at them;
`rollout` does so under given actions, `wmcli imagine` under a policy's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from wmcli.base.checkpoint import load_checkpoint, load_weights
from wmcli.base.config import Recipe, SamplerConfig
from wmcli.base.recipe import recipe_from_dict
from wmcli.data.spec import EnvSpec
from wmcli.models.denoiser import Denoiser
from wmcli.models.reward_end import RewEndModel
from wmcli.models.sampler import sample_next_obs


@dataclass
class WorldModel:
    denoiser: Denoiser
    rew_end: RewEndModel
    recipe: Recipe
    spec: EnvSpec  # the game it dreams (action set, frame shape, protocol)
    step: int
    store: str | None = None  # the store it was trained on

    @property
    def num_context(self) -> int:
        return self.denoiser.cfg.num_context


def build_networks(recipe: Recipe, num_actions: int) -> tuple[Denoiser, RewEndModel]:
    """A fresh denoiser and reward/end model of `recipe` (initialised from torch's global RNG)."""
    return Denoiser(recipe.denoiser, num_actions), RewEndModel(recipe.reward_end, num_actions, recipe.env.frame_size)


def world_model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> WorldModel:
    """A world model from a loaded world-model checkpoint, on `device`, in eval mode."""
    recipe = recipe_from_dict(ckpt["recipe"])
    spec = EnvSpec.from_dict(ckpt["env"])
    denoiser, rew_end = build_networks(recipe, spec.num_actions)
    load_weights(denoiser, ckpt["models"]["denoiser"], "denoiser")
    load_weights(rew_end, ckpt["models"]["rew_end"], "reward/end model")
    denoiser.to(device).eval()
    rew_end.to(device).eval()
    return WorldModel(denoiser, rew_end, recipe, spec, ckpt["step"], ckpt.get("store"))


def load_world_model(path: str | Path, device: str | torch.device = "cpu", hint: str | None = None) -> WorldModel:
    """The world model of a checkpoint; `hint` says what to do instead when it is an agent's."""
    return world_model_from_checkpoint(load_checkpoint(path, "world_model", hint), device)


def dream_frames(denoiser, obs: Tensor, past_act: Tensor, cfg: SamplerConfig, horizon: int, next_act,
                 generator: torch.Generator | None = None, autocast=contextlib.nullcontext,
                 callback=None) -> Iterator[tuple[Tensor, Tensor]]:
    """Dream `horizon` frames one after another from n real ones, yielding (act, frame) per step.

    obs (B, n, 3, H, W) in [-1, 1] and past_act (B, n - 1), the actions taken between them.
    next_act(t, newest) gives the action (B,) taken at the newest frame (B, 3, H, W), real or
    dreamed; the next frame is sampled from the last n frames and actions (under `autocast`),
    yielded as float (B, 3, H, W), and the window slides. callback goes to the sampler."""
    for t in range(horizon):
        a = next_act(t, obs[:, -1])
        act = torch.cat([past_act, a[:, None]], dim=1)  # (B, n): the action at each context frame
        with autocast():
            nxt = sample_next_obs(denoiser, obs, act, cfg, generator, callback).float()
        yield a, nxt
        obs = torch.cat([obs[:, 1:], nxt[:, None]], dim=1)
        past_act = act[:, 1:]


@torch.no_grad()
def rollout(denoiser, obs: Tensor, act: Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None,
            autocast=contextlib.nullcontext) -> Tensor:
    """Dream T frames from n real ones under given actions: obs (B, n, 3, H, W) in [-1, 1]; act
    (B, n + T - 1), where act[:, i] is the action taken at frame i (the n context frames, then the
    dreamed ones). Returns the dreamed frames (B, T, 3, H, W)."""
    n = obs.shape[1]
    T = act.shape[1] - n + 1
    steps = dream_frames(denoiser, obs, act[:, : n - 1], cfg, T, lambda t, _: act[:, n - 1 + t], generator, autocast)
    return torch.stack([frame for _, frame in steps], dim=1)
