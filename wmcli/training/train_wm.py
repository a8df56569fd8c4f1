"""Training the world model: the denoiser and the reward/end model, in one explicit loop.

Each step draws one batch of segments for each model from the held-in episodes, takes one
AdamW step on each, and (every so often) logs, validates on held-out episodes
(wmcli.world.measure) and saves a checkpoint. Held out: a fraction of the store's episodes, or,
with a separate validation store (`wmcli run`'s test episodes, as DIAMOND does), none: training
then reads every episode of the store, the unfinished ones included. Randomness is counter-based: step k of rank r
draws from generators seeded by (seed, r, k), so a resumed run replays exactly what a straight
run would have done. The segments come from RAM, or, for a store larger than the RAM budget,
straight from its files with worker processes reading ahead (train_wm.data; wmcli.data.prefetch):
the same batches either way. On CUDA: autocast (bf16, or fp16 with a grad scaler), fused AdamW, TF32,
channels_last, optional torch.compile, pinned non-blocking host-to-device copies. Under
torchrun: DDP (NCCL on CUDA, gloo on CPU), each rank sampling its own segments, rank 0 alone
writing. A video denoiser (denoiser.kind: video) trains on (history, future window) pairs with
its joint loss, through the stages of train_wm.video (growing windows, a still-to-fast
curriculum; docs/video_model.md); the reward/end model's step is the same for both kinds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from wmcli.base.checkpoint import checkpoint_to_resume, recipe_for, save_checkpoint
from wmcli.base.config import Recipe, TrainWMConfig, VideoStage
from wmcli.base.cores import adjust_threads
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Progress
from wmcli.base.recipe import check_resume_recipe
from wmcli.base.runtime import Runtime, lr_at, make_optimizer, step_generators, unwrap
from wmcli.base.signals import stop_on_sigint
from wmcli.data.buffer import EpisodeBuffer
from wmcli.data.disk_buffer import open_buffer
from wmcli.data.prefetch import Staged
from wmcli.data.store import Store
from wmcli.training.loop import MetricsLog, check_finite, ddp, gradient_step, stop_here
from wmcli.world.batches import (
    DenoiserLoss,
    RewEndLoss,
    VideoLoss,
    denoiser_inputs,
    denoiser_noise,
    denoiser_request,
    rew_end_inputs,
    rew_end_request,
    stillest,
    video_inputs,
    video_noise,
    video_request,
)
from wmcli.world.measure import validate
from wmcli.world.world_model import build_networks

RESUMABLE_KEYS = {"steps", "log_every", "val_every", "checkpoint_every", "data", "ram_budget_gb", "data_workers"}
"""train_wm keys that may change between a run and its resumption (the data path changes no batch)."""


def stage_plan(cfg: TrainWMConfig, window: int) -> list[tuple[range, VideoStage]]:
    """The steps of each stage of a video model's training: train_wm.video.stages one after
    another, the last running on to train_wm.steps (a stage past it never runs); none given: one
    stage of the model's window over every segment."""
    stages = cfg.video.stages or (VideoStage(steps=cfg.steps, window=window),)
    plan, begin = [], 0
    for i, stage in enumerate(stages):
        end = cfg.steps if i == len(stages) - 1 else min(begin + stage.steps, cfg.steps)
        if end > begin:
            plan.append((range(begin, end), stage))
        begin = end
    return plan


def training_recipe(name: str | None, overrides: list[str] = (), out: Path | None = None, resume: bool = False,
                    steps: int | None = None) -> Recipe:
    """The recipe `wmcli train-wm` trains with: `name` (default tiny), or with `resume` and no name
    the recipe stored in `out`; `--set` overrides and `steps` (train_wm.steps) applied."""
    overrides = [*overrides, *([f"train_wm.steps={steps}"] if steps else [])]
    return recipe_for(name, overrides, inherit=((out, "world_model"),) if resume else ())


def train_world_model(
    recipe: Recipe,
    store_path: Path,
    out: Path,
    rt: Runtime,
    resume: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    max_seconds: float | None = None,
    val_store: Path | None = None,
) -> dict:
    """Train the denoiser and reward/end model of `recipe` on a store; checkpoints to `out`.

    The recipe's env section is replaced by the store's protocol. max_seconds: stop (validate,
    save) after the first step past this wall-clock budget. val_store: validate on this store's
    episodes and train on all of `store_path`'s (episodes under way included); while it holds
    no episode yet (or does not exist), validation is skipped and the metrics say so
    (`val/skipped`). None: hold out the store's recorded held-out episodes (`wmcli store split`),
    else `train_wm.val_fraction` of its finished episodes (`Store.split`).
    """
    cfg = recipe.train_wm
    out = Path(out)
    store = Store.open(store_path)
    spec = store.spec
    H, W, C = spec.frame_shape
    if H != recipe.env.frame_size:
        raise WmcliError(
            f"store {store_path} has {H}x{W} frames but the recipe's env.frame_size is {recipe.env.frame_size}; "
            f"pass --set env.frame_size={H} or use a store collected at that size"
        )
    recipe = replace(recipe, env=spec.config)
    ckpt = checkpoint_to_resume(out, "world_model", resume, overwrite)
    if ckpt is not None and "distilled" in ckpt:
        raise WmcliError(f"{out} is a distilled student of {ckpt['distilled']['teacher']}: training it with the diffusion "
                         f"loss would undo its few-step sampling; train the teacher and distil it again (wmcli distill)")
    if ckpt is not None:
        # A checkpoint without optimizer state (an imported one) starts a fine-tuning: only the
        # networks' sections must match; a resumed training must match in everything it depends on.
        sections = ("env", "denoiser", "reward_end", "sampler", "train_wm") if "resume" in ckpt else ("denoiser", "reward_end")
        check_resume_recipe(ckpt["recipe"], recipe.to_dict(), sections, "train_wm", RESUMABLE_KEYS)

    paths = store.episode_paths()
    if not paths and not store.partial_paths():
        raise WmcliError(f"store {store_path} has no episodes; fill it with `wmcli collect --store {store_path}`")
    val_buf, val_skipped = None, None
    if val_store is not None:
        train_buf, data_why = open_buffer(store, store.training_paths(), cfg.data, cfg.ram_budget_gb, skip_bad)
        val_buf, val_skipped = _validation_buffer(Path(val_store), spec, store_path, skip_bad, cfg)
    else:
        train_paths, val_paths = store.split(cfg.val_fraction)  # the recorded split (wmcli store split), else by hash
        train_buf, data_why = open_buffer(store, train_paths + store.partial_paths(), cfg.data, cfg.ram_budget_gb, skip_bad)
        val_buf = open_buffer(store, val_paths, cfg.data, cfg.ram_budget_gb, skip_bad)[0] if val_paths else None

    torch.manual_seed(cfg.seed)
    denoiser, rew_end = build_networks(recipe, spec.num_actions)
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
    if ckpt is not None and "resume" in ckpt:  # an imported model (wmcli import) has no optimizer state yet
        opt_den.load_state_dict(ckpt["resume"]["opt_denoiser"])
        opt_rew.load_state_dict(ckpt["resume"]["opt_rew_end"])
        scaler.load_state_dict(ckpt["resume"]["scaler"])

    video = recipe.denoiser.kind == "video"
    den_loss = ddp(VideoLoss(denoiser, rew_end, cfg.video) if video else DenoiserLoss(denoiser, cfg.autoregressive_steps), rt)
    rew_loss = ddp(RewEndLoss(rew_end), rt)
    if rt.compile:
        den_loss, rew_loss = torch.compile(den_loss), torch.compile(rew_loss)

    metrics_path = out.with_suffix(".metrics.jsonl")
    n = recipe.denoiser.num_context
    B = max(1, cfg.batch_size // rt.world_size)  # per-rank batches
    Br = max(1, cfg.rew_end_batch_size // rt.world_size)
    last_val: dict = {}
    sums = {"losses/denoiser": 0.0, "losses/rew_end": 0.0}
    parts = ("losses/diffusion", "losses/joint_rew_end", "losses/action")  # a video model's joint loss
    if video:
        sums.update(dict.fromkeys(parts, 0.0))
    count, t0, samples = 0, time.perf_counter(), 0
    t_start = t0
    done, interrupted = start, False

    def save(step: int) -> None:
        if not rt.is_main:
            return
        save_checkpoint(out, {
            "kind": "world_model", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": step, "runtime": rt.record(),
            "store": str(store_path), "val_store": str(val_store) if val_store is not None else None,
            "val_metrics": last_val,
            **({"imported": ckpt["imported"]} if ckpt is not None and "imported" in ckpt else {}),  # provenance kept
            "models": {"denoiser": unwrap(denoiser).state_dict(), "rew_end": unwrap(rew_end).state_dict()},
            "resume": {"opt_denoiser": opt_den.state_dict(), "opt_rew_end": opt_rew.state_dict(),
                       "scaler": scaler.state_dict()},
        })

    # Each step's segments, from its own generator (the same one step_generators gives below).
    rew_request = rew_end_request(cfg, Br, cfg.sample_weights)
    if video:
        plan = stage_plan(cfg, recipe.denoiser.video.window)
        stages = [(r, [video_request(n, st.window, B, st.still_fraction, cfg.sample_weights), rew_request]) for r, st in plan]
    else:
        plan, stages = [], [(range(cfg.steps), [denoiser_request(cfg, n, B, cfg.sample_weights), rew_request])]
    with (Staged(train_buf, cfg.seed, rt.rank, stages, cfg.data_workers) as batches,
          MetricsLog(metrics_path, enabled=rt.is_main) as log, stop_on_sigint() as stop):
        for step in range(start, cfg.steps):
            adjust_threads()  # this process's share of the cores, as other wmcli processes come and go
            _, g = step_generators(cfg.seed, rt.rank, step, rt.device)
            den_seg, rew_seg = batches.get(step)
            lr = lr_at(step, cfg)
            for opt in (opt_den, opt_rew):
                for group in opt.param_groups:
                    group["lr"] = lr
            denoiser.train()
            rew_end.train()

            # Denoiser step.
            if video:
                stage = next(st for r, st in plan if step in r)
                batch = video_inputs(stillest(den_seg, n, B), cfg, rt)
                draws = video_noise(denoiser, B, stage.window, (C, H, W), g, rt)
                with rt.autocast():
                    loss_d, terms = den_loss(batch["obs"], batch["act"], batch["mask"], **draws, rew=batch["rew"],
                                             end=batch["end"])
                for k, v in zip(parts, terms.tolist()):
                    sums[k] += v
            else:
                batch = denoiser_inputs(den_seg, rt)
                draws = denoiser_noise(denoiser, B, (C, H, W), g, rt, cfg.autoregressive_steps)
                with rt.autocast():
                    loss_d = den_loss(batch["obs"], batch["act"], batch["mask"], **draws)
            gradient_step(loss_d, opt_den, denoiser, cfg.grad_clip_denoiser, scaler)

            # Reward/end step.
            rb = rew_end_inputs(rew_seg, cfg, rt)
            with rt.autocast():
                loss_r = rew_loss(rb["obs"], rb["act"], rb["next_obs"], rb["rew"], rb["end"], rb["mask"])
            gradient_step(loss_r, opt_rew, rew_end, cfg.grad_clip_rew_end, scaler)
            scaler.update()

            ld, lr_ = loss_d.item(), loss_r.item()
            check_finite({"denoiser": ld, "reward/end": lr_}, step + 1, out, "training",
                         "lower train_wm.lr or use --precision fp32")
            sums["losses/denoiser"] += ld
            sums["losses/rew_end"] += lr_
            count += 1
            samples += B * rt.world_size
            done = step + 1
            interrupted, out_of_time = stop_here(stop, t_start, max_seconds, rt)
            last = done == cfg.steps or out_of_time
            if done % cfg.log_every == 0 or last:
                dt = time.perf_counter() - t0
                m = {"step": done, **{k: v / count for k, v in sums.items()}, "charts/lr": lr,
                     "perf/steps_per_s": count / dt, "perf/samples_per_s": samples / dt,
                     "precision": rt.precision, "data": train_buf.kind}
                if video:
                    m.update({"charts/window": stage.window, "charts/still_fraction": stage.still_fraction})
                if rt.is_main and (done % cfg.val_every == 0 or last):
                    if val_buf is not None:
                        last_val = validate(unwrap(denoiser), unwrap(rew_end), val_buf, recipe, rt)
                        m.update(last_val)
                    elif val_skipped is not None:
                        m["val/skipped"] = val_skipped
                log.write(m, done)
                if on_progress:
                    on_progress(Progress("train-wm", done, cfg.steps, "steps", {
                        "denoiser": m["losses/denoiser"], "rew_end": m["losses/rew_end"],
                        "samples/s": samples / dt}, m, time.perf_counter() - t_start))
                sums = dict.fromkeys(sums, 0.0)
                count, samples, t0 = 0, 0, time.perf_counter()
            if done % cfg.checkpoint_every == 0 or last:
                save(done)
            if out_of_time:
                break
    return {
        "checkpoint": str(out), "metrics": str(metrics_path), "steps": done, "resumed_from": start,
        "interrupted": interrupted,
        "seconds": time.perf_counter() - t_start,
        "train_episodes": train_buf.num_episodes, "val_episodes": val_buf.num_episodes if val_buf else 0,
        "val": last_val, "val_store": str(val_store) if val_store is not None else None, "val_skipped": val_skipped,
        "data": train_buf.kind, "data_why": data_why,
        "device": str(rt.device), "precision": rt.precision, "threads": rt.threads, "world_size": rt.world_size,
        "runtime": rt.describe(),
    }


def _validation_buffer(path: Path, spec, store_path: Path, skip_bad: bool, cfg) -> tuple[EpisodeBuffer | None, str | None]:
    """The episodes of a separate validation store, or None and why validation is skipped."""
    if not Store.exists(path):
        return None, f"no validation episodes yet ({path} does not exist)"
    val = Store.open(path)
    val.spec.check_fits(spec, f"validation store {path}", f"store {store_path}", "pass a validation store of the same game",
                        same_game=True)
    if not val.episode_paths():
        return None, f"no validation episodes yet ({path} is empty)"
    return open_buffer(val, val.episode_paths(), cfg.data, cfg.ram_budget_gb, skip_bad)[0], None
