"""A trained world model loaded from its checkpoint, and autoregressive rollouts of it.

`load_world_model` rebuilds the denoiser and reward/end model from a checkpoint alone (the
recipe and env are inside). `rollout` dreams frames one after another under given actions:
each new frame is sampled from the last `num_context` frames (real ones first, then its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from wmcli.sampler import SamplerConfig, sample_next_obs


@dataclass
class WorldModel:
    denoiser: torch.nn.Module
    rew_end: torch.nn.Module
    recipe: object  # wmcli.recipe.Recipe
    env: dict  # the store's env spec (game, protocol, actions, frame shape)
    step: int

    @property
    def num_context(self) -> int:
        return self.denoiser.cfg.num_context


def load_world_model(path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
    from wmcli.checkpoint import load_checkpoint
    from wmcli.recipe import recipe_from_dict
    from wmcli.train_wm import build_models

    ckpt = load_checkpoint(path, "world_model")
    recipe = recipe_from_dict(ckpt["recipe"])
    denoiser, rew_end = build_models(recipe, ckpt["env"]["num_actions"])
    denoiser.load_state_dict(ckpt["models"]["denoiser"])
    rew_end.load_state_dict(ckpt["models"]["rew_end"])
    denoiser.to(device).eval()
    rew_end.to(device).eval()
    return WorldModel(denoiser, rew_end, recipe, ckpt["env"], ckpt["step"])


@torch.no_grad()
def rollout(denoiser, obs: Tensor, act: Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None) -> Tensor:
    """Dream T frames from n real ones: obs (B, n, 3, H, W) in [-1, 1]; act (B, n + T - 1), where
    act[:, i] is the action taken at frame i (the n context frames, then the dreamed ones).
    Returns the dreamed frames (B, T, 3, H, W)."""
    n = obs.shape[1]
    T = act.shape[1] - n + 1
    frames, out = obs, []
    for t in range(T):
        nxt = sample_next_obs(denoiser, frames[:, -n:], act[:, t : t + n], cfg, generator)
        out.append(nxt)
        frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(out, dim=1)
