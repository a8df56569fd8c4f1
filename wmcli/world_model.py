"""A trained world model loaded from its checkpoint, and autoregressive rollouts of it.

`load_world_model` rebuilds the denoiser and reward/end model from a checkpoint alone (the
recipe and env are inside). `dream_frames` dreams frames one after another: each new frame is
sampled from the last `num_context` frames (real ones first, then its own) and the actions
taken at them; `rollout` does so under given actions, `wmcli imagine` under a policy's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
    store: str | None = None  # the store it was trained on

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
    return WorldModel(denoiser, rew_end, recipe, ckpt["env"], ckpt["step"], ckpt.get("store"))


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
def rollout(denoiser, obs: Tensor, act: Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None) -> Tensor:
    """Dream T frames from n real ones under given actions: obs (B, n, 3, H, W) in [-1, 1]; act
    (B, n + T - 1), where act[:, i] is the action taken at frame i (the n context frames, then the
    dreamed ones). Returns the dreamed frames (B, T, 3, H, W)."""
    n = obs.shape[1]
    T = act.shape[1] - n + 1
    steps = dream_frames(denoiser, obs, act[:, : n - 1], cfg, T, lambda t, _: act[:, n - 1 + t], generator)
    return torch.stack([frame for _, frame in steps], dim=1)


@torch.no_grad()
def evaluate_world_model(wm: WorldModel, store, episodes: list | None = None, segments: int = 128, horizon: int = 15,
                         seed: int = 0, batch_size: int = 32, device: str | torch.device = "cpu") -> dict:
    """The world model on held-out episodes (by default the store's validation split):

    - the denoising loss on segments shaped as in training (fixed noise draws);
    - next-frame PSNR at 1 step and over `horizon`-step rollouts under the real actions, each
      against copying the last real frame (PSNR of the MSE pooled over all compared frames);
    - reward-sign and end precision/recall/F1 over every transition of those episodes, read in
      consecutive windows of the recipe's reward/end sequence length (end = game over, or a
      life lost when the recipe trains it so).
    """
    import numpy as np

    from wmcli.buffer import EpisodeBuffer
    from wmcli.errors import WmcliError
    from wmcli.frames import to_float
    from wmcli.metrics import psnr_of_mse
    from wmcli.reward_end import precision_recall_f1
    from wmcli.runtime import Runtime
    from wmcli.train_wm import DenoiserLoss, denoiser_batch, denoiser_noise, split_episodes

    rt = Runtime(torch.device(device), "fp32", False)
    recipe, n = wm.recipe, wm.num_context
    if episodes is None:
        episodes = split_episodes(store.episode_paths(), recipe.train_wm.val_fraction)[1]
    if not episodes:
        raise WmcliError(f"store {store.path} has no held-out episode (it needs 2 or more episodes)")
    buf = EpisodeBuffer(store, episodes=episodes)
    rng = np.random.default_rng(seed)
    g = torch.Generator(device).manual_seed(seed)

    # Denoising loss, as in training but without the autoregressive term.
    losses = []
    cfg_1 = replace(recipe.train_wm, autoregressive_steps=0)
    for start in range(0, segments, batch_size):
        B = min(batch_size, segments - start)
        batch = denoiser_batch(buf, rng, cfg_1, n, rt, B)
        draws = denoiser_noise(wm.denoiser, B, batch["obs"].shape[2:], g, rt, 0)
        losses.append(DenoiserLoss(wm.denoiser, 0)(batch["obs"], batch["act"], batch["mask"], **draws).item() * B)

    # Rollouts under the real actions.
    try:
        seg = buf.sample(rng, segments, n + horizon, pad_before=0, pad_after=0)
    except ValueError:
        longest = int(buf.lengths.max()) - 1
        raise WmcliError(f"held-out episodes have at most {longest} steps, too few for {n} context frames + "
                         f"a {horizon}-step rollout; pass a smaller horizon") from None
    t0 = time.perf_counter()
    se_model, se_copy = [], []
    for start in range(0, segments, batch_size):
        obs = to_float(torch.from_numpy(seg.obs[start : start + batch_size]).to(device))
        act = torch.from_numpy(seg.act[start : start + batch_size]).to(device)
        dream = rollout(wm.denoiser, obs[:, :n], act[:, : n + horizon - 1], recipe.sampler, g)
        real = obs[:, n:]
        se_model.append((dream - real).pow(2).mean(dim=(2, 3, 4)))  # (b, horizon)
        se_copy.append((obs[:, n - 1 : n] - real).pow(2).mean(dim=(2, 3, 4)))
    dream_s = time.perf_counter() - t0
    mse_model, mse_copy = torch.cat(se_model).mean(0), torch.cat(se_copy).mean(0)  # (horizon,)

    # Reward and end over every held-out transition.
    L = recipe.train_wm.rew_end_seq_len
    pred_rew, true_rew, pred_end, true_end = [], [], [], []
    for i in range(buf.num_episodes):
        ep = buf.episode(i)
        end = ep.end | ep.life_loss if recipe.train_wm.end_on_life_loss else ep.end
        for s in range(0, len(ep), L):
            e = min(s + L, len(ep))
            frames = to_float(torch.from_numpy(ep.obs[s : e + 1]).to(device))[None]
            act = torch.from_numpy(ep.act[s:e]).to(device)[None]
            logits_rew, logits_end, _ = wm.rew_end(frames[:, :-1], act, frames[:, 1:])
            pred_rew.append(logits_rew[0].argmax(-1) != 1)
            true_rew.append(torch.from_numpy(ep.rew[s:e] != 0))
            pred_end.append(logits_end[0].argmax(-1) == 1)
            true_end.append(torch.from_numpy(end[s:e]))
    r = precision_recall_f1(torch.cat(pred_rew).cpu(), torch.cat(true_rew))
    e = precision_recall_f1(torch.cat(pred_end).cpu(), torch.cat(true_end))
    return {
        "held_out_episodes": buf.num_episodes, "held_out_frames": buf.num_frames, "segments": segments,
        "horizon": horizon, "seed": seed, "loss_denoiser": sum(losses) / segments,
        "psnr_1step": psnr_of_mse(mse_model[0].item()), "psnr_1step_copy_last": psnr_of_mse(mse_copy[0].item()),
        "psnr_rollout": psnr_of_mse(mse_model.mean().item()),
        "psnr_rollout_copy_last": psnr_of_mse(mse_copy.mean().item()),
        "psnr_per_step": [psnr_of_mse(v) for v in mse_model.tolist()],
        "psnr_per_step_copy_last": [psnr_of_mse(v) for v in mse_copy.tolist()],
        "reward": r, "end": e, "end_counts_life_loss": recipe.train_wm.end_on_life_loss,
        "imagined_frames_per_s": segments * horizon / dream_s,
    }
