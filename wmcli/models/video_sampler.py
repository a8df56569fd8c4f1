"""Sampling a video denoiser: windows of frames in flight, emitted one clean frame at a time.

One schedule family covers the three ways of using wmcli.models.video_denoiser: m frames enter
the window together every s network evaluations, each frame then takes the num_steps Euler
steps of the Karras schedule (Karras et al., 2022) at its own noise level, and leaves clean.
- joint: m = the model's window, s = num_steps: the whole window through the schedule together
  (Horizon Imagination's parallel horizon; num_steps / window evaluations per frame);
- staggered: s = evals_per_frame (or m = 1 / evals_per_frame frames per evaluation): the
  diffusion-forcing pyramid, the front frame cleanest; evals_per_frame = num_steps is frame by
  frame, as DIAMOND samples;
and the network evaluations per imagined frame are s / m once the window is full (the first
frame of a dream waits for its whole schedule).

`Window` holds B dreams' frames in flight and their clocks; `next_frames` runs the evaluations
until every dream's front frame is clean (each evaluation over the dreams that need it), returns
those frames and slides the windows. Actions
not chosen yet (the frames in flight but the front one, when an agent chooses them one by one)
are the model's unknown action; a caller that knows them (a rollout under recorded actions)
passes them. Every estimate is put on 8-bit levels (`quantize`), as in wmcli.models.sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wmcli.base.config import SamplerConfig, video_cadence, video_window_frames
from wmcli.base.errors import WmcliError
from wmcli.models.sampler import karras_sigmas, quantize


@dataclass(frozen=True)
class Timing:
    """m frames enter together every s evaluations; `frames` are in flight at most; each takes `steps` steps."""

    m: int
    s: int
    frames: int
    steps: int

    @property
    def evals_per_frame(self) -> float:
        return self.s / self.m


def timing(cfg: SamplerConfig, window: int) -> Timing:
    """The schedule of `cfg` for a model of `window` frames."""
    m, s = video_cadence(cfg, window)
    frames = video_window_frames(cfg, window)
    if frames > window:
        raise WmcliError(f"sampler.evals_per_frame {cfg.evals_per_frame:g} keeps {frames} frames in flight with num_steps "
                         f"{cfg.num_steps}, more than the video model's window ({window}); use at least "
                         f"{cfg.num_steps / window:g} (or fewer steps)")
    return Timing(m, s, frames, cfg.num_steps)


def max_video_steps(cfg: SamplerConfig, window: int) -> int:
    """The most denoising steps a frame can take under cfg's schedule in a model of `window` frames."""
    if cfg.video_schedule == "joint":
        return 10**6  # the window goes through the schedule together: any number of steps
    m, s = video_cadence(cfg, window)
    return (window // m) * s


@dataclass
class Window:
    """B dreams' frames in flight: x (B, frames, 3, H, W) at their noise levels; clock (B,) the
    evaluations each dream has had; first (B,) the index, in its dream, of its front frame."""

    x: Tensor
    clock: Tensor
    first: Tensor

    def rows(self, idx: Tensor) -> Window:
        return Window(self.x[idx], self.clock[idx], self.first[idx])

    def put(self, idx: Tensor, part: Window) -> None:
        self.x[idx], self.clock[idx], self.first[idx] = part.x, part.clock, part.first


def start_noise(shape, cfg: SamplerConfig, generator: torch.Generator | None, device, dtype) -> Tensor:
    """Standard-normal noise scaled to where sampling starts (sigma_max; 1 with start_noise "unit")."""
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return noise if cfg.start_noise == "unit" else noise * cfg.sigma_max


def new_window(batch: int, frame_shape, t: Timing, cfg: SamplerConfig, generator: torch.Generator | None = None,
               device=None, dtype=torch.float32) -> Window:
    """Fresh dreams: every frame in flight pure noise, nothing evaluated yet."""
    x = start_noise((batch, t.frames, *frame_shape), cfg, generator, device, dtype)
    zeros = torch.zeros(batch, dtype=torch.long, device=device)
    return Window(x, zeros, zeros.clone())


def positions(win: Window, t: Timing) -> Tensor:
    """Steps taken (B, frames) by each frame in flight: < 0 not entered yet, num_steps clean."""
    index = win.first[:, None] + torch.arange(t.frames, device=win.x.device)
    return (win.clock[:, None] - (index // t.m) * t.s).clamp(max=t.steps)


def window_actions(act: Tensor, future_act: Tensor | None, t: Timing, null_action: int) -> Tensor:
    """The model's action input (B, n + frames - 1): act (B, n), the actions at the n context
    frames; then the actions at the frames in flight but the last: future_act (B, k) for the
    first k of them where known, the unknown action elsewhere."""
    ahead = act.new_full((act.shape[0], t.frames - 1), null_action)
    if future_act is not None:
        known = min(future_act.shape[1], t.frames - 1)
        ahead[:, :known] = future_act[:, :known]
    return torch.cat([act, ahead], dim=1)


def evaluate(denoiser, win: Window, obs: Tensor, act: Tensor, t: Timing, cfg: SamplerConfig) -> Window:
    """One network evaluation of every dream in `win`: each frame that has entered and is not clean
    takes one Euler step down the schedule (ending on its quantised estimate)."""
    sigmas = karras_sigmas(t.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(win.x.device)
    pos = positions(win, t)  # (B, F)
    sigma = sigmas[pos.clamp(0, t.steps)].clamp(min=cfg.sigma_min)  # waiting frames at sigma_max, clean ones at sigma_min
    denoised = quantize(denoiser.denoise(win.x, sigma.to(win.x.dtype), obs, act), cfg.quantize)
    sigma_next = sigmas[(pos + 1).clamp(0, t.steps)]
    step = (win.x - denoised) / sigma[..., None, None, None] * (sigma_next - sigma)[..., None, None, None]
    x_next = torch.where((sigma_next == 0)[..., None, None, None], denoised, win.x + step.to(win.x.dtype))
    moving = (pos >= 0) & (pos < t.steps)
    return Window(torch.where(moving[..., None, None, None], x_next, win.x), win.clock + 1, win.first)


def next_frames(denoiser, win: Window, obs: Tensor, act: Tensor, t: Timing, cfg: SamplerConfig,
                generator: torch.Generator | None = None, future_act: Tensor | None = None) -> tuple[Tensor, Window, int]:
    """Each dream's next frame (B, 3, H, W): evaluations until every front frame is clean, then the
    windows slide (a fresh noise frame at the back). obs (B, n, 3, H, W) are the n newest frames
    and act (B, n) the actions at them; future_act as in window_actions. Each evaluation takes
    only the dreams whose front frame is not clean yet (a dream started afresh needs its whole
    schedule, the others s / m). Returns the frames, the windows after them and the network
    evaluations summed over dreams (B per evaluation of the whole batch)."""
    window_act = window_actions(act, future_act, t, denoiser.null_action)
    row_evals = 0
    while True:
        idx = (positions(win, t)[:, 0] < t.steps).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        if len(idx) == win.x.shape[0]:
            win = evaluate(denoiser, win, obs, window_act, t, cfg)
        else:
            win = Window(win.x.clone(), win.clock.clone(), win.first)
            win.put(idx, evaluate(denoiser, win.rows(idx), obs[idx], window_act[idx], t, cfg))
        row_evals += len(idx)
    frame = win.x[:, 0]
    fresh = start_noise((frame.shape[0], 1, *frame.shape[1:]), cfg, generator, frame.device, frame.dtype)
    return frame, Window(torch.cat([win.x[:, 1:], fresh], dim=1), win.clock, win.first + 1), row_evals


def sample_window(denoiser, obs: Tensor, act: Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None,
                  noise: Tensor | None = None) -> Tensor:
    """The whole window jointly: obs (B, n, 3, H, W), act (B, n + T - 1) (unknown actions as the
    model's null action); noise (B, T, 3, H, W) standard normal or drawn. Returns (B, T, 3, H, W)."""
    B, n, C, H, W = obs.shape
    T = act.shape[1] - n + 1
    if noise is None:
        noise = torch.randn((B, T, C, H, W), generator=generator, device=obs.device, dtype=obs.dtype)
    sigmas = karras_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(obs.device)
    x = noise if cfg.start_noise == "unit" else noise * cfg.sigma_max
    for i in range(cfg.num_steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = quantize(denoiser.denoise(x, x.new_full((B, T), sigma), obs, act), cfg.quantize)
        x = denoised if sigma_next == 0 else x + (x - denoised) / sigma * (sigma_next - sigma)
    return x
