"""A trained world model loaded from its checkpoint, and autoregressive rollouts of it.

`WorldModel` holds the denoiser and reward/end model with the recipe and env spec they were
trained with; `load_world_model` rebuilds one from a checkpoint alone (no training code is
involved). `NextFrame` gives B dreams their next frames with either kind of denoiser: DIAMOND's
samples each from the last `num_context` frames and the actions taken at them; a video
denoiser keeps a window of frames in flight per dream (wmcli.models.video_sampler), so the
imagination env, `imagine`, `play` and an agent's training ask for one frame at a time and never
see the difference. `dream_frames` dreams frames one after another (real context first, then
its own frames); `rollout` does so under given actions, `wmcli imagine` under a policy's.
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
from wmcli.models.video_denoiser import VideoDenoiser
from wmcli.models.video_sampler import new_window, next_frames, timing


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


def build_denoiser(recipe: Recipe, num_actions: int) -> Denoiser | VideoDenoiser:
    """A fresh denoiser of the recipe's kind: DIAMOND's next-frame one or the video one."""
    cls = VideoDenoiser if recipe.denoiser.kind == "video" else Denoiser
    return cls(recipe.denoiser, num_actions)


def build_networks(recipe: Recipe, num_actions: int) -> tuple[Denoiser | VideoDenoiser, RewEndModel]:
    """A fresh denoiser and reward/end model of `recipe` (initialised from torch's global RNG)."""
    return build_denoiser(recipe, num_actions), RewEndModel(recipe.reward_end, num_actions, recipe.env.frame_size)


def denoiser_evals(cfg: SamplerConfig) -> int:
    """Network evaluations of one frame of DIAMOND's denoiser under `cfg` (Heun: two a step but the last)."""
    return 2 * cfg.num_steps - 1 if cfg.name == "heun" else cfg.num_steps


class NextFrame:
    """The next frames of B dreams, from either kind of denoiser.

    call(obs, act, generator) with the n newest frames obs (B, n, 3, H, W) and the actions taken
    at them act (B, n) returns the next frames (B, 3, H, W). A video denoiser's frames in flight
    live here between calls: `reset(rows)` starts those dreams afresh (call it whenever their
    context is replaced); `rows` (B,) bool in a call advances only those dreams (the others keep
    their windows; their rows of the result are zeros). future_act (B, k): the actions at
    the coming frames, where the caller knows them (a rollout under recorded actions).
    `evaluations` and `frames` count network evaluations per dream (one evaluation of the whole
    batch adds 1; of half of it, 0.5) and calls: their ratio is the sequential network calls a
    frame costs a dream. `frame_passes` counts frames put through the U-Net per dream (an
    evaluation of a video window passes all its frames in flight): per frame, the compute."""

    def __init__(self, denoiser, cfg: SamplerConfig, batch: int, generator: torch.Generator | None = None):
        self.denoiser, self.cfg, self.batch = denoiser, cfg, batch
        self.video = getattr(denoiser, "kind", "frame") == "video"
        self.timing = timing(cfg, denoiser.window) if self.video else None
        self.win = None
        self.generator = generator
        self.evaluations = self.frames = self.frame_passes = 0

    def set_sampler(self, cfg: SamplerConfig) -> None:
        """Sample with `cfg` from the next call on; a video model's frames in flight start afresh."""
        self.cfg = cfg
        if self.video:
            self.timing = timing(cfg, self.denoiser.window)
            self.win = None

    def _count(self, row_evals: int) -> None:
        self.evaluations += row_evals / self.batch
        self.frame_passes += row_evals * self.timing.frames / self.batch

    def reset(self, rows: Tensor | None = None, generator: torch.Generator | None = None) -> None:
        if not self.video:
            return
        self.generator = generator if generator is not None else self.generator
        if rows is None or self.win is None:
            self.win = None  # made at the next call, when the frame shape is known
            return
        idx = rows.nonzero().squeeze(1) if rows.dtype == torch.bool else rows
        fresh = new_window(len(idx), self.win.x.shape[2:], self.timing, self.cfg, self.generator, self.win.x.device,
                           self.win.x.dtype)
        self.win.put(idx, fresh)

    def __call__(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None, rows: Tensor | None = None,
                 future_act: Tensor | None = None, callback=None) -> Tensor:
        self.frames += 1
        if not self.video:
            self.evaluations += denoiser_evals(self.cfg)
            self.frame_passes += denoiser_evals(self.cfg)
            return sample_next_obs(self.denoiser, obs, act, self.cfg, generator, callback)
        if self.win is None:
            self.win = new_window(obs.shape[0], obs.shape[2:], self.timing, self.cfg, generator or self.generator,
                                  obs.device, torch.float32)
        if rows is None or bool(rows.all()):
            frame, self.win, row_evals = next_frames(self.denoiser, self.win, obs, act, self.timing, self.cfg, generator,
                                                     future_act)
            self._count(row_evals)
            return frame
        idx = rows.nonzero().squeeze(1)
        out = obs.new_zeros((obs.shape[0], *obs.shape[2:]))
        if len(idx):
            fut = future_act[idx] if future_act is not None else None
            frame, part, row_evals = next_frames(self.denoiser, self.win.rows(idx), obs[idx], act[idx], self.timing,
                                                 self.cfg, generator, fut)
            self.win.put(idx, part)
            out[idx] = frame.to(out.dtype)
            self._count(row_evals)
        return out


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
                 callback=None, future_act: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Dream `horizon` frames one after another from n real ones, yielding (act, frame) per step.

    obs (B, n, 3, H, W) in [-1, 1] and past_act (B, n - 1), the actions taken between them.
    next_act(t, newest) gives the action (B,) taken at the newest frame (B, 3, H, W), real or
    dreamed; the next frame is sampled from the last n frames and actions (under `autocast`),
    yielded as float (B, 3, H, W), and the window slides. callback goes to the sampler (DIAMOND's
    denoiser). future_act (B, horizon - 1): the actions at the dreamed frames, known ahead (a
    video denoiser then conditions its frames in flight on them; next_act must agree)."""
    frames = NextFrame(denoiser, cfg, obs.shape[0], generator)
    for t in range(horizon):
        a = next_act(t, obs[:, -1])
        act = torch.cat([past_act, a[:, None]], dim=1)  # (B, n): the action at each context frame
        ahead = future_act[:, t:] if future_act is not None and t < future_act.shape[1] else None
        with autocast():
            nxt = frames(obs, act, generator, future_act=ahead, callback=callback).float()
        yield a, nxt
        obs = torch.cat([obs[:, 1:], nxt[:, None]], dim=1)
        past_act = act[:, 1:]


@torch.no_grad()
def rollout(denoiser, obs: Tensor, act: Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None,
            autocast=contextlib.nullcontext, actions_ahead: bool = True) -> Tensor:
    """Dream T frames from n real ones under given actions: obs (B, n, 3, H, W) in [-1, 1]; act
    (B, n + T - 1), where act[:, i] is the action taken at frame i (the n context frames, then the
    dreamed ones). Returns the dreamed frames (B, T, 3, H, W). actions_ahead: a video denoiser
    sees the actions of its frames in flight (false: each only once taken, as with an agent)."""
    n = obs.shape[1]
    T = act.shape[1] - n + 1
    ahead = act[:, n:] if actions_ahead and T > 1 else None
    steps = dream_frames(denoiser, obs, act[:, : n - 1], cfg, T, lambda t, _: act[:, n - 1 + t], generator, autocast,
                         future_act=ahead)
    return torch.stack([frame for _, frame in steps], dim=1)
