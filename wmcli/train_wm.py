"""Training the world model: the denoiser and the reward/end model, in one explicit loop.

Each step draws one batch of segments for each model from the held-in episodes, takes one
AdamW step on each, and (every so often) logs, validates on held-out episodes and saves a
checkpoint. Randomness is counter-based: step k of rank r draws from generators seeded by
(seed, r, k), so a resumed run replays exactly what a straight run would have done.
On CUDA: autocast (bf16, or fp16 with a grad scaler), fused AdamW, TF32, channels_last,
optional torch.compile, pinned non-blocking host-to-device copies. Under torchrun: DDP
(NCCL on CUDA, gloo on CPU), each rank sampling its own segments, rank 0 alone writing.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from wmcli.errors import WmcliError
from wmcli.runtime import Runtime, agree, lr_at, make_optimizer, step_generators, to_device, unwrap

if TYPE_CHECKING:
    from wmcli.recipe import Recipe


@dataclass(frozen=True)
class TrainWMConfig:
    """The `train_wm` section of a recipe."""

    steps: int = 10_000
    """Gradient steps, each one for the denoiser and one for the reward/end model (DIAMOND's first epoch: 10,000)."""
    batch_size: int = 32
    """Segments per denoiser batch (DIAMOND: 32)."""
    lr: float = 1e-4
    """AdamW learning rate after warm-up (DIAMOND: 1e-4)."""
    adam_eps: float = 1e-8
    """AdamW epsilon (DIAMOND: 1e-8)."""
    weight_decay: float = 1e-2
    """AdamW weight decay, on Linear/Conv/LSTM weights only (DIAMOND: 1e-2)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up (DIAMOND: 100)."""
    grad_clip_denoiser: float = 1.0
    """Gradient-norm clip for the denoiser (DIAMOND: 1)."""
    grad_clip_rew_end: float = 100.0
    """Gradient-norm clip for the reward/end model (DIAMOND: 100)."""
    autoregressive_steps: int = 1
    """Extra targets predicted from the model's own detached estimate of the previous one (DIAMOND: 1)."""
    rew_end_batch_size: int = 32
    """Sequences per reward/end batch (DIAMOND: 32)."""
    rew_end_seq_len: int = 19
    """Steps per reward/end sequence: burn-in + imagination horizon (DIAMOND: 4 + 15)."""
    sample_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7)
    """Recency weighting of training segments (denoiser and reward/end): the episodes, oldest first,
    in len(weights) chunks of equal count, chunk i drawn with probability weights[i] (DIAMOND:
    [0.1, 0.1, 0.1, 0.7]); null: uniform over all segments."""
    end_on_life_loss: bool = True
    """Train the end head with a life loss counted as an end (DIAMOND: true)."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation, chosen by a hash of their file names."""
    val_batches: int = 4
    """Batches per validation."""
    log_every: int = 50
    """Steps between metric lines."""
    val_every: int = 500
    """Steps between validations (and at the end)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (and at the end)."""
    channels_last: bool = True
    """Use channels_last memory format for the convolutions (faster on CUDA and most CPUs)."""
    seed: int = 0
    """Seed of the model initialisation and of every batch and noise draw."""

    def __post_init__(self):
        from wmcli.buffer import check_sample_weights

        check_sample_weights(self.sample_weights, "train_wm.sample_weights")


# ---- the two losses as modules (one forward per backward, as DDP wants) -------------------------


class DenoiserLoss(nn.Module):
    """The denoiser's training loss on one batch of segments, with DIAMOND's autoregressive step."""

    def __init__(self, denoiser, autoregressive_steps: int):
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
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, obs, act, next_obs, rew, end, mask):
        loss, _ = self.model.loss(obs, act, next_obs, rew, end, mask)
        return loss


# ---- data --------------------------------------------------------------------------------------


def split_episodes(paths: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Held-in and held-out episodes, by a hash of each file name: stable as the store grows.
    A store of 2 or more episodes always holds one out (its newest) when the hash picked none,
    and a store of 1 trains on it and holds none out."""
    if len(paths) < 2:
        return list(paths), []
    val = [p for p in paths if zlib.crc32(p.name.encode()) % 10_000 < val_fraction * 10_000]
    if (val_fraction > 0 and not val) or len(val) == len(paths):
        val = [paths[-1]]
    held = set(val)
    return [p for p in paths if p not in held], val


def denoiser_batch(buf, rng, cfg: TrainWMConfig, n: int, rt: Runtime, batch_size: int, weights=None) -> dict:
    """Segments of n context frames + 1 + autoregressive targets; the first target is always real.
    weights: EpisodeBuffer.sample's chunk weights (training), or None (uniform: validation)."""
    from wmcli.frames import to_float

    ar = cfg.autoregressive_steps
    seg = buf.sample(rng, batch_size, n + 1 + ar, pad_before=n - 1, pad_after=ar, weights=weights)
    return {"obs": to_float(to_device(seg.obs, rt)), "act": to_device(seg.act, rt), "mask": to_device(seg.mask, rt)}


def rew_end_batch(buf, rng, cfg: TrainWMConfig, rt: Runtime, batch_size: int, weights=None) -> dict:
    """Sequences of rew_end_seq_len transitions (frame t, action, frame t+1), which may run past the end.
    weights as in denoiser_batch."""
    from wmcli.frames import to_float

    L = cfg.rew_end_seq_len
    seg = buf.sample(rng, batch_size, L + 1, pad_before=0, pad_after=L - 1, weights=weights)
    frames = to_float(to_device(seg.obs, rt))
    end = seg.end | seg.life_loss if cfg.end_on_life_loss else seg.end
    return {
        "obs": frames[:, :-1], "next_obs": frames[:, 1:], "act": to_device(seg.act[:, :-1], rt),
        "rew": to_device(seg.rew[:, :-1], rt), "end": to_device(end[:, :-1], rt),
        "mask": to_device(seg.mask[:, 1:], rt),  # a transition is real when the frame after it is
    }


def denoiser_noise(denoiser, batch_size: int, shape, g: torch.Generator, rt: Runtime, ar: int) -> dict:
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


# ---- the loop ----------------------------------------------------------------------------------


def build_models(recipe: Recipe, num_actions: int):
    from wmcli.denoiser import Denoiser
    from wmcli.reward_end import RewEndModel

    torch.manual_seed(recipe.train_wm.seed)
    denoiser = Denoiser(recipe.denoiser, num_actions)
    rew_end = RewEndModel(recipe.reward_end, num_actions, recipe.env.frame_size)
    return denoiser, rew_end


# Recipe sections that may change between a run and its resumption.
RESUMABLE_KEYS = {"steps", "log_every", "val_every", "checkpoint_every"}


@dataclass
class Report:
    step: int
    total: int
    metrics: dict
    samples_per_s: float


def train_world_model(
    recipe: Recipe,
    store_path: Path,
    out: Path,
    rt: Runtime,
    resume: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    on_progress: Callable[[Report], None] | None = None,
    max_seconds: float | None = None,
) -> dict:
    """Train the denoiser and reward/end model of `recipe` on a store; checkpoints to `out`.

    max_seconds: stop (validate, save) after the first step past this wall-clock budget.
    """
    from wmcli.buffer import EpisodeBuffer
    from wmcli.checkpoint import checkpoint_to_resume, save_checkpoint
    from wmcli.env import EnvConfig
    from wmcli.recipe import check_resume_recipe
    from wmcli.store import Store

    cfg = recipe.train_wm
    store = Store.open(store_path)
    env = store.env
    H, W, C = env["frame_shape"]
    if H != recipe.env.frame_size:
        raise WmcliError(
            f"store {store_path} has {H}x{W} frames but the recipe's env.frame_size is {recipe.env.frame_size}; "
            f"pass --set env.frame_size={H} or use a store collected at that size"
        )
    protocol = {k: v for k, v in env["protocol"].items() if k in EnvConfig.__dataclass_fields__}
    recipe = replace(recipe, env=EnvConfig(game=env["name"], **protocol))
    ckpt = checkpoint_to_resume(out, "world_model", resume, overwrite)
    if ckpt is not None:
        check_resume_recipe(ckpt["recipe"], recipe.to_dict(), ("env", "denoiser", "reward_end", "sampler", "train_wm"),
                            "train_wm", RESUMABLE_KEYS)

    paths = store.episode_paths()
    if not paths:
        raise WmcliError(f"store {store_path} has no episodes; fill it with `wmcli collect --store {store_path}`")
    train_paths, val_paths = split_episodes(paths, cfg.val_fraction)
    train_buf = EpisodeBuffer(store, skip_bad=skip_bad, episodes=train_paths)
    val_buf = EpisodeBuffer(store, skip_bad=skip_bad, episodes=val_paths) if val_paths else None

    denoiser, rew_end = build_models(recipe, env["num_actions"])
    start = 0
    if ckpt is not None:
        denoiser.load_state_dict(ckpt["models"]["denoiser"])
        rew_end.load_state_dict(ckpt["models"]["rew_end"])
        start = ckpt["step"]
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    denoiser.to(rt.device, memory_format=memory)
    rew_end.to(rt.device, memory_format=memory)
    opt_den, opt_rew = make_optimizer(denoiser, cfg, rt), make_optimizer(rew_end, cfg, rt)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    if ckpt is not None:
        opt_den.load_state_dict(ckpt["resume"]["opt_denoiser"])
        opt_rew.load_state_dict(ckpt["resume"]["opt_rew_end"])
        scaler.load_state_dict(ckpt["resume"]["scaler"])

    den_loss = DenoiserLoss(denoiser, cfg.autoregressive_steps)
    rew_loss = RewEndLoss(rew_end)
    if rt.world_size > 1:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        den_loss = nn.parallel.DistributedDataParallel(den_loss, device_ids=ids)
        rew_loss = nn.parallel.DistributedDataParallel(rew_loss, device_ids=ids)
    if rt.compile:
        den_loss, rew_loss = torch.compile(den_loss), torch.compile(rew_loss)

    metrics_path = out.with_suffix(".metrics.jsonl")
    log = open(metrics_path, "a") if rt.is_main else None  # noqa: SIM115
    n = recipe.denoiser.num_context
    B = max(1, cfg.batch_size // rt.world_size)  # per-rank batches
    Br = max(1, cfg.rew_end_batch_size // rt.world_size)
    last_val: dict = {}
    sums = {"losses/denoiser": 0.0, "losses/rew_end": 0.0}
    count, t0, samples = 0, time.perf_counter(), 0
    t_start = t0
    done = start

    def save(step: int) -> None:
        if not rt.is_main:
            return
        save_checkpoint(out, {
            "kind": "world_model", "recipe": recipe.to_dict(), "env": env, "step": step,
            "store": str(store_path), "val_metrics": last_val,
            "models": {"denoiser": unwrap(denoiser).state_dict(), "rew_end": unwrap(rew_end).state_dict()},
            "resume": {"opt_denoiser": opt_den.state_dict(), "opt_rew_end": opt_rew.state_dict(),
                       "scaler": scaler.state_dict()},
        })

    try:
        for step in range(start, cfg.steps):
            rng, g = step_generators(cfg.seed, rt.rank, step, rt.device)
            lr = lr_at(step, cfg)
            for opt in (opt_den, opt_rew):
                for group in opt.param_groups:
                    group["lr"] = lr
            denoiser.train()
            rew_end.train()

            # Denoiser step.
            batch = denoiser_batch(train_buf, rng, cfg, n, rt, B, cfg.sample_weights)
            draws = denoiser_noise(denoiser, B, (C, H, W), g, rt, cfg.autoregressive_steps)
            with rt.autocast():
                loss_d = den_loss(batch["obs"], batch["act"], batch["mask"], **draws)
            opt_den.zero_grad(set_to_none=True)
            scaler.scale(loss_d).backward()
            scaler.unscale_(opt_den)
            nn.utils.clip_grad_norm_(denoiser.parameters(), cfg.grad_clip_denoiser)
            scaler.step(opt_den)

            # Reward/end step.
            rb = rew_end_batch(train_buf, rng, cfg, rt, Br, cfg.sample_weights)
            with rt.autocast():
                loss_r = rew_loss(rb["obs"], rb["act"], rb["next_obs"], rb["rew"], rb["end"], rb["mask"])
            opt_rew.zero_grad(set_to_none=True)
            scaler.scale(loss_r).backward()
            scaler.unscale_(opt_rew)
            nn.utils.clip_grad_norm_(rew_end.parameters(), cfg.grad_clip_rew_end)
            scaler.step(opt_rew)
            scaler.update()

            ld, lr_ = loss_d.item(), loss_r.item()
            if not (math.isfinite(ld) and math.isfinite(lr_)):
                kept = f"the last good checkpoint {out} is kept" if out.exists() else "no checkpoint was written"
                raise WmcliError(
                    f"training diverged at step {step + 1} (denoiser loss {ld}, reward/end loss {lr_}); "
                    f"{kept}; lower train_wm.lr or use --precision fp32"
                )
            sums["losses/denoiser"] += ld
            sums["losses/rew_end"] += lr_
            count += 1
            samples += B * rt.world_size
            done = step + 1
            out_of_time = max_seconds is not None and agree(time.perf_counter() - t_start > max_seconds, rt)
            last = done == cfg.steps or out_of_time
            if done % cfg.log_every == 0 or last:
                dt = time.perf_counter() - t0
                m = {"step": done, **{k: v / count for k, v in sums.items()}, "charts/lr": lr,
                     "perf/steps_per_s": count / dt, "perf/samples_per_s": samples / dt}
                if val_buf is not None and rt.is_main and (done % cfg.val_every == 0 or last):
                    last_val = validate(denoiser, rew_end, val_buf, recipe, rt)
                    m.update(last_val)
                if log is not None:
                    log.write(json.dumps(m) + "\n")
                    log.flush()
                if on_progress:
                    on_progress(Report(done, cfg.steps, m, samples / dt))
                sums = dict.fromkeys(sums, 0.0)
                count, samples, t0 = 0, 0, time.perf_counter()
            if done % cfg.checkpoint_every == 0 or last:
                save(done)
            if out_of_time:
                break
    finally:
        if log is not None:
            log.close()
    return {
        "checkpoint": str(out), "metrics": str(metrics_path), "steps": done, "resumed_from": start,
        "seconds": time.perf_counter() - t_start,
        "train_episodes": train_buf.num_episodes, "val_episodes": val_buf.num_episodes if val_buf else 0,
        "val": last_val, "device": str(rt.device), "precision": rt.precision, "world_size": rt.world_size,
    }


@torch.no_grad()
def validate(denoiser, rew_end, buf, recipe: Recipe, rt: Runtime) -> dict:
    """Held-out losses, reward/end precision-recall-F1, and 1-step PSNR against copying the last frame.

    Draws are seeded by the recipe seed alone, so every validation sees the same segments and noise.
    """
    from wmcli.metrics import psnr_of_mse
    from wmcli.reward_end import precision_recall_f1, rew_end_loss
    from wmcli.sampler import sample_next_obs

    cfg = replace(recipe.train_wm, autoregressive_steps=0)
    den, rew = unwrap(denoiser), unwrap(rew_end)
    den.eval()
    rew.eval()
    n = recipe.denoiser.num_context
    loss_d, loss_r, se_model, se_copy = [], [], [], []
    rew_pred, rew_true, end_pred, end_true = [], [], [], []
    for i in range(recipe.train_wm.val_batches):
        rng, g = step_generators(recipe.train_wm.seed, 10_000 + i, 0, rt.device)
        batch = denoiser_batch(buf, rng, cfg, n, rt, recipe.train_wm.batch_size)
        obs, act, mask = batch["obs"], batch["act"], batch["mask"][:, n]
        B, _, C, H, W = obs.shape
        draws = denoiser_noise(den, B, (C, H, W), g, rt, 0)
        with rt.autocast():
            loss_d.append(DenoiserLoss(den, 0)(obs, act, batch["mask"], **draws).item())
            pred = sample_next_obs(den, obs[:, :n], act[:, :n], recipe.sampler, g).float()
        target = obs[:, n]
        se_model.append((pred[mask] - target[mask]).pow(2).flatten(1).mean(1))
        se_copy.append((obs[:, n - 1][mask] - target[mask]).pow(2).flatten(1).mean(1))
        rb = rew_end_batch(buf, rng, recipe.train_wm, rt, recipe.train_wm.rew_end_batch_size)
        with rt.autocast():
            logits_rew, logits_end, _ = rew(rb["obs"], rb["act"], rb["next_obs"])
            lr_, _ = rew_end_loss(logits_rew, logits_end, rb["rew"], rb["end"], rb["mask"])
        loss_r.append(lr_.item())
        m = rb["mask"]
        rew_pred.append(logits_rew.argmax(-1)[m] != 1)
        rew_true.append(rb["rew"][m] != 0)
        end_pred.append(logits_end.argmax(-1)[m] == 1)
        end_true.append(rb["end"][m])
    r = precision_recall_f1(torch.cat(rew_pred), torch.cat(rew_true))
    e = precision_recall_f1(torch.cat(end_pred), torch.cat(end_true))
    return {
        "val/loss_denoiser": float(np.mean(loss_d)), "val/loss_rew_end": float(np.mean(loss_r)),
        # PSNR of the MSE pooled over all held-out targets (docs/metrics.md).
        "val/psnr_1step": psnr_of_mse(torch.cat(se_model).mean().item()),
        "val/psnr_copy_last": psnr_of_mse(torch.cat(se_copy).mean().item()),
        "val/reward_f1": r["f1"], "val/reward_precision": r["precision"], "val/reward_recall": r["recall"],
        "val/end_f1": e["f1"], "val/end_precision": e["precision"], "val/end_recall": e["recall"],
    }
