"""Dreams to watch: a world model imagines frames from a real start, one frame at a time.

A dream starts from a `Context` of n real frames (n = the denoiser's num_context) and the n - 1
actions taken between them: a fresh reset of the checkpoint's own game played n - 1 steps, or a
segment of a recorded episode. Each next frame is sampled from the last n frames and actions
(real ones first, then the dream's own) by the recipe's sampler, or another one; each action is
picked at the newest frame by a policy (random, or an agent whose LSTM is first burned in on
the context frames) or read from a fixed list. `dream` hands every frame to a callback as soon
as it exists, so a y4m stream shows it at once. `--compare` keeps the real continuation of a
store segment to set beside the dream; `keep_denoising` keeps every sampler step's prediction
of the clean frame. `imagine` is `wmcli imagine`: it builds all that from its options and
writes the frames to a file or a stream.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from wmcli.base.atomic import atomic_path, check_writable
from wmcli.base.config import SAMPLERS, ConfigValueError, SamplerConfig
from wmcli.base.errors import WmcliError
from wmcli.base.frames import to_float, to_uint8
from wmcli.base.metrics import psnr_of_mse
from wmcli.base.progress import Progress
from wmcli.base.runtime import make_runtime
from wmcli.base.seeds import draw_seed
from wmcli.data.env import make_env
from wmcli.data.policy import Policy, RandomPolicy
from wmcli.data.spec import EnvSpec
from wmcli.data.store import Store
from wmcli.models.sampler import check_compatible
from wmcli.models.video_sampler import timing
from wmcli.outputs.video import Y4MWriter, default_scale, grid_of, side_by_side, upscale, write_frames, write_grid
from wmcli.world.agent import AgentPolicy, load_agent
from wmcli.world.world_model import WorldModel, dream_frames, load_world_model

DEFAULT_HORIZON = 25  # imagined frames when neither --horizon nor --actions says how many
OUTPUT_SUFFIXES = (".mp4", ".gif", ".png", ".npz")


@dataclass(frozen=True)
class ImagineConfig:
    """The options of `wmcli imagine` (the CLI fills this; every field is one option)."""

    horizon: int | None = None
    """Imagined frames per rollout (--horizon); None: as many as --actions gives, else 25."""
    denoising_steps: int | None = None
    """Sampler steps per imagined frame (--steps, alias --denoising-steps); None: the recipe's sampler.num_steps."""
    sampler: str | None = None
    """euler, heun (EDM models), ddim, ddpm (DDPM models); None: the recipe's."""
    video_schedule: str | None = None
    """A video world model's schedule (--video-schedule): joint or staggered; None: the recipe's."""
    evals_per_frame: float | None = None
    """A video world model's staggered schedule (--evals-per-frame): 1, 2, 3 or 0.5 ...; None: the recipe's."""
    seed: int | None = None
    """Seeds the sampler's noise, the policy and the game resets (rollout i resets with seed + i);
    None: drawn, and recorded in the result."""
    batch: int = 1
    """Rollouts dreamed at once; one video shows them in a grid, or -o with {i} writes one file each."""
    agent: Path | None = None
    """An agent checkpoint that picks the actions (its LSTM burned in on the context frames)."""
    policy: str = "random"
    """Who picks the actions: "random", or an agent checkpoint (the same as `agent`)."""
    actions: str | None = None
    """Fixed actions for the imagined steps: "1,0,3,..." or a file of integers."""
    store: Path | None = None
    """Start from this store's recorded frames instead of a fresh reset of the game."""
    episode: int = 0
    """With store: the episode (0 = oldest; negative counts from the newest)."""
    start: int = 0
    """With store: the first context frame's index in the episode."""
    compare: bool = False
    """With store: the real frames that followed, beside the dream, under the real actions."""
    scale: int | None = None
    """Nearest-neighbour upscaling of the written frames (not of .npz arrays); None: frames shown at
    about 256 pixels (4x for 64x64 Atari frames, 26x for MinAtar's 10x10)."""
    fps: float = 15.0
    """Frames per second of .mp4, .gif and y4m (15: real time at frame skip 4)."""
    show_denoising: Path | None = None
    """A .png of the sampler's predictions of the clean frame, step by step (rollout 0)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    threads: int | None = None
    """CPU threads for torch (None: WMCLI_THREADS, else one per core)."""


@dataclass
class Context:
    """Where a dream starts, for B rollouts."""

    obs: np.ndarray  # (B, n, H, W, 3) uint8: real frames
    act: np.ndarray  # (B, n - 1) int64: the actions taken between them
    source: dict  # {"kind": "game", ...} or {"kind": "store", ...}
    real_obs: np.ndarray | None = None  # (B, T, H, W, 3): the real frames that followed (for compare)
    real_act: np.ndarray | None = None  # (B, T): the actions taken at the last context frame and after


@dataclass
class Dream:
    frames: np.ndarray  # (B, T, H, W, 3) uint8: the imagined frames
    act: np.ndarray  # (B, T) int64: act[:, t] was taken at the frame before frames[:, t]
    seconds: float  # time spent dreaming (sampling and picking actions)
    denoising: np.ndarray | None = None  # (T, k, H, W, 3): rollout 0's k clean-frame predictions per frame


# ---- contexts ------------------------------------------------------------------------------------


def context_from_game(spec: EnvSpec, n: int, policy: Policy, num: int, seed: int) -> Context:
    """Reset `num` copies of the real game (copy i with seed + i) and let `policy` play n - 1 steps."""
    envs = [make_env(spec) for _ in range(num)]
    try:
        frames = [np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])]  # [(B, H, W, 3)]
        acts = []
        policy.reset(num)
        for k in range(n - 1):
            a = policy.act(frames[-1], np.full(num, k == 0))
            steps = [env.step(int(a[i])) for i, env in enumerate(envs)]
            if any(s[2] or s[3] for s in steps):
                raise WmcliError(f"{spec.name} ended within {k + 1} steps of a reset, before the {n} context "
                                 f"frames were played; start from a store (--store)")
            frames.append(np.stack([s[0] for s in steps]))
            acts.append(a)
    finally:
        for env in envs:
            env.close()
    act = np.stack(acts, axis=1) if acts else np.zeros((num, 0), np.int64)
    source = {"kind": "game", "game": spec.name, "reset_seeds": [seed + i for i in range(num)], "policy": policy.name}
    return Context(np.stack(frames, axis=1), act.astype(np.int64), source)


def context_from_store(store: Store, n: int, episode: int, start: int, num: int, horizon: int | None = None) -> Context:
    """Frames start .. start + n - 1 of a recorded episode, for `num` rollouts. With `horizon`, also
    the real frames and actions that followed (for compare)."""
    paths = store.episode_paths()
    if not paths:
        raise WmcliError(f"store {store.path} has no episodes; collect some with `wmcli collect --store {store.path}`")
    if not -len(paths) <= episode < len(paths):
        raise WmcliError(f"store {store.path} has {len(paths)} episodes; --episode must be in 0..{len(paths) - 1} "
                         f"(or negative, from the newest)")
    ep = store.read_episode(paths[episode])
    need = n + (horizon or 0)
    if start < 0 or start + need > len(ep.obs):
        what = f"{n} context frames" + (f" and {horizon} real frames to compare with" if horizon else "")
        last = len(ep.obs) - need
        if last >= 0:
            fix = f"--start must be in 0..{last}"
        else:
            fix = _longer_episode(store, paths, need, horizon is not None)
        raise WmcliError(f"episode {episode} of {store.path} has {len(ep.obs)} frames, too few for {what} "
                         f"from frame {start}; {fix}")
    obs = ep.obs[start : start + n]
    act = ep.act[start : start + n - 1]
    real_obs = real_act = None
    if horizon:
        real_obs = ep.obs[start + n : start + n + horizon]
        real_act = ep.act[start + n - 1 : start + n - 1 + horizon]

    def rep(x):
        return None if x is None else np.repeat(x[None], num, axis=0)

    source = {"kind": "store", "store": str(store.path), "episode": episode, "episode_file": paths[episode].name,
              "start": start}
    return Context(rep(obs), rep(act).astype(np.int64), source, rep(real_obs), rep(real_act))


def _longer_episode(store, paths: list, frames: int, compare: bool) -> str:
    """The fix for an episode too short, for an error: the first episode with `frames` frames."""
    lengths = [store.episode_length(p) + 1 for p in paths]  # frames = steps + 1
    fits = [i for i, n in enumerate(lengths) if n >= frames]
    shorter = " or a shorter --horizon" if compare else ""
    if fits:
        return (f"pick an episode of {frames} or more frames from --start 0 (e.g. --episode {fits[0]}, "
                f"{lengths[fits[0]]} frames; {len(fits)} of {len(paths)} fit){shorter}")
    if compare:
        return f"no episode of the store has {frames} frames (the longest has {max(lengths)}): use a shorter --horizon"
    return f"no episode of the store has {frames} frames (the longest has {max(lengths)})"


def parse_actions(text: str, num_actions: int) -> np.ndarray:
    """"1,0,3" or a file of integers (separated by commas or white space) -> (T,) int64, checked."""
    path = Path(text)
    if path.is_file():
        text = path.read_text()
    items = text.replace(",", " ").split()
    try:
        actions = np.array([int(x) for x in items], dtype=np.int64)
    except ValueError:
        raise WmcliError(f"--actions must be integers separated by commas (or a file of them), "
                         f"got {text[:60]!r}") from None
    if len(actions) == 0:
        raise WmcliError("--actions is empty; give at least one action, e.g. --actions 1,0,2")
    bad = actions[(actions < 0) | (actions >= num_actions)]
    if len(bad):
        raise WmcliError(f"--actions holds {int(bad[0])}, but the game has {num_actions} actions "
                         f"(0..{num_actions - 1})")
    return actions


# ---- the dream -----------------------------------------------------------------------------------


@torch.no_grad()
def dream(denoiser, ctx: Context, horizon: int, cfg: SamplerConfig, generator: torch.Generator | None = None,
          policy=None, actions: np.ndarray | None = None, device: str | torch.device = "cpu",
          autocast=contextlib.nullcontext, on_frame=None, keep_denoising: bool = False) -> Dream:
    """Dream `horizon` frames for each rollout of `ctx`. Actions come from `policy` (burned in on the
    context frames first) or from `actions` (B, horizon). on_frame(t, frames (B, H, W, 3) uint8)
    is called with every new frame as soon as it is sampled."""
    B, n = ctx.obs.shape[:2]
    obs = to_float(torch.from_numpy(ctx.obs).to(device))  # (B, n, 3, H, W) in [-1, 1]
    past_act = torch.from_numpy(ctx.act).to(device)  # (B, n - 1)
    t0 = time.perf_counter()
    if policy is not None:
        policy.reset(B)
        for i in range(n - 1):  # burn the policy's memory in on the real frames
            policy.act(ctx.obs[:, i], np.full(B, i == 0))

    def next_act(t: int, newest: torch.Tensor) -> torch.Tensor:
        if actions is not None:
            a = actions[:, t]
        else:  # the policy sees the newest frame as uint8 (B, H, W, 3), as in the real game
            a = policy.act(to_uint8(newest).cpu().numpy(), np.full(B, n == 1 and t == 0))
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device)

    estimates: list[torch.Tensor] = []
    callback = (lambda i, x0: estimates.append(x0[0].float())) if keep_denoising else None
    frames, taken, denoising = [], [], []
    # Fixed actions are known ahead: a video model conditions its frames in flight on them.
    ahead = torch.from_numpy(np.asarray(actions[:, 1:], dtype=np.int64)).to(device) if actions is not None else None
    steps = dream_frames(denoiser, obs, past_act, cfg, horizon, next_act, generator, autocast, callback, ahead)
    for t, (a, nxt) in enumerate(steps):
        frame = to_uint8(nxt).cpu().numpy()  # (B, H, W, 3)
        frames.append(frame)
        taken.append(a.cpu().numpy())
        if keep_denoising:
            denoising.append(to_uint8(torch.stack(estimates)).cpu().numpy())  # (k, H, W, 3)
            estimates.clear()
        if on_frame is not None:
            on_frame(t, frame)
    seconds = time.perf_counter() - t0
    return Dream(np.stack(frames, axis=1), np.stack(taken, axis=1), seconds,
                 np.stack(denoising) if keep_denoising else None)


# ---- compare -------------------------------------------------------------------------------------


def compare_psnr(real: np.ndarray, dreamed: np.ndarray, last_context: np.ndarray) -> dict:
    """Per imagined step, PSNR of the dream against the real frames (MSE pooled over the batch),
    beside the copy-last baseline (the last real context frame held). Frames uint8 (B, T, H, W, 3)."""
    r, d = to_float(torch.from_numpy(real)), to_float(torch.from_numpy(dreamed))  # (B, T, 3, H, W)
    last = to_float(torch.from_numpy(last_context))[:, None]  # (B, 1, 3, H, W)
    mse = (d - r).pow(2).mean(dim=(0, 2, 3, 4))  # (T,)
    mse_copy = (last - r).pow(2).mean(dim=(0, 2, 3, 4))
    return {
        "psnr": psnr_of_mse(mse.mean().item()), "psnr_copy_last": psnr_of_mse(mse_copy.mean().item()),
        "psnr_per_step": [psnr_of_mse(v) for v in mse.tolist()],
        "psnr_per_step_copy_last": [psnr_of_mse(v) for v in mse_copy.tolist()],
    }


# ---- wmcli imagine -------------------------------------------------------------------------------


def planned_horizon(cfg: ImagineConfig) -> int:
    """The imagined frames per rollout these options ask for (before any check)."""
    if cfg.horizon:
        return cfg.horizon
    if cfg.actions is not None:
        text = Path(cfg.actions).read_text() if Path(cfg.actions).is_file() else cfg.actions
        return max(len(text.replace(",", " ").split()), 1)
    return DEFAULT_HORIZON


def imagine(checkpoint: str | Path, output: str, cfg: ImagineConfig, stream: BinaryIO | None = None,
            on_progress=None) -> dict:
    """Dream from a world-model checkpoint and write the frames to `output`: .mp4, .gif, .png (rows:
    rollouts, columns: time), .npz (the raw arrays), a name with {i} (one file per rollout), or "-"
    (a y4m stream on `stream`, each frame as soon as it is sampled). Returns the summary."""
    cfg = _check_options(output, cfg)
    seed = draw_seed(cfg.seed)
    rt = make_runtime(cfg.device, "auto", False, cfg.threads)
    wm = load_world_model(checkpoint, rt.device, hint=f"imagine dreams with a world model: pass the file "
                                                      f"`wmcli train-wm -o` wrote (and this agent as --agent {checkpoint})")
    n, spec, B = wm.num_context, wm.spec, cfg.batch
    if cfg.scale is None:
        cfg = replace(cfg, scale=default_scale(spec.frame_shape[0]))
    sampler = _sampler(wm, cfg)
    rng = np.random.default_rng(seed)
    g = torch.Generator(rt.device).manual_seed(seed)

    # Actions: fixed, an agent, or uniformly random.
    fixed = parse_actions(cfg.actions, spec.num_actions) if cfg.actions is not None else None
    horizon = planned_horizon(cfg)
    if fixed is not None and len(fixed) < horizon:
        raise WmcliError(f"--actions gives {len(fixed)} actions for {horizon} steps; give {horizon} or pass "
                         f"--horizon {len(fixed)}")
    if cfg.agent is not None:
        agent = load_agent(cfg.agent, rt.device, hint="--agent picks the actions: pass an agent checkpoint")
        agent.check_plays(spec)
        policy = AgentPolicy(agent, rng, device=rt.device)
    else:
        policy = RandomPolicy(spec.num_actions, rng)

    # Context: a recorded segment, or a fresh reset of the checkpoint's game.
    if cfg.store is not None:
        store = Store.open(cfg.store)
        store.spec.check_fits(spec, f"store {cfg.store}", f"world model {checkpoint}", "pass a store of its game",
                              same_game=True)
        ctx = context_from_store(store, n, cfg.episode, cfg.start, B, horizon if cfg.compare else None)
    else:
        ctx = context_from_game(spec, n, policy, B, seed)
    if cfg.compare:
        acts, policy_name = ctx.real_act, "real actions (store)"
    elif fixed is not None:
        acts, policy_name = np.repeat(fixed[None, :horizon], B, axis=0), "actions"
    else:
        acts, policy_name = None, policy.name

    # Stream: the context frames now, each dreamed frame the moment it is sampled.
    def shown(frames: np.ndarray, real: np.ndarray | None) -> np.ndarray:  # (B, H, W, 3) -> one video frame
        return upscale(grid_of(side_by_side(real, frames) if cfg.compare else frames), cfg.scale)

    writer = None
    if output == "-":
        first = shown(ctx.obs[:, 0], ctx.obs[:, 0])
        writer = Y4MWriter(stream, first.shape[1], first.shape[0], fps=round(cfg.fps))
        for i in range(n):
            writer.write(shown(ctx.obs[:, i], ctx.obs[:, i]))

    def on_frame(t: int, frames: np.ndarray) -> None:
        if writer is not None:
            writer.write(shown(frames, ctx.real_obs[:, t] if cfg.compare else None))
        if on_progress is not None:
            seconds = time.perf_counter() - t_start
            on_progress(Progress("imagine", t + 1, horizon, "frames", {"imagined frames/s": B * (t + 1) / max(seconds, 1e-9)},
                                 seconds=seconds))

    t_start = time.perf_counter()
    d = dream(wm.denoiser, ctx, horizon, sampler, g, policy=None if acts is not None else policy, actions=acts,
              device=rt.device, autocast=rt.autocast, on_frame=on_frame, keep_denoising=cfg.show_denoising is not None)

    # Files: context then dream, per rollout (B, n + T, H, W, 3).
    videos = np.concatenate([ctx.obs, d.frames], axis=1)
    real = np.concatenate([ctx.obs, ctx.real_obs], axis=1) if cfg.compare else None
    written: list[str] = []
    if output == "-":
        written.append("-")
    elif Path(output).suffix.lower() == ".npz":
        arrays = {"videos": d.frames, "context": ctx.obs, "actions": d.act}
        if cfg.compare:
            arrays["real"] = ctx.real_obs
        with atomic_path(output) as tmp:
            np.savez_compressed(tmp, **arrays)
        written.append(output)
    else:
        if "{i}" in output:  # one file per rollout
            targets = [(output.replace("{i}", str(i)), slice(i, i + 1)) for i in range(B)]
        else:
            targets = [(output, slice(None))]
        for path, rows in targets:
            if Path(path).suffix.lower() == ".png":  # a row per rollout (real above dream), time left to right
                strips = videos[rows] if real is None else np.stack([real[rows], videos[rows]], axis=1)
                count = len(strips)
                labels = ["real", "dream"] * count if real is not None else [f"dream {i}" for i in range(count)]
                write_grid(path, strips.reshape(-1, *videos.shape[1:]), scale=cfg.scale, row_labels=labels,
                           column_groups=[(n, "real context"), (horizon, "imagined")])
            else:  # each video frame: the rollouts in a grid, each [real | dream] with --compare
                panels = videos[rows] if real is None else side_by_side(real[rows], videos[rows])
                write_frames(path, grid_of(panels), fps=cfg.fps, scale=cfg.scale)
            written.append(path)
    if cfg.show_denoising is not None:
        write_grid(cfg.show_denoising, d.denoising, scale=cfg.scale)

    one = slice(0, 1) if "{i}" in output else slice(None)  # the rollouts one frame of a file shows
    first = videos[one, :1] if real is None else side_by_side(real[one, :1], videos[one, :1])
    frame_shape = upscale(grid_of(first), cfg.scale).shape[1:3]  # (H', W') of a video frame
    result = {
        "checkpoint": str(checkpoint), "game": spec.name, "output": written if len(written) > 1 else written[0],
        "batch": B, "context_frames": n, "imagined_frames": horizon, "frames": n + horizon,
        "frame_size": list(frame_shape), "context": ctx.source, "policy": policy_name,
        "sampler": {"name": sampler.name, "num_steps": sampler.num_steps,
                    **({"video_schedule": sampler.video_schedule, "evals_per_frame": sampler.evals_per_frame}
                       if wm.denoiser.kind == "video" else {})}, "seed": seed,
        "actions": d.act.tolist(), "seconds": d.seconds, "imagined_frames_per_s": B * horizon / d.seconds,
        "compare": compare_psnr(ctx.real_obs, d.frames, ctx.obs[:, -1]) if cfg.compare else None,
        "denoising": str(cfg.show_denoising) if cfg.show_denoising is not None else None,
    }
    return result


def _check_options(output: str, cfg: ImagineConfig) -> ImagineConfig:
    """Refuse options that do not go together; returns cfg with --policy folded into --agent."""
    if cfg.policy != "random":
        if cfg.agent is not None:
            raise WmcliError("give the agent once: as --agent or as --policy, not both")
        if not Path(cfg.policy).exists():
            raise WmcliError(f"--policy {cfg.policy!r} is neither 'random' nor an existing agent checkpoint "
                             f"(the file `wmcli train-agent -o` wrote)")
        cfg = replace(cfg, agent=Path(cfg.policy), policy="random")
    if output != "-" and Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise WmcliError(f"cannot write {output}: use one of {', '.join(OUTPUT_SUFFIXES)}, or - for a y4m stream")
    if "{i}" in output and Path(output).suffix.lower() == ".npz":
        raise WmcliError("a .npz holds every rollout already; drop {i} from -o")
    for name, value, least in (("--horizon", cfg.horizon, 1), ("--batch", cfg.batch, 1), ("--scale", cfg.scale, 1),
                               ("--steps", cfg.denoising_steps, 1)):
        if value is not None and value < least:
            raise WmcliError(f"{name} must be at least {least}, got {value}")
    if cfg.actions is not None and cfg.agent is not None:
        raise WmcliError("give the actions one way: --actions or --agent, not both")
    if cfg.store is None and (cfg.compare or cfg.episode != 0 or cfg.start != 0):
        flag = "--compare" if cfg.compare else ("--episode" if cfg.episode != 0 else "--start")
        raise WmcliError(f"{flag} reads recorded frames: pass --store PATH")
    if cfg.compare and (cfg.actions is not None or cfg.agent is not None):
        raise WmcliError("--compare plays the store's real actions; drop --actions/--agent")
    if cfg.show_denoising is not None and Path(cfg.show_denoising).suffix.lower() != ".png":
        raise WmcliError(f"--show-denoising writes a grid image: use a .png file, not {cfg.show_denoising}")
    for path in ([] if output == "-" else [output.replace("{i}", "0")]) + [cfg.show_denoising] * (cfg.show_denoising is not None):
        check_writable(path)
    return cfg


def _sampler(wm: WorldModel, cfg: ImagineConfig) -> SamplerConfig:
    """The recipe's sampler, with --sampler and --steps applied, checked against the model."""
    base = wm.recipe.sampler
    name = cfg.sampler or base.name
    if name not in SAMPLERS:
        raise WmcliError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
    check_compatible(name, wm.denoiser.cfg.formulation)
    video = {k: v for k, v in (("video_schedule", cfg.video_schedule), ("evals_per_frame", cfg.evals_per_frame))
             if v is not None}
    if video and wm.denoiser.kind != "video":
        raise WmcliError(f"--{next(iter(video)).replace('_', '-')} sets a video world model's schedule; "
                         f"this one is DIAMOND's frame-by-frame denoiser: drop it")
    if wm.denoiser.kind == "video":
        if name != "euler":
            raise WmcliError(f"a video world model samples with Euler steps (its schedule: sampler.video_schedule); "
                             f"drop --sampler {name}")
        if cfg.show_denoising is not None:
            raise WmcliError("--show-denoising shows DIAMOND's denoiser's steps one frame at a time; a video world "
                             "model denoises several frames at once: drop --show-denoising")
    try:
        sampler = replace(base, name=name, num_steps=cfg.denoising_steps or base.num_steps, **video)
    except ConfigValueError as e:
        raise WmcliError(f"--{e.key.replace('_', '-')} {e.message}, got {e.value!r}") from None
    if wm.denoiser.kind == "video":
        timing(sampler, wm.denoiser.window)  # refuses --steps that keep more frames in flight than the window
    return sampler
