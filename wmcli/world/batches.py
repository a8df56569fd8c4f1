"""What the world model's two networks are fed, in training and in measurement alike.

`denoiser_batch` and `rew_end_batch` turn segments of real episodes (wmcli.data.buffer) into
model inputs on the runtime's device; each is a request (`*_request`: which segments) and a
conversion (`*_inputs`), apart so that training can have the segments read ahead (wmcli.data.prefetch); `denoiser_noise` draws every random number one denoiser
loss needs from one generator. `DenoiserLoss` is the denoiser's objective with DIAMOND's
autoregressive step, `RewEndLoss` the reward/end model's and `DistillLoss` a distilled student's,
each a module with one forward so DDP and torch.compile can wrap it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from wmcli.base.config import DistillConfig, SamplerConfig, TrainWMConfig
from wmcli.base.frames import to_float
from wmcli.base.runtime import Runtime, to_device
from wmcli.data.buffer import EpisodeBuffer, SegmentRequest, Segments
from wmcli.models.denoiser import Denoiser
from wmcli.models.reward_end import RewEndModel
from wmcli.models.sampler import sample_next_obs


def denoiser_request(cfg: TrainWMConfig, n: int, batch_size: int, weights=None) -> SegmentRequest:
    """Segments of n context frames + 1 + autoregressive targets; the first target is always real.
    weights: EpisodeBuffer.sample's chunk weights (training), or None (uniform: measurement)."""
    ar = cfg.autoregressive_steps
    return SegmentRequest(batch_size, n + 1 + ar, pad_before=n - 1, pad_after=ar, weights=weights)


def denoiser_inputs(seg: Segments, rt: Runtime) -> dict:
    return {"obs": to_float(to_device(seg.obs, rt)), "act": to_device(seg.act, rt), "mask": to_device(seg.mask, rt)}


def denoiser_batch(buf: EpisodeBuffer, rng: np.random.Generator, cfg: TrainWMConfig, n: int, rt: Runtime,
                   batch_size: int, weights=None) -> dict:
    """The denoiser's inputs: denoiser_request's segments drawn from rng."""
    return denoiser_inputs(buf.sample(rng, *denoiser_request(cfg, n, batch_size, weights)), rt)


def rew_end_request(cfg: TrainWMConfig, batch_size: int, weights=None) -> SegmentRequest:
    """Sequences of rew_end_seq_len transitions (frame t, action, frame t+1), which may run past the end.
    weights as in denoiser_request."""
    L = cfg.rew_end_seq_len
    return SegmentRequest(batch_size, L + 1, pad_before=0, pad_after=L - 1, weights=weights)


def rew_end_inputs(seg: Segments, cfg: TrainWMConfig, rt: Runtime) -> dict:
    frames = to_float(to_device(seg.obs, rt))
    end = seg.end | seg.life_loss if cfg.end_on_life_loss else seg.end
    return {
        "obs": frames[:, :-1], "next_obs": frames[:, 1:], "act": to_device(seg.act[:, :-1], rt),
        "rew": to_device(seg.rew[:, :-1], rt), "end": to_device(end[:, :-1], rt),
        "mask": to_device(seg.mask[:, 1:], rt),  # a transition is real when the frame after it is
    }


def rew_end_batch(buf: EpisodeBuffer, rng: np.random.Generator, cfg: TrainWMConfig, rt: Runtime, batch_size: int,
                  weights=None) -> dict:
    """The reward/end model's inputs: rew_end_request's segments drawn from rng."""
    return rew_end_inputs(buf.sample(rng, *rew_end_request(cfg, batch_size, weights)), cfg, rt)


def denoiser_noise(denoiser: Denoiser, batch_size: int, shape, g: torch.Generator, rt: Runtime, ar: int) -> dict:
    """Every random draw of one denoiser loss, from generator g."""
    k = 1 + ar
    dc = denoiser.cfg
    out = {"noise": torch.randn((k, batch_size, *shape), generator=g, device=rt.device),
           "offset": torch.randn((k, batch_size, shape[0], 1, 1), generator=g, device=rt.device)}
    if dc.formulation == "edm":
        out["level"] = torch.stack([denoiser.sample_train_sigma(batch_size, g, rt.device) for _ in range(k)])
    else:
        out["level"] = torch.randint(0, dc.ddpm_timesteps, (k, batch_size), generator=g, device=rt.device)
    if dc.context_noise_max > 0:
        out["ctx_sigma"] = torch.rand(batch_size, generator=g, device=rt.device) * dc.context_noise_max
        out["ctx_noise"] = torch.randn((k, batch_size, dc.num_context, *shape), generator=g, device=rt.device)
    return out


class DenoiserLoss(nn.Module):
    """The denoiser's training loss on one batch of segments, with DIAMOND's autoregressive step."""

    def __init__(self, denoiser: Denoiser, autoregressive_steps: int):
        super().__init__()
        self.denoiser = denoiser
        self.ar = autoregressive_steps

    def forward(self, obs: Tensor, act: Tensor, mask: Tensor, noise: Tensor, level: Tensor, offset: Tensor,
                ctx_sigma: Tensor | None = None, ctx_noise: Tensor | None = None) -> Tensor:
        """obs (B, n+1+ar, 3, H, W), act (B, n+1+ar), mask (B, n+1+ar); for each target in turn:
        noise (1+ar, B, 3, H, W), level (1+ar, B), offset (1+ar, B, 3, 1, 1), and with noise
        augmentation ctx_sigma (B,) and standard-normal ctx_noise (1+ar, B, n, 3, H, W)."""
        d = self.denoiser
        n = d.cfg.num_context
        ctx = obs[:, :n]
        total = obs.new_zeros(())
        for k in range(1 + self.ar):
            ctx_in, ctx_act = ctx, act[:, k : k + n]
            if ctx_sigma is not None:  # noise augmentation of the context frames
                ctx_in = ctx + ctx_sigma[:, None, None, None, None] * ctx_noise[k]
            target = obs[:, n + k]
            loss, denoised = d.loss(target, ctx_in, ctx_act, noise[k], level[k], mask[:, n + k], offset[k],
                                    ctx_sigma, return_denoised=True)
            total = total + loss
            # The next target is predicted from the model's own (detached) estimate of this one.
            ctx = torch.cat([ctx[:, 1:], denoised.detach().clamp(-1, 1)[:, None]], dim=1)
        return total / (1 + self.ar)


class RewEndLoss(nn.Module):
    def __init__(self, model: RewEndModel):
        super().__init__()
        self.model = model

    def forward(self, obs, act, next_obs, rew, end, mask):
        loss, _ = self.model.loss(obs, act, next_obs, rew, end, mask)
        return loss


def context_request(n: int, batch_size: int, weights=None) -> SegmentRequest:
    """Segments of n context frames and the real frame after them (distillation and its measurement):
    the windows a next frame is dreamed from, as in denoiser_request."""
    return SegmentRequest(batch_size, n + 1, pad_before=n - 1, pad_after=0, weights=weights)


def student_sampler(teacher: SamplerConfig, cfg: DistillConfig) -> SamplerConfig:
    """The sampler a student of `teacher` samples with: deterministic Euler in cfg.student_steps
    network evaluations, from the teacher's start noise (1: at sigma_max; 2: at sigma_max, then
    cfg.sigma_mid, as a 2-step Karras schedule whose sigma_min is sigma_mid)."""
    kw = {"sigma_min": cfg.sigma_mid} if cfg.student_steps == 2 else {}
    return replace(teacher, name="euler", num_steps=cfg.student_steps, s_churn=0.0, **kw)


class DistillLoss(nn.Module):
    """A student's distillation loss: the frame its sampler makes from the teacher's start noise
    (quantised straight-through, so it is the frame the student will dream) against the frame the
    teacher's sampler made from the same noise and context; mean squared error in [-1, 1]."""

    def __init__(self, student: Denoiser, sampler: SamplerConfig):
        super().__init__()
        self.student = student
        self.sampler = sampler

    def forward(self, obs: Tensor, act: Tensor, noise: Tensor, target: Tensor) -> Tensor:
        """obs (B, n, 3, H, W) and act (B, n): the context; noise (B, 3, H, W) standard normal;
        target (B, 3, H, W): the teacher's frame."""
        x = sample_next_obs(self.student, obs, act, self.sampler, noise=noise, differentiable=True)
        return (x.float() - target.float()).pow(2).mean()
