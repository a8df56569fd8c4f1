"""Distilling a trained world model into a student that dreams a frame in one (or two) network
evaluations, in one explicit loop.

The teacher is a world model as `train-wm` wrote it: an EDM denoiser sampled with its recipe's
deterministic sampler (DIAMOND's: 3 Euler steps). Its sampler is a fixed function from a start
noise and a context (frames and actions) to a frame. The student is a copy of the teacher's
denoiser, trained to compute that function in fewer steps: from the same start noise and
context, the frame of the student's sampler (1 step: D(noise; sigma_max)) is pulled toward the
teacher's frame by mean squared error (knowledge distillation of a deterministic sampler,
Luhman & Luhman, 2021; docs/distill.md says why this method, for this teacher). The student's
quantisation to 8-bit levels is straight-through, so it is trained on the frames it will dream.

The result is a normal world-model checkpoint: the student's denoiser, the teacher's reward/end
model, and the teacher's recipe with the student's sampler, so every command that dreams uses
it as it is; `distilled` records the teacher (path, SHA-256, step, sampler). Same guarantees as
train_wm: counter-based randomness (a resumed run replays a straight one), metrics, validation
against the teacher on held-out episodes, atomic checkpoints, a first Ctrl-C or a time budget
saves and stops, DDP under torchrun (each rank its own windows, rank 0 writing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from wmcli.base.checkpoint import checkpoint_to_resume, file_sha256, load_checkpoint, save_checkpoint
from wmcli.base.config import ConfigValueError, DistillConfig, Recipe
from wmcli.base.cores import adjust_threads
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Progress
from wmcli.base.recipe import check_resume_recipe, load_recipe, recipe_from_dict
from wmcli.base.runtime import Runtime, lr_at, make_optimizer, step_generators, unwrap
from wmcli.base.signals import stop_on_sigint
from wmcli.data.disk_buffer import open_buffer
from wmcli.data.prefetch import batches_for
from wmcli.data.store import Store
from wmcli.models.denoiser import Denoiser
from wmcli.models.sampler import sample_next_obs
from wmcli.training.loop import MetricsLog, check_finite, ddp, gradient_step, stop_here
from wmcli.world.batches import DistillLoss, context_request, denoiser_inputs, student_sampler
from wmcli.world.measure import validate_distillation
from wmcli.world.world_model import world_model_from_checkpoint

METHOD = "sampler distillation (Luhman & Luhman, 2021): the student's few-step sample regressed onto the teacher's"
RESUMABLE_KEYS = {"steps", "log_every", "val_every", "checkpoint_every", "data", "ram_budget_gb", "data_workers"}
"""distill keys that may change between a run and its resumption."""


def distill_config(teacher: dict, name: str | None = None, overrides: list[str] = (), steps: int | None = None,
                   student: dict | None = None) -> DistillConfig:
    """The `distill` section a distillation runs with: a named recipe's (`name`), else the student's
    being resumed, else the teacher's; then `--set distill.KEY=VALUE` overrides and `steps`. The
    other sections are the teacher's and cannot be changed: the student is its copy."""
    bad = [o for o in overrides if not o.strip().startswith("distill.")]
    if bad:
        raise WmcliError(f"--set {bad[0]}: distillation takes only distill.* settings (the networks and their "
                         f"sampler are the teacher's); e.g. --set distill.student_steps=2")
    base = dict(teacher["recipe"])
    if name is not None:
        base["distill"] = load_recipe(name).to_dict()["distill"]
    elif student is not None:
        base["distill"] = student["recipe"].get("distill", {})
    overrides = [*overrides, *([f"distill.steps={steps}"] if steps else [])]
    return recipe_from_dict(base, overrides).distill


def distill_world_model(
    teacher_path: Path,
    out: Path,
    rt: Runtime,
    store_path: Path | None = None,
    recipe: str | None = None,
    overrides: list[str] = (),
    steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    max_seconds: float | None = None,
) -> dict:
    """Distil the world model at `teacher_path` into a student written to `out`.

    store_path: the episodes whose contexts the student learns on (default: the store the
    teacher was trained on); recipe/overrides/steps: where the `distill` section comes from
    (distill_config). resume: continue the student in `out` (its teacher may have trained on
    since: `wmcli run` distils each epoch's world model into the same student)."""
    teacher_path, out = Path(teacher_path), Path(out)
    if out.resolve() == teacher_path.resolve():
        raise WmcliError(f"-o {out} is the teacher itself; write the student to another file (e.g. -o wm1.pt)")
    t_ckpt = load_checkpoint(teacher_path, "world_model", "distil a world model (the file `wmcli train-wm` wrote)")
    if "distilled" in t_ckpt:
        d = t_ckpt["distilled"]
        raise WmcliError(f"{teacher_path} is already a student ({d['student_steps']}-step, distilled from "
                         f"{d['teacher']}); distil its teacher instead")
    ckpt = checkpoint_to_resume(out, "world_model", resume, overwrite)
    if ckpt is not None and "distilled" not in ckpt:
        raise WmcliError(f"{out} is a world model but not a distilled student; --resume continues a student "
                         f"(`wmcli distill -o` wrote it): pick another -o")
    cfg = distill_config(t_ckpt, recipe, list(overrides), steps, ckpt)
    teacher = world_model_from_checkpoint(t_ckpt, rt.device)
    t_sampler = teacher.recipe.sampler
    if teacher.denoiser.kind == "video":
        raise WmcliError(f"{teacher_path} is a video world model (denoiser.kind: video); distillation takes DIAMOND's "
                         f"next-frame denoiser; sample the video model faster with sampler.evals_per_frame instead "
                         f"(docs/video_model.md)")
    if teacher.recipe.denoiser.formulation != "edm":
        raise WmcliError(f"{teacher_path} is a DDPM world model; distillation needs an EDM one (denoiser.formulation: edm), "
                         f"whose one-step sample D(x; sigma_max) is the student")
    if t_sampler.num_steps <= cfg.student_steps:
        raise WmcliError(f"the teacher samples in {t_sampler.num_steps} step(s) already; a student takes fewer "
                         f"(distill.student_steps is {cfg.student_steps})")
    try:
        s_sampler = student_sampler(t_sampler, cfg)
    except ConfigValueError:
        raise WmcliError(f"distill.sigma_mid={cfg.sigma_mid} must be below the teacher's sigma_max "
                         f"({t_sampler.sigma_max})") from None
    student_recipe: Recipe = replace(teacher.recipe, sampler=s_sampler, distill=cfg)
    if ckpt is not None:
        check_resume_recipe(ckpt["recipe"], student_recipe.to_dict(), ("env", "denoiser", "reward_end", "sampler", "distill"),
                            "distill", RESUMABLE_KEYS)

    if store_path is None:
        if not t_ckpt.get("store"):
            raise WmcliError(f"{teacher_path} records no store; pass --store with episodes of {teacher.spec.name}")
        store_path = Path(t_ckpt["store"])
        if not Store.exists(store_path):
            raise WmcliError(f"the teacher's store {store_path} is not there; pass --store with episodes of {teacher.spec.name}")
    store = Store.open(store_path)
    spec = teacher.spec
    store.spec.check_fits(spec, f"store {store_path}", f"the world model {teacher_path}",
                          "distil on a store of the teacher's game", same_game=True)
    paths = store.episode_paths()
    if not paths and not store.partial_paths():
        raise WmcliError(f"store {store_path} has no episodes; fill it with `wmcli collect --store {store_path}`")
    train_paths, val_paths = store.split(cfg.val_fraction)  # the recorded split (wmcli store split), else by hash
    train_buf, data_why = open_buffer(store, train_paths + store.partial_paths(), cfg.data, cfg.ram_budget_gb, skip_bad,
                                      "distill")
    val_buf = open_buffer(store, val_paths, cfg.data, cfg.ram_budget_gb, skip_bad, "distill")[0] if val_paths else None

    t_den = teacher.denoiser
    t_den.requires_grad_(False)
    student = Denoiser(teacher.recipe.denoiser, spec.num_actions)
    student.load_state_dict(ckpt["models"]["denoiser"] if ckpt is not None else t_ckpt["models"]["denoiser"])
    start = ckpt["step"] if ckpt is not None else 0
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    t_den.to(memory_format=memory)
    student.to(rt.device, memory_format=memory)
    opt = make_optimizer(student, cfg, rt)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    if ckpt is not None:
        opt.load_state_dict(ckpt["resume"]["opt_denoiser"])
        scaler.load_state_dict(ckpt["resume"]["scaler"])
    loss_fn = ddp(DistillLoss(student, s_sampler), rt)
    if rt.compile:
        loss_fn = torch.compile(loss_fn)

    teacher_record = {"method": METHOD, "teacher": str(teacher_path), "teacher_sha256": file_sha256(teacher_path),
                      "teacher_step": t_ckpt["step"], "teacher_sampler": asdict(t_sampler),
                      "student_steps": cfg.student_steps}
    metrics_path = out.with_suffix(".metrics.jsonl")
    n = teacher.num_context
    H, W, C = spec.frame_shape
    B = max(1, cfg.batch_size // rt.world_size)
    last_val: dict = {}
    loss_sum, count, samples = 0.0, 0, 0
    t0 = t_start = time.perf_counter()
    done, interrupted = start, False

    def save(step: int) -> None:
        if not rt.is_main:
            return
        save_checkpoint(out, {
            "kind": "world_model", "recipe": student_recipe.to_dict(), "env": spec.to_dict(), "step": step,
            "runtime": rt.record(), "store": str(store_path), "val_store": None, "val_metrics": last_val,
            "distilled": {**teacher_record, "steps": step},
            **({"imported": t_ckpt["imported"]} if "imported" in t_ckpt else {}),
            "models": {"denoiser": unwrap(student).state_dict(), "rew_end": t_ckpt["models"]["rew_end"]},
            "resume": {"opt_denoiser": opt.state_dict(), "scaler": scaler.state_dict()},
        })

    requests = [context_request(n, B, cfg.sample_weights)]
    with (batches_for(train_buf, cfg.seed, rt.rank, requests, range(start, cfg.steps), cfg.data_workers) as batches,
          MetricsLog(metrics_path, enabled=rt.is_main) as log, stop_on_sigint() as stop):
        for step in range(start, cfg.steps):
            adjust_threads()
            _, g = step_generators(cfg.seed, rt.rank, step, rt.device)
            (seg,) = batches.get(step)
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            student.train()
            b = denoiser_inputs(seg, rt)
            obs, act = b["obs"][:, :n], b["act"][:, :n]
            noise = torch.randn((B, C, H, W), generator=g, device=rt.device)
            with torch.no_grad(), rt.autocast():
                target = sample_next_obs(t_den, obs, act, t_sampler, g, noise=noise)
            with rt.autocast():
                loss = loss_fn(obs, act, noise, target)
            gradient_step(loss, opt, student, cfg.grad_clip, scaler)
            scaler.update()

            value = loss.item()
            check_finite({"distillation": value}, step + 1, out, "distillation", "lower distill.lr or use --precision fp32")
            loss_sum += value
            count += 1
            samples += B * rt.world_size
            done = step + 1
            interrupted, out_of_time = stop_here(stop, t_start, max_seconds, rt)
            last = done == cfg.steps or out_of_time
            if done % cfg.log_every == 0 or last:
                dt = time.perf_counter() - t0
                m = {"step": done, "losses/distill": loss_sum / count, "charts/lr": lr, "perf/steps_per_s": count / dt,
                     "perf/samples_per_s": samples / dt, "precision": rt.precision, "data": train_buf.kind}
                if rt.is_main and val_buf is not None and (done % cfg.val_every == 0 or last):
                    last_val = validate_distillation(unwrap(student), t_den, s_sampler, t_sampler, val_buf, cfg, rt)
                    m.update(last_val)
                log.write(m, done)
                if on_progress:
                    on_progress(Progress("distill", done, cfg.steps, "steps", {
                        "loss": m["losses/distill"], "samples/s": samples / dt}, m, time.perf_counter() - t_start))
                loss_sum, count, samples, t0 = 0.0, 0, 0, time.perf_counter()
            if done % cfg.checkpoint_every == 0 or last:
                save(done)
            if out_of_time:
                break
    return {
        "checkpoint": str(out), "metrics": str(metrics_path), "teacher": str(teacher_path), "steps": done,
        "resumed_from": start, "interrupted": interrupted, "seconds": time.perf_counter() - t_start,
        "student_steps": cfg.student_steps, "teacher_steps": t_sampler.num_steps, "val": last_val,
        "train_episodes": train_buf.num_episodes, "val_episodes": val_buf.num_episodes if val_buf else 0,
        "data": train_buf.kind, "data_why": data_why, "device": str(rt.device), "precision": rt.precision,
        "threads": rt.threads, "world_size": rt.world_size, "runtime": rt.describe(),
    }
