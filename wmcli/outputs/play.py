"""Play the dream: a world model as a game, one dreamed frame per action, yours or an agent's.

`PlaySession` is the game without a window. It holds the world model as the imagination env the
agent trains in (wmcli.world.imagination.WorldModelEnv, one env, never truncated); where its
dreams (re)start: `StoreStarts` (num_context real frames of a recorded episode) or `GameStarts`
(a reset of the real game, played num_context - 1 random steps); the sampler, whose number of
denoising steps can change between frames; the counters; and an optional agent with its LSTM
memory and who is in control. `step(action)` dreams the next frame and samples reward and end
from the reward/end model; a dreamed end restarts from a fresh real context.

Keys become actions in play_keys.py; the window is play_window.py (pygame-ce, the `play` extra).
`play_keys_file` plays a keys file without any window; `play` is `wmcli play`.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from wmcli.base.atomic import check_writable
from wmcli.base.config import SamplerConfig
from wmcli.base.errors import WmcliError
from wmcli.base.frames import to_uint8
from wmcli.base.progress import Progress
from wmcli.base.runtime import Runtime, make_runtime
from wmcli.base.seeds import draw_seed
from wmcli.data.env import make_spec
from wmcli.data.policy import RandomPolicy
from wmcli.data.spec import EnvSpec
from wmcli.data.store import Store
from wmcli.models.video_sampler import max_video_steps
from wmcli.outputs import play_window
from wmcli.outputs.imagine import Context, context_from_game, context_from_store
from wmcli.outputs.play_keys import KeyCommand, action_for_keys, frames_of, key_table, read_keys
from wmcli.outputs.video import VIDEO_SUFFIXES, default_scale, write_frames
from wmcli.world.agent import Agent, AgentPolicy, load_agent
from wmcli.world.imagination import WorldModelEnv
from wmcli.world.world_model import WorldModel, load_world_model

MAX_DENOISING_STEPS = 100
VIDEO_FPS = 15.0  # recordings play at the real game's speed (frame skip 4)


@dataclass(frozen=True)
class PlayConfig:
    """The options of `wmcli play` (the CLI fills this; every field is one option)."""

    agent: Path | None = None
    """An agent checkpoint that plays until `tab` hands control to you (and back)."""
    store: Path | None = None
    """Start (and restart) from real frames of this store; None: from resets of the real game."""
    env: str | None = None
    """The real game to reset for the starting frames; None: the world model's own game."""
    episode: int | None = None
    """With store: always this episode (0 = oldest, negative from the newest); None: drawn at each start."""
    start: int | None = None
    """With store: the first context frame's index in the episode; None: drawn at each start."""
    denoising_steps: int | None = None
    """Sampler steps per frame at the start (None: the checkpoint's sampler.num_steps)."""
    seed: int | None = None
    """Seeds the starts, the sampler's noise, reward/end draws and the agent (None: drawn, recorded)."""
    headless: bool = False
    """Play the keys file without a window and write the dreamed frames to `output`."""
    keys: Path | None = None
    """With headless: the keys file (play_keys.parse_keys)."""
    output: Path | None = None
    """With headless: .mp4, .gif or .png of the dreamed frames (None: play.mp4)."""
    record: Path | None = None
    """The window records the dreamed frames to this .mp4/.gif/.png (`v` pauses and resumes)."""
    scale: int | None = None
    """Nearest-neighbour upscaling (None: about 512 pixels a side in the window, 256 in files)."""
    fps: float = 15.0
    """The window shows at most this many frames a second (15: real time at frame skip 4; 0: as fast as
    the sampler goes)."""
    max_frames: int | None = None
    """The window quits after this many dreamed frames (None: when you quit)."""
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None


# ---- where dreams start ------------------------------------------------------------------------


class StoreStarts:
    """Starts from a store: n consecutive real frames of an episode and the actions between them.
    The episode (among those with n frames or more) and the first frame are drawn from the
    generator at each start, unless fixed. A wmcli.world.imagination.ContextSampler."""

    def __init__(self, store: Store, n: int, episode: int | None = None, start: int | None = None):
        self.store, self.n, self.episode, self.start = store, n, episode, start
        paths = store.episode_paths()
        if not paths:
            raise WmcliError(f"store {store.path} has no episodes; collect some with `wmcli collect --store {store.path}`")
        self.frames = [store.episode_length(p) + 1 for p in paths]  # frames = steps + 1
        self.fit = [i for i, f in enumerate(self.frames) if f >= n]
        if not self.fit:
            raise WmcliError(f"no episode of the store {store.path} has the {n} frames a start needs "
                             f"(the longest has {max(self.frames)})")
        if episode is not None and not -len(paths) <= episode < len(paths):
            raise WmcliError(f"store {store.path} has {len(paths)} episodes; --episode must be in 0..{len(paths) - 1} "
                             f"(or negative, from the newest)")
        self.last: Context | None = None

    def sample(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        obs, act, sources = [], [], []
        for _ in range(k):
            episode = self.episode if self.episode is not None else int(rng.choice(self.fit))
            start = self.start if self.start is not None else int(rng.integers(0, max(self.frames[episode] - self.n, 0) + 1))
            ctx = context_from_store(self.store, self.n, episode, start, 1)
            obs.append(ctx.obs[0])
            act.append(ctx.act[0])
            sources.append(ctx.source)
        self.last = Context(np.stack(obs), np.stack(act), sources[0] if k == 1 else {"kind": "store", "starts": sources})
        return self.last.obs, _pad(self.last.act)


class GameStarts:
    """Starts from the real game: a reset (its seed drawn from the generator) and n - 1 uniformly
    random actions. A wmcli.world.imagination.ContextSampler."""

    def __init__(self, spec: EnvSpec, n: int):
        self.spec, self.n = spec, n
        self.last: Context | None = None

    def sample(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        seed = int(rng.integers(2**31 - k))
        self.last = context_from_game(self.spec, self.n, RandomPolicy(self.spec.num_actions, rng), k, seed)
        return self.last.obs, _pad(self.last.act)


def _pad(act: np.ndarray) -> np.ndarray:
    """(k, n - 1) actions between the context frames -> (k, n), the action at the newest frame
    left 0 (a ContextSampler gives one per frame; the dream's first action replaces it)."""
    return np.concatenate([act, np.zeros((len(act), 1), np.int64)], axis=1)


# ---- the game ----------------------------------------------------------------------------------


@dataclass
class Step:
    """What one step of the dream gave."""

    frame: np.ndarray  # (H, W, 3) uint8: the dreamed frame
    action: int  # the action taken at the frame before it
    by: str  # who chose it: "agent" or "you"
    rew: float  # the reward's sign sampled from the reward/end model: -1, 0 or 1
    end: bool  # the reward/end model sampled an end (the session then restarted, with restart_on_end)


class PlaySession:
    """A world model played one frame at a time; see the module docstring. `starts` gives the real
    contexts (a wmcli.world.imagination.ContextSampler that keeps the one it gave last as `.last`:
    StoreStarts, GameStarts); `agent`, when given, plays until `hand_over()`."""

    def __init__(self, wm: WorldModel, starts, sampler: SamplerConfig | None = None, agent: Agent | None = None,
                 device: str | torch.device = "cpu", autocast=contextlib.nullcontext, seed: int = 0,
                 restart_on_end: bool = True):
        self.wm, self.starts, self.restart_on_end = wm, starts, restart_on_end
        # channels_last: at batch 1 on CPU, DIAMOND's denoiser dreams 9% (fp32) to 25% (bf16) faster
        # (docs/performance.md); the weights' values are unchanged.
        for net in (wm.denoiser, wm.rew_end):
            net.to(memory_format=torch.channels_last)
        self.spec = wm.spec
        self.meanings = wm.spec.action_meanings
        self.noop = list(self.meanings).index("NOOP") if "NOOP" in self.meanings else 0
        self.env = WorldModelEnv(wm, starts, 1, horizon=None, sampler=sampler or wm.recipe.sampler, device=device,
                                 seed=seed, autocast=autocast)
        self.policy = None
        if agent is not None:
            agent.check_plays(wm.spec)
            self.policy = AgentPolicy(agent, np.random.default_rng([seed, 1]), device=device)
        self.agent_in_control = agent is not None
        self.frames = 0  # frames dreamed in all
        self.restarts = 0  # starts after the first: asked for, or after a dreamed end
        self.ends = 0  # ends the reward/end model sampled
        self.t = 0  # frames dreamed since the last start
        self.score = 0.0  # the sampled rewards since the last start
        self.total_score = 0.0  # the sampled rewards of every start
        self.frame: np.ndarray | None = None  # (H, W, 3) uint8: the newest frame, real or dreamed
        self.context: Context | None = None  # where the dream started last
        self._start()

    @property
    def sampler(self) -> SamplerConfig:
        return self.env.sampler

    @property
    def denoising_steps(self) -> int:
        return self.env.sampler.num_steps

    def set_denoising_steps(self, steps: int) -> int:
        """Denoising steps for the next frames, kept within 1..MAX_DENOISING_STEPS (and, for a video
        world model, to what its window can hold in flight); returns them."""
        steps = min(max(int(steps), 1), self.max_denoising_steps)
        self.env.sampler = replace(self.env.sampler, num_steps=steps)
        return steps

    @property
    def max_denoising_steps(self) -> int:
        if self.env.next_frame.video:
            cfg = self.env.sampler
            return max(1, min(MAX_DENOISING_STEPS, max_video_steps(cfg, self.env.denoiser.window)))
        return MAX_DENOISING_STEPS

    @property
    def controller(self) -> str:
        return "agent" if self.agent_in_control else "you"

    def hand_over(self) -> str:
        """Hand control from the agent to the player or back (with an agent); returns who has it."""
        if self.policy is not None:
            self.agent_in_control = not self.agent_in_control
        return self.controller

    def reset(self) -> np.ndarray:
        """Start again from a fresh real context; returns its newest frame (H, W, 3)."""
        self.restarts += 1
        return self._start()

    @torch.no_grad()
    def _start(self) -> np.ndarray:
        self.env.reset()  # draws the context and burns the reward/end model's LSTM in on it
        self.context = self.starts.last
        obs = self.context.obs  # (1, n, H, W, 3)
        n = obs.shape[1]
        if self.policy is not None:  # burn the agent's memory in on the real frames
            self.policy.reset(1)
            for i in range(n - 1):
                self.policy.act(obs[:, i], np.array([i == 0]))
        self._agent_first = n == 1
        self.frame = obs[0, -1]
        self.t, self.score = 0, 0.0
        return self.frame

    @torch.no_grad()
    def step(self, action: int | None = None) -> Step:
        """Dream the next frame after `action` (None: NOOP), or after the agent's action while it is
        in control. The agent sees every frame either way, so its memory is current when it takes over."""
        proposal = None
        if self.policy is not None:
            proposal = int(self.policy.act(self.frame[None], np.array([self._agent_first]))[0])
            self._agent_first = False
        a = proposal if self.agent_in_control else (self.noop if action is None else int(action))
        if not 0 <= a < self.spec.num_actions:
            raise WmcliError(f"action {a} is not one of {self.spec.name}'s {self.spec.num_actions} actions "
                             f"(0..{self.spec.num_actions - 1})")
        nxt, rew, end, _, _ = self.env.step(torch.tensor([a]))
        result = Step(to_uint8(nxt[0]).cpu().numpy(), a, self.controller, float(rew[0]), bool(end[0]))
        self.frames += 1
        self.t += 1
        self.score += result.rew
        self.total_score += result.rew
        self.frame = result.frame
        if result.end:
            self.ends += 1
            if self.restart_on_end:
                self.reset()
        return result

    def step_keys(self, held) -> Step:
        """step() with the action the held buttons ask for (play_keys.action_for_keys)."""
        return self.step(action_for_keys(held, self.meanings))


# ---- building a session ------------------------------------------------------------------------


def open_session(checkpoint: str | Path, cfg: PlayConfig, seed: int, rt: Runtime | None = None) -> PlaySession:
    """The session `cfg` describes, for a world-model checkpoint: its sampler, where it starts, its agent."""
    rt = rt or make_runtime(cfg.device, cfg.precision, False, cfg.threads)
    wm = load_world_model(checkpoint, rt.device, hint=f"play dreams with a world model: pass the file `wmcli train-wm -o` "
                                                      f"wrote (and this agent as --agent {checkpoint})")
    spec, n = wm.spec, wm.num_context
    if cfg.store is not None:
        store = Store.open(cfg.store)
        store.spec.check_fits(spec, f"store {cfg.store}", f"world model {checkpoint}", "pass a store of its game",
                              same_game=True)
        starts = StoreStarts(store, n, cfg.episode, cfg.start)
    else:
        if cfg.env is not None:  # the same game under the world model's frame protocol
            make_spec(replace(spec.config, game=cfg.env)).check_fits(
                spec, f"--env {cfg.env}", f"world model {checkpoint}", f"drop --env to play its own game, {spec.name}",
                same_game=True)
        starts = GameStarts(spec, n)
    agent = None
    if cfg.agent is not None:
        agent = load_agent(cfg.agent, rt.device, hint="--agent plays the dream: pass an agent checkpoint "
                                                      "(`wmcli train-agent -o`)")
    for net in (wm.denoiser, wm.rew_end):  # the session runs them under rt.autocast() only
        rt.cast_for_inference(net)
    sampler = wm.recipe.sampler
    if cfg.denoising_steps is not None:
        sampler = replace(sampler, num_steps=cfg.denoising_steps)
    return PlaySession(wm, starts, sampler, agent, rt.device, rt.autocast, seed)


# ---- headless ----------------------------------------------------------------------------------


def play_keys_file(session: PlaySession, commands: list[KeyCommand], on_frame=None) -> dict:
    """Play `commands` (play_keys.parse_keys) in the session: each frame line dreams a frame with its
    keys held (or the agent's action while it is in control). on_frame(i, step) sees every frame.
    Returns the dreamed frames as `video` (T, H, W, 3) uint8, and the counts of what happened."""
    frames, actions, by = [], Counter(), Counter()
    restarts_asked = 0
    seconds = 0.0
    for c in commands:
        if c.kind == "restart":
            session.reset()
            restarts_asked += 1
        elif c.kind == "steps":
            session.set_denoising_steps(c.value)
        elif c.kind == "hand":
            session.hand_over()
        else:
            for _ in range(c.repeat):
                t0 = time.perf_counter()
                s = session.step_keys(c.buttons)
                seconds += time.perf_counter() - t0
                frames.append(s.frame)
                actions[session.meanings[s.action]] += 1
                by[s.by] += 1
                if on_frame is not None:
                    on_frame(len(frames) - 1, s, seconds)
    video = np.stack(frames) if frames else np.zeros((0, *session.spec.frame_shape), np.uint8)
    return {"video": video, "frames": len(frames), "seconds": seconds, "actions": dict(actions), "by": dict(by),
            "restarts_asked": restarts_asked}


# ---- wmcli play --------------------------------------------------------------------------------


def play(checkpoint: str | Path, cfg: PlayConfig, on_progress=None) -> dict:
    """`wmcli play`: open the window (or, headless, play the keys file and write its frames).
    Returns the summary of the game played."""
    commands = _check_options(cfg)
    if not cfg.headless:
        play_window.require_pygame()  # before the model loads: say at once what to install, or that no
        play_window.check_display()  # window can show
    seed = draw_seed(cfg.seed)
    rt = make_runtime(cfg.device, cfg.precision, False, cfg.threads)
    session = open_session(checkpoint, cfg, seed, rt)
    size = session.spec.frame_shape[0]
    file_scale = cfg.scale or default_scale(size)
    fps = cfg.fps or VIDEO_FPS
    if cfg.headless:
        output = cfg.output or Path("play.mp4")
        total = frames_of(commands)

        def on_frame(i: int, s: Step, seconds: float) -> None:
            if on_progress is not None:
                on_progress(Progress("play", i + 1, total, "frames", {"frames/s": (i + 1) / max(seconds, 1e-9)},
                                     seconds=seconds))

        played = play_keys_file(session, commands, on_frame)
        written = None
        if played["frames"]:
            written = str(write_frames(output, played["video"], fps=fps, scale=file_scale))
    else:
        window_scale = cfg.scale or play_window.default_window_scale(size)
        played = play_window.run_window(session, window_scale, cfg.fps, cfg.record, file_scale, cfg.max_frames,
                                        record_fps=fps)
        written = played["record"]
    frames = played["frames"]
    return {
        "checkpoint": str(checkpoint), "game": session.spec.name, "mode": "headless" if cfg.headless else "window",
        "output": written, "frames": frames, "recorded_frames": played.get("recorded_frames", frames if written else 0),
        "seconds": played["seconds"],
        "frames_per_s": frames / played["seconds"] if played["seconds"] > 0 else None,
        "restarts": session.restarts, "dreamed_ends": session.ends, "restarts_asked": played["restarts_asked"],
        "actions": played["actions"], "by": played["by"], "score": session.total_score,
        "sampler": {"name": session.sampler.name, "num_steps": session.denoising_steps},
        "agent": str(cfg.agent) if cfg.agent is not None else None, "start": session.context.source,
        "seed": seed, "runtime": rt.describe(), "keys": dict(key_table(session.meanings)),
    }


def _check_options(cfg: PlayConfig) -> list[KeyCommand]:
    """Refuse options that do not go together (before anything loads); the keys file's commands."""
    if cfg.store is not None and cfg.env is not None:
        raise WmcliError("start from a store (--store) or from the real game (--env), not both")
    if cfg.store is None and (cfg.episode is not None or cfg.start is not None):
        raise WmcliError(f"{'--episode' if cfg.episode is not None else '--start'} picks recorded frames: pass --store PATH")
    for name, value in (("--steps", cfg.denoising_steps), ("--scale", cfg.scale), ("--max-frames", cfg.max_frames)):
        if value is not None and value < 1:
            raise WmcliError(f"{name} must be at least 1, got {value}")
    if cfg.denoising_steps is not None and cfg.denoising_steps > MAX_DENOISING_STEPS:
        raise WmcliError(f"--steps must be at most {MAX_DENOISING_STEPS}, got {cfg.denoising_steps}")
    if cfg.fps < 0:
        raise WmcliError(f"--fps must be 0 (as fast as the sampler goes) or more, got {cfg.fps}")
    for what, path in (("-o", cfg.output), ("--record", cfg.record)):
        if path is not None and Path(path).suffix.lower() not in VIDEO_SUFFIXES:
            raise WmcliError(f"cannot write {path} ({what}): use one of {', '.join(VIDEO_SUFFIXES)}")
    if cfg.headless:
        if cfg.keys is None:
            raise WmcliError("--headless plays a keys file: pass --keys FILE (docs/play.md: one line of keys per frame)")
        if cfg.record is not None:
            raise WmcliError("--record is the window's; --headless writes its frames to -o")
        commands = read_keys(cfg.keys)
        check_writable(cfg.output or Path("play.mp4"))
        return commands
    if cfg.keys is not None or cfg.output is not None:
        raise WmcliError(f"{'--keys' if cfg.keys is not None else '-o'} is for --headless; the window records with --record")
    if cfg.record is not None:
        check_writable(cfg.record)
    return []
