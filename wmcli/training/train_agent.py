"""Training the agent inside the world model: DIAMOND's actor-critic, in one explicit loop.

Each step dreams a batch of games: B real contexts from the store, the policy's LSTM burned in
on the context frames, then `horizon` steps in which the policy acts and the world model
answers with the next frame, a reward and an end. The loss is REINFORCE with a value baseline
on lambda-returns (wmcli.models.actor_critic); steps after a dreamed end are masked out, and a game
that reaches the horizon is bootstrapped with the value of its last frame. The world model is
frozen. Randomness is counter-based as in train_wm (step k of rank r draws from (seed, r, k)),
so a resumed run replays exactly what a straight run would have done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from wmcli.base.checkpoint import checkpoint_to_resume, recipe_for, save_checkpoint
from wmcli.base.config import Recipe
from wmcli.base.cores import adjust_threads
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Progress
from wmcli.base.recipe import check_resume_recipe
from wmcli.base.runtime import Runtime, lr_at, make_optimizer, step_generators, unwrap
from wmcli.base.signals import stop_on_sigint
from wmcli.data.disk_buffer import open_buffer
from wmcli.data.store import Store
from wmcli.models.actor_critic import ActorCritic, actor_critic_loss
from wmcli.training.loop import MetricsLog, check_finite, ddp, stop_here
from wmcli.world.imagination import WorldModelEnv
from wmcli.world.world_model import load_world_model

RESUMABLE_KEYS = {"steps", "log_every", "checkpoint_every", "data", "ram_budget_gb"}
"""train_agent keys that may change between a run and its resumption."""


class AgentLoss(nn.Module):
    """One batch of dreamed games and the actor-critic loss on them, as one forward (for DDP)."""

    def __init__(self, actor_critic: nn.Module):
        super().__init__()
        self.actor_critic = actor_critic

    def forward(self, wm_env: WorldModelEnv, horizon: int, g: torch.Generator) -> tuple[Tensor, dict]:
        ac = self.actor_critic
        obs, info = wm_env.reset()
        B = obs.shape[0]
        state = unwrap(ac).initial_state(B, obs.device)
        with torch.no_grad():  # burn the policy's LSTM in on the earlier context frames
            for i in range(info["context_obs"].shape[1]):
                _, _, state = ac(info["context_obs"][:, i], state)
        logits, values, acts, rews, ends, masks = [], [], [], [], [], []
        alive = torch.ones(B, dtype=torch.bool, device=obs.device)
        for _ in range(horizon):
            lg, v, state = ac(obs, state)
            a = torch.multinomial(lg.detach().float().softmax(-1), 1, generator=g).squeeze(1)
            obs, rew, end, trunc, _ = wm_env.step(a)
            logits.append(lg)
            values.append(v)
            acts.append(a)
            rews.append(rew)
            ends.append(end)
            masks.append(alive)
            alive = alive & ~end
        _, v_last, _ = ac(obs, state)  # truncated at the horizon: bootstrap from the last frame
        values.append(v_last)
        stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
        rew, end, mask = stack(rews), stack(ends), stack(masks)
        loss, metrics = actor_critic_loss(stack(logits), stack(values), stack(acts), rew, end,
                                          unwrap(ac).cfg, mask=mask)
        metrics["dream/return"] = (rew * mask).sum(1).mean().detach()
        metrics["dream/end_rate"] = (end & mask).any(1).float().mean()
        return loss, metrics


def training_recipe(name: str | None, world_model: Path, overrides: list[str] = (), out: Path | None = None,
                    resume: bool = False, steps: int | None = None) -> Recipe:
    """The recipe `wmcli train-agent` trains with: `name`; else, with `resume`, the recipe stored
    in `out`; else the world model's own (its actor_critic/train_agent sections). `--set`
    overrides and `steps` (train_agent.steps) applied."""
    overrides = [*overrides, *([f"train_agent.steps={steps}"] if steps else [])]
    resumed = ((out, "agent"),) if resume else ()
    return recipe_for(name, overrides, inherit=(*resumed, (world_model, "world_model")))


def train_agent(
    recipe: Recipe,
    world_model_path: Path,
    out: Path,
    rt: Runtime,
    store_path: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    max_seconds: float | None = None,
) -> dict:
    """Train the actor-critic of `recipe` in the world model of `world_model_path`, dreams
    starting from the store's episodes (default: the store the world model was trained on). A
    first Ctrl-C stops after the current step and saves (`interrupted` in the result)."""
    cfg = recipe.train_agent
    out = Path(out)
    wm = load_world_model(world_model_path, rt.device, hint="train-agent trains in a world model: pass the "
                                                             "file `wmcli train-wm -o` wrote")
    spec = wm.spec
    if store_path is None:
        store_path = Path(wm.store) if wm.store else None
        if store_path is None or not Store.exists(store_path):
            raise WmcliError(f"the world model's store ({wm.store}) is not there; pass --store PATH")
    store = Store.open(store_path)
    store.spec.check_fits(spec, f"store {store_path}", f"world model {world_model_path}", "pass the store of its game")
    # The agent plays what the world model dreams: its env and denoiser/sampler/reward sections.
    recipe = replace(recipe, env=wm.recipe.env, denoiser=wm.recipe.denoiser, sampler=wm.recipe.sampler,
                     reward_end=wm.recipe.reward_end, train_wm=wm.recipe.train_wm)
    ckpt = checkpoint_to_resume(out, "agent", resume, overwrite)
    if ckpt is not None:
        sections = ("actor_critic", "sampler", "train_agent") if "resume" in ckpt else ("actor_critic",)  # imported: fine-tuning
        check_resume_recipe(ckpt["recipe"], recipe.to_dict(), sections, "train_agent", RESUMABLE_KEYS)
    # The episodes under way start dreams too; frames in RAM, or read from the files (train_agent.data).
    buf, data_why = open_buffer(store, store.training_paths(), cfg.data, cfg.ram_budget_gb, section="train_agent")
    if buf.num_episodes == 0:
        raise WmcliError(f"store {store_path} has no episodes; fill it with `wmcli collect --store {store_path}`")

    torch.manual_seed(cfg.seed)
    ac = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    start = 0
    if ckpt is not None:
        ac.load_state_dict(ckpt["models"]["actor_critic"])
        start = ckpt["step"]
    ac.to(rt.device)
    opt = make_optimizer(ac, cfg, rt)
    if ckpt is not None and "resume" in ckpt:  # an imported agent (wmcli import) has no optimizer state yet
        opt.load_state_dict(ckpt["resume"]["opt"])
    B = max(1, cfg.batch_size // rt.world_size)
    try:
        contexts = buf.contexts(wm.num_context, cfg.sample_weights)
    except ValueError as e:
        raise WmcliError(f"store {store_path}: {e}") from None
    wm_env = WorldModelEnv(wm, contexts, B, cfg.horizon, recipe.sampler, rt.device, autocast=rt.autocast)
    if rt.compile:
        wm.denoiser.compile()
        wm.rew_end.compile()
    loss_mod = ddp(AgentLoss(ac), rt)

    metrics_path = out.with_suffix(".metrics.jsonl")
    sums: dict[str, float] = {}
    count, t0 = 0, time.perf_counter()
    t_start = t0
    done, interrupted = start, False

    def save(step: int) -> None:
        if rt.is_main:
            save_checkpoint(out, {
                "kind": "agent", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": step, "runtime": rt.record(),
                "world_model": {"path": str(world_model_path), "step": wm.step}, "store": str(store_path),
                **({"imported": ckpt["imported"]} if ckpt is not None and "imported" in ckpt else {}),  # provenance kept
                "models": {"actor_critic": unwrap(ac).state_dict()}, "resume": {"opt": opt.state_dict()},
            })

    with MetricsLog(metrics_path, enabled=rt.is_main) as log, stop_on_sigint() as stop:
        for step in range(start, cfg.steps):
            adjust_threads()  # this process's share of the cores, as other wmcli processes come and go
            rng, g = step_generators(cfg.seed, rt.rank, step, rt.device)
            wm_env.set_generators(rng, g)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            ac.train()
            with rt.autocast():
                loss, metrics = loss_mod(wm_env, cfg.horizon, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(ac.parameters(), cfg.grad_clip)
            opt.step()
            value = loss.item()
            check_finite({"actor-critic": value}, step + 1, out, "agent training", "lower train_agent.lr")
            sums["losses/total"] = sums.get("losses/total", 0.0) + value
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            done = step + 1
            interrupted, out_of_time = stop_here(stop, t_start, max_seconds, rt)
            last = done == cfg.steps or out_of_time
            if done % cfg.log_every == 0 or last:
                dt = time.perf_counter() - t0
                fps = count * B * rt.world_size * cfg.horizon / dt
                m = {"step": done, **{k: v / count for k, v in sums.items()}, "charts/lr": lr_at(step, cfg),
                     "perf/steps_per_s": count / dt, "perf/imagined_frames_per_s": fps,
                     "precision": rt.precision, "data": buf.kind}
                log.write(m, done)
                if on_progress:
                    on_progress(Progress("train-agent", done, cfg.steps, "steps", {
                        "loss": m["losses/total"], "dream return": m["dream/return"],
                        "entropy": m.get("charts/entropy"), "imagined frames/s": fps}, m, time.perf_counter() - t_start))
                sums, count, t0 = {}, 0, time.perf_counter()
            if done % cfg.checkpoint_every == 0 or last:
                save(done)
            if out_of_time:
                break
    seconds = time.perf_counter() - t_start
    return {"checkpoint": str(out), "metrics": str(metrics_path), "steps": done, "resumed_from": start,
            "interrupted": interrupted,
            "seconds": seconds, "imagined_frames": (done - start) * B * rt.world_size * cfg.horizon,
            "imagined_frames_per_s": (done - start) * B * rt.world_size * cfg.horizon / max(seconds, 1e-9),
            "world_model": str(world_model_path), "store": str(store_path), "data": buf.kind, "data_why": data_why,
            "device": str(rt.device), "precision": rt.precision, "threads": rt.threads, "world_size": rt.world_size,
            "runtime": rt.describe()}

