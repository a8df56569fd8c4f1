"""How good a world model is on held-out episodes, in one implementation for both uses.

`Scores` gathers the numbers: the denoising loss (on segments shaped as in training, fixed
noise draws), next-frame PSNR over rollouts under the real actions against copying the last
real frame (PSNR of the MSE pooled over all compared frames, docs/metrics.md), and the reward
sign's and end's precision/recall/F1 and loss. Training's validation (`validate`: a few random
held-out batches every `val_every` steps, 1-step rollouts, logged as `val/...`) and
`wmcli eval WM.pt --store` (`evaluate_world_model`: many segments, `horizon`-step rollouts and
every transition of the held-out episodes) feed it the same way, so their numbers mean the same.
`validate_distillation` measures a distilled student against its teacher (wmcli.training.distill).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from wmcli.base.config import DistillConfig, Recipe, SamplerConfig, VideoTrainConfig
from wmcli.base.errors import WmcliError
from wmcli.base.frames import to_float
from wmcli.base.metrics import psnr_of_mse
from wmcli.base.runtime import Runtime, step_generators
from wmcli.data.buffer import EpisodeBuffer
from wmcli.models.reward_end import precision_recall_f1, rew_end_loss
from wmcli.models.sampler import sample_next_obs
from wmcli.world.batches import (
    DenoiserLoss,
    VideoLoss,
    context_request,
    denoiser_batch,
    denoiser_inputs,
    denoiser_noise,
    rew_end_batch,
    video_noise,
)
from wmcli.world.world_model import rollout


class Scores:
    """A world model's held-out numbers, gathered batch by batch."""

    def __init__(self):
        self.loss_sum = {"denoiser": 0.0, "rew_end": 0.0}
        self.loss_count = {"denoiser": 0, "rew_end": 0}
        self.se_model: list[Tensor] = []  # (b, T) squared errors per rollout step
        self.se_copy: list[Tensor] = []
        self.rew: list[tuple[Tensor, Tensor]] = []  # (predicted nonzero, true nonzero)
        self.end: list[tuple[Tensor, Tensor]] = []

    @torch.no_grad()
    def add_denoising_loss(self, denoiser, batch: dict, g: torch.Generator, rt: Runtime) -> None:
        """The denoising loss of one batch (denoiser_batch without autoregressive targets)."""
        B, _, C, H, W = batch["obs"].shape
        with rt.autocast():
            if denoiser.kind == "video":  # its denoising term on a window of one frame
                draws = video_noise(denoiser, B, 1, (C, H, W), g, rt)
                _, terms = VideoLoss(denoiser, None, VideoTrainConfig())(batch["obs"], batch["act"], batch["mask"], **draws)
                loss = terms[0]
            else:
                draws = denoiser_noise(denoiser, B, (C, H, W), g, rt, 0)
                loss = DenoiserLoss(denoiser, 0)(batch["obs"], batch["act"], batch["mask"], **draws)
        self.loss_sum["denoiser"] += loss.item() * B
        self.loss_count["denoiser"] += B

    @torch.no_grad()
    def add_rollouts(self, denoiser, obs: Tensor, act: Tensor, recipe: Recipe, g: torch.Generator, rt: Runtime,
                     keep: Tensor | None = None, actions_ahead: bool = True) -> None:
        """Dream obs's last T frames from its first n under the real actions and compare:
        obs (B, n + T, 3, H, W), act (B, n + T - 1); keep (B,) bool: the rows to count;
        actions_ahead as in world_model.rollout."""
        n = denoiser.cfg.num_context
        dream = rollout(denoiser, obs[:, :n], act, recipe.sampler, g, rt.autocast, actions_ahead).float()  # (B, T, 3, H, W)
        real = obs[:, n:].float()
        last = obs[:, n - 1 : n].float()
        if keep is not None:
            dream, real, last = dream[keep], real[keep], last[keep]
        self.se_model.append((dream - real).pow(2).mean(dim=(2, 3, 4)))  # (b, T)
        self.se_copy.append((last - real).pow(2).mean(dim=(2, 3, 4)))

    @torch.no_grad()
    def add_rew_end(self, rew_end, obs: Tensor, act: Tensor, next_obs: Tensor, rew: Tensor, end: Tensor,
                    mask: Tensor, rt: Runtime) -> None:
        """Reward-sign and end predictions of transitions (B, T) against the truth, where mask (B, T)."""
        with rt.autocast():
            logits_rew, logits_end, _ = rew_end(obs, act, next_obs)
            loss, _ = rew_end_loss(logits_rew, logits_end, rew, end, mask)
        self.loss_sum["rew_end"] += loss.item() * int(mask.sum())
        self.loss_count["rew_end"] += int(mask.sum())
        self.rew.append((logits_rew.argmax(-1)[mask] != 1, rew[mask] != 0))
        self.end.append((logits_end.argmax(-1)[mask] == 1, end[mask].bool()))

    def result(self) -> dict:
        mse_model = torch.cat(self.se_model).mean(0)  # (T,)
        mse_copy = torch.cat(self.se_copy).mean(0)

        def prf(pairs) -> dict:
            return precision_recall_f1(torch.cat([p for p, _ in pairs]).cpu(), torch.cat([t for _, t in pairs]).cpu())

        def mean_loss(k: str) -> float | None:
            return self.loss_sum[k] / self.loss_count[k] if self.loss_count[k] else None

        return {
            "loss_denoiser": mean_loss("denoiser"), "loss_rew_end": mean_loss("rew_end"),
            "psnr_1step": psnr_of_mse(mse_model[0].item()), "psnr_1step_copy_last": psnr_of_mse(mse_copy[0].item()),
            "psnr_rollout": psnr_of_mse(mse_model.mean().item()),
            "psnr_rollout_copy_last": psnr_of_mse(mse_copy.mean().item()),
            "psnr_per_step": [psnr_of_mse(v) for v in mse_model.tolist()],
            "psnr_per_step_copy_last": [psnr_of_mse(v) for v in mse_copy.tolist()],
            "reward": prf(self.rew), "end": prf(self.end),
        }


def validate(denoiser, rew_end, buf: EpisodeBuffer, recipe: Recipe, rt: Runtime) -> dict:
    """Training's validation: `train_wm.val_batches` random held-out batches, 1-step rollouts, as
    `val/...` metrics. Draws are seeded by the recipe seed alone, so every validation sees the same
    segments and noise."""
    cfg = replace(recipe.train_wm, autoregressive_steps=0)
    n = recipe.denoiser.num_context
    was_training = denoiser.training, rew_end.training
    denoiser.eval()
    rew_end.eval()
    scores = Scores()
    for i in range(cfg.val_batches):
        rng, g = step_generators(cfg.seed, 10_000 + i, 0, rt.device)
        batch = denoiser_batch(buf, rng, cfg, n, rt, cfg.batch_size)
        scores.add_denoising_loss(denoiser, batch, g, rt)
        scores.add_rollouts(denoiser, batch["obs"], batch["act"][:, :n], recipe, g, rt, keep=batch["mask"][:, n])
        rb = rew_end_batch(buf, rng, cfg, rt, cfg.rew_end_batch_size)
        scores.add_rew_end(rew_end, rb["obs"], rb["act"], rb["next_obs"], rb["rew"], rb["end"], rb["mask"], rt)
    denoiser.train(was_training[0])
    rew_end.train(was_training[1])
    r = scores.result()
    return {
        "val/loss_denoiser": r["loss_denoiser"], "val/loss_rew_end": r["loss_rew_end"],
        "val/psnr_1step": r["psnr_1step"], "val/psnr_copy_last": r["psnr_1step_copy_last"],
        **{f"val/{head}_{k}": r[head][k] for head in ("reward", "end") for k in ("f1", "precision", "recall")},
    }


@torch.no_grad()
def validate_distillation(student, teacher, student_sampler: SamplerConfig, teacher_sampler: SamplerConfig,
                          buf: EpisodeBuffer, cfg: DistillConfig, rt: Runtime) -> dict:
    """A student against its teacher on `cfg.val_batches` held-out context windows (the same ones
    and the same start noise at every validation): PSNR of the student's next frame against the
    teacher's (`val/psnr_vs_teacher`) and of the teacher's own frame in the student's few steps
    against it (`val/psnr_teacher_short_vs_teacher`: where distillation starts from), and of each
    against the real frame (`val/psnr_1step`, `val/psnr_teacher`, `val/psnr_teacher_short`, with
    `val/psnr_copy_last`)."""
    n = teacher.cfg.num_context
    was_training = student.training
    student.eval()
    se: dict[str, list[Tensor]] = {k: [] for k in ("vs_teacher", "teacher_short_vs_teacher", "1step", "teacher",
                                                    "teacher_short", "copy_last")}
    for i in range(cfg.val_batches):
        rng, g = step_generators(cfg.seed, 10_000 + i, 0, rt.device)
        b = denoiser_inputs(buf.sample(rng, *context_request(n, cfg.batch_size)), rt)
        obs, act, real = b["obs"][:, :n], b["act"][:, :n], b["obs"][:, n].float()
        noise = torch.randn(real.shape, generator=g, device=rt.device)
        with rt.autocast():
            frames = {name: sample_next_obs(model, obs, act, sampler, noise=noise).float() for name, model, sampler in (
                ("teacher", teacher, teacher_sampler), ("student", student, student_sampler),
                ("teacher_short", teacher, student_sampler))}

        def mse(a: Tensor, b: Tensor) -> Tensor:
            return (a - b).pow(2).mean(dim=(1, 2, 3))

        se["vs_teacher"].append(mse(frames["student"], frames["teacher"]))
        se["teacher_short_vs_teacher"].append(mse(frames["teacher_short"], frames["teacher"]))
        se["1step"].append(mse(frames["student"], real))
        se["teacher"].append(mse(frames["teacher"], real))
        se["teacher_short"].append(mse(frames["teacher_short"], real))
        se["copy_last"].append(mse(obs[:, -1].float(), real))
    student.train(was_training)
    return {f"val/psnr_{k}": psnr_of_mse(torch.cat(v).mean().item()) for k, v in se.items()}


def evaluate_world_model(wm, buf: EpisodeBuffer, segments: int = 128, horizon: int = 15, seed: int = 0,
                         batch_size: int = 32, device: str | torch.device = "cpu", actions_ahead: bool = True) -> dict:
    """A world model on held-out episodes (`buf`): the denoising loss on `segments` segments,
    PSNR over `horizon`-step rollouts of as many segments, and reward/end predictions over every
    transition of the episodes, read in consecutive windows of the recipe's reward/end sequence
    length (end = game over, or a life lost when the recipe trains it so). actions_ahead: a
    video model's rollouts see the real actions of its frames in flight (false: each action only
    once taken, as when an agent plays the dream; DIAMOND's denoiser is the same either way)."""
    rt = Runtime(torch.device(device), "fp32", False)
    recipe, n = wm.recipe, wm.num_context
    rng = np.random.default_rng(seed)
    g = torch.Generator(device).manual_seed(seed)
    scores = Scores()

    cfg_1 = replace(recipe.train_wm, autoregressive_steps=0)
    for start in range(0, segments, batch_size):
        scores.add_denoising_loss(wm.denoiser, denoiser_batch(buf, rng, cfg_1, n, rt, min(batch_size, segments - start)),
                                  g, rt)

    try:
        seg = buf.sample(rng, segments, n + horizon, pad_before=0, pad_after=0)
    except ValueError:
        longest = int(buf.lengths.max()) - 1
        raise WmcliError(f"held-out episodes have at most {longest} steps, too few for {n} context frames + "
                         f"a {horizon}-step rollout; pass a smaller horizon") from None
    t0 = time.perf_counter()
    for start in range(0, segments, batch_size):
        obs = to_float(torch.from_numpy(seg.obs[start : start + batch_size]).to(device))
        act = torch.from_numpy(seg.act[start : start + batch_size, : n + horizon - 1]).to(device)
        scores.add_rollouts(wm.denoiser, obs, act, recipe, g, rt, actions_ahead=actions_ahead)
    dream_s = time.perf_counter() - t0

    L = recipe.train_wm.rew_end_seq_len
    for i in range(buf.num_episodes):
        ep = buf.episode(i)
        end = ep.end | ep.life_loss if recipe.train_wm.end_on_life_loss else ep.end
        for s in range(0, len(ep), L):
            e = min(s + L, len(ep))
            frames = to_float(torch.from_numpy(ep.obs[s : e + 1]).to(device))[None]  # (1, T + 1, 3, H, W)
            steps = [torch.from_numpy(x[s:e]).to(device)[None] for x in (ep.act, ep.rew, end)]
            scores.add_rew_end(wm.rew_end, frames[:, :-1], steps[0], frames[:, 1:], steps[1], steps[2],
                               torch.ones_like(steps[2], dtype=torch.bool), rt)
    return {"held_out_episodes": buf.num_episodes, "held_out_frames": buf.num_frames, "segments": segments,
            "horizon": horizon, "seed": seed, **scores.result(),
            "end_counts_life_loss": recipe.train_wm.end_on_life_loss,
            "imagined_frames_per_s": segments * horizon / dream_s}
