"""What the world model's two networks are fed, in training and in measurement alike.

`denoiser_batch` and `rew_end_batch` turn segments of real episodes (wmcli.data.buffer) into
model inputs on the runtime's device; each is a request (`*_request`: which segments) and a
conversion (`*_inputs`), apart so that training can have the segments read ahead (wmcli.data.prefetch); `denoiser_noise` draws every random number one denoiser
loss needs from one generator. `DenoiserLoss` is the denoiser's objective with DIAMOND's
autoregressive step, `RewEndLoss` the reward/end model's, `DistillLoss` a distilled student's
and `VideoLoss` a video denoiser's joint loss, each a module with one forward so DDP and
torch.compile can wrap it. `video_request`, `stillest` and `video_inputs` cut a video denoiser's
(history, future window) pairs, the curriculum keeping the stillest of them.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import torch
from torch import Tensor, nn

from wmcli.base.config import DistillConfig, SamplerConfig, TrainWMConfig, VideoTrainConfig
from wmcli.base.frames import to_float
from wmcli.base.runtime import Runtime, to_device
from wmcli.data.buffer import EpisodeBuffer, SegmentRequest, Segments
from wmcli.models.denoiser import Denoiser
from wmcli.models.reward_end import RewEndModel, rew_end_loss
from wmcli.models.sampler import sample_next_obs
from wmcli.models.video_denoiser import VideoDenoiser


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


def training_ends(seg: Segments, cfg: TrainWMConfig) -> np.ndarray:
    """The end flags the reward/end head is trained on: game over, or a life lost too where the recipe says."""
    return seg.end | seg.life_loss if cfg.end_on_life_loss else seg.end


def rew_end_inputs(seg: Segments, cfg: TrainWMConfig, rt: Runtime) -> dict:
    frames = to_float(to_device(seg.obs, rt))
    end = training_ends(seg, cfg)
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


# ---- the video denoiser ------------------------------------------------------------------------


def video_request(n: int, window: int, batch_size: int, still_fraction: float = 1.0, weights=None) -> SegmentRequest:
    """(history, future window) pairs: n context frames, then `window` frames, which may run past
    an episode's end (masked); the first future frame is always real. With a curriculum
    (still_fraction < 1) ceil(batch_size / still_fraction) are drawn and `stillest` keeps batch_size."""
    drawn = int(np.ceil(batch_size / still_fraction - 1e-9))
    return SegmentRequest(drawn, n + window, pad_before=n - 1, pad_after=window - 1, weights=weights)


def motion(seg: Segments, n: int) -> np.ndarray:
    """How fast each segment's scene changes (B,): the mean absolute difference, in 8-bit levels,
    between consecutive real frames from the last context frame through the window."""
    frames = seg.obs[:, n - 1 :].astype(np.int16)
    real = seg.mask[:, n - 1 :]
    both = real[:, 1:] & real[:, :-1]  # (B, T)
    diff = np.abs(frames[:, 1:] - frames[:, :-1]).mean(axis=(2, 3, 4))  # (B, T)
    return (diff * both).sum(1) / np.maximum(both.sum(1), 1)


def stillest(seg: Segments, n: int, keep: int) -> Segments:
    """The `keep` segments of seg with the least motion, in the order they were drawn."""
    if seg.obs.shape[0] <= keep:
        return seg
    idx = np.sort(np.argsort(motion(seg, n), kind="stable")[:keep])
    return Segments(**{f.name: getattr(seg, f.name)[idx] for f in fields(seg)})


def video_inputs(seg: Segments, cfg: TrainWMConfig, rt: Runtime) -> dict:
    """A video batch on the device: obs (B, n + T, 3, H, W) in [-1, 1], act, rew, end (life losses
    as ends where the recipe says), mask (B, n + T)."""
    return {"obs": to_float(to_device(seg.obs, rt)), "act": to_device(seg.act, rt), "rew": to_device(seg.rew, rt),
            "end": to_device(training_ends(seg, cfg), rt), "mask": to_device(seg.mask, rt)}


def video_noise(denoiser: VideoDenoiser, batch_size: int, window: int, shape, g: torch.Generator, rt: Runtime) -> dict:
    """Every random draw of one video loss, from generator g: noise (B, T, 3, H, W), offset
    (B, T, 3, 1, 1), sigma (B, T) (one level per frame, or per window without per_frame_noise),
    and hide (B,): the window frame from which actions are hidden (T - 1 and more: none)."""
    vc = denoiser.cfg.video
    B, T = batch_size, window
    out = {"noise": torch.randn((B, T, *shape), generator=g, device=rt.device),
           "offset": torch.randn((B, T, shape[0], 1, 1), generator=g, device=rt.device)}
    sigma = denoiser.sample_train_sigma((B, T if vc.per_frame_noise else 1), g, rt.device)
    out["sigma"] = sigma.expand(B, T).contiguous()
    hidden = torch.rand(B, generator=g, device=rt.device) < vc.unknown_action_prob
    cut = torch.randint(0, max(T - 1, 1), (B,), generator=g, device=rt.device)
    out["hide"] = torch.where(hidden, cut, torch.full_like(cut, T - 1))
    return out


class VideoLoss(nn.Module):
    """A video denoiser's joint loss on (history, future window) pairs: the denoising loss of the
    window's frames, plus rew_end_weight x the reward/end model's loss on the denoiser's estimates
    of those frames (gradient into the denoiser), plus action_weight x the cross-entropy of the
    inverse-dynamics head recovering each action from consecutive estimates. forward returns the
    total and the three terms (detached) for the logs."""

    def __init__(self, denoiser: VideoDenoiser, rew_end: RewEndModel | None, cfg: VideoTrainConfig):
        super().__init__()
        self.denoiser = denoiser
        self.rew_end = [rew_end]  # not a submodule: its parameters are the reward/end step's
        self.cfg = cfg

    def forward(self, obs: Tensor, act: Tensor, mask: Tensor, noise: Tensor, sigma: Tensor, offset: Tensor,
                hide: Tensor, rew: Tensor | None = None, end: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """obs (B, n + T, 3, H, W), act, mask, rew, end (B, n + T); the draws of video_noise."""
        d = self.denoiser
        n = d.cfg.num_context
        T = obs.shape[1] - n
        window_act = act[:, : n + T - 1]
        if T > 1:  # the actions at window frames hide and later: not chosen yet
            later = torch.arange(T - 1, device=act.device)[None] >= hide[:, None]
            window_act = torch.cat([act[:, :n], act[:, n:n + T - 1].masked_fill(later, d.null_action)], dim=1)
        real = mask[:, n:]
        diffusion, denoised = d.loss(obs[:, n:], obs[:, :n], window_act, noise, sigma, real, offset)
        total = diffusion
        est = denoised.float().clamp(-1, 1)
        before = torch.cat([obs[:, n - 1 : n].float(), est[:, :-1]], dim=1)  # the frame each one follows
        taken = act[:, n - 1 : n + T - 1]  # the action taken between them
        joint_rew_end = diffusion.new_zeros(())
        if self.cfg.rew_end_weight > 0 and self.rew_end[0] is not None and rew is not None:
            # The reward/end model with its weights held fixed: the gradient reaches the frames only.
            model = self.rew_end[0]
            fixed = {k: v.detach() for k, v in [*model.named_parameters(), *model.named_buffers()]}
            logits_rew, logits_end, _ = torch.func.functional_call(model, fixed, (before, taken, est))
            joint_rew_end, _ = rew_end_loss(logits_rew, logits_end, rew[:, n - 1 : n + T - 1], end[:, n - 1 : n + T - 1], real)
            total = total + self.cfg.rew_end_weight * joint_rew_end
        # Computed at weight 0 too (adding nothing), so that every parameter takes part (DDP).
        logits = d.inverse_dynamics(before.flatten(0, 1), est.flatten(0, 1))
        m = real.flatten()
        action = nn.functional.cross_entropy(logits[m].float(), taken.flatten()[m])
        total = total + self.cfg.action_weight * action
        return total, torch.stack([diffusion, joint_rew_end, action]).detach()
