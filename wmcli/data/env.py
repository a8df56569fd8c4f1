"""Real environments: ALE Atari games and MinAtar games under one frame protocol.

The protocol is DIAMOND's and is recorded with every episode (`EnvConfig.protocol()`):
frame skip 4 with a max-pool over the last two raw frames, up to 30 no-op frames at reset,
no sticky actions, the minimal action set, RGB frames resized by area averaging, raw rewards,
life loss reported apart from game over, and the 108,000-frame cap.

An ALE game runs on one of two paths that give the same frames for the same no-ops and actions
(tests/test_env.py checks it):
- `make_vector_env`: ale-py's threaded C++ `AtariVectorEnv`, which does skip, max-pool, no-ops
  and resizing itself. The fast path, used for collection.
- `make_env`: one `ale_py.env.AtariEnv` at frame skip 1 under `AtariProtocol`, which states the
  same steps in numpy. It also reaches game modes and difficulties, which the C++ path lacks.
MinAtar games (`minatar:Breakout`) are drawn as RGB frames with a fixed palette: the fast games
for CPU experiments.

Only the data layer (wmcli/data/) sees frames as uint8 (H, W, 3) arrays.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from ale_py import ALEInterface, LoggerMode, roms
from ale_py.env import AtariEnv
from ale_py.vector_env import AtariVectorEnv

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.data.spec import EnvSpec

ALEInterface.setLoggerMode(LoggerMode.Error)  # keep ALE's banner and info lines off stderr

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")

# One colour per MinAtar object channel (at most 10), on a black background.
MINATAR_PALETTE = np.array(
    [
        (0, 0, 0),
        (230, 60, 60), (60, 200, 90), (70, 120, 240), (240, 200, 40), (200, 80, 220),
        (60, 210, 220), (245, 140, 50), (235, 235, 235), (140, 100, 60), (120, 120, 120),
    ],
    dtype=np.uint8,
)
MINATAR_ACTION_NAMES = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _camel(rom: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in rom.split("_"))


def ale_games() -> dict[str, str]:
    """Canonical CamelCase name -> ROM id, for every ROM that ships with ale-py."""
    return {_camel(r): r for r in sorted(roms.get_all_rom_ids())}


def all_game_names() -> list[str]:
    return list(ale_games()) + [f"minatar:{_camel(g)}" for g in MINATAR_GAMES]


def resolve_game(game: str) -> tuple[str, str, str]:
    """Name as typed -> (kind, canonical name, rom). Unknown names raise with the closest ones."""
    raw = game.strip()
    if raw.lower().startswith("minatar:"):
        key = _key(raw.split(":", 1)[1])
        for g in MINATAR_GAMES:
            if _key(g) == key:
                return "minatar", f"minatar:{_camel(g)}", g
    else:
        # Accept gymnasium ids: ALE/Breakout-v5, BreakoutNoFrameskip-v4, Breakout-v4, ...
        name = re.sub(r"^ALE/", "", raw)
        name = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", name)
        games = ale_games()
        by_key = {_key(c): c for c in games}
        if _key(name) in by_key:
            canonical = by_key[_key(name)]
            return "ale", canonical, games[canonical]
    names = all_game_names()
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(raw.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f"closest: {', '.join(lowered[c] for c in close)}" if close else "no close match"
    raise WmcliError(f"unknown game '{game}' ({hint}); `wmcli envs` lists every game")


def make_spec(config: EnvConfig) -> EnvSpec:
    """Resolve the game and read its action set (cheap: no emulator is stepped). The config's
    values are checked when it is made (EnvConfig)."""
    kind, name, rom = resolve_game(config.game)
    if kind == "minatar":
        minimal = MinAtarGame(rom).minimal_action_set()
        meanings = tuple(MINATAR_ACTION_NAMES[a] for a in minimal)
    else:
        ale = ALEInterface()
        ale.loadROM(str(roms.get_rom_path(rom)))
        meanings = tuple(_ale_action_name(a) for a in ale.getMinimalActionSet())
        if config.mode is not None and config.mode not in ale.getAvailableModes():
            raise WmcliError(
                f"{name} has no mode {config.mode}; its modes are {list(ale.getAvailableModes())}"
            )
        if config.difficulty is not None and config.difficulty not in ale.getAvailableDifficulties():
            raise WmcliError(
                f"{name} has no difficulty {config.difficulty}; "
                f"its difficulties are {list(ale.getAvailableDifficulties())}"
            )
    s = config.frame_size
    return EnvSpec(kind, name, rom, len(meanings), meanings, (s, s, 3), config)


def _ale_action_name(action) -> str:
    return str(action).split(".")[-1]


def _minatar_game_module(rom: str):
    """MinAtar's module of one game, loaded from its file. Importing the `minatar` package costs
    2+ s (its __init__ loads matplotlib and seaborn for a display window wmcli never opens); each
    game module needs only numpy."""
    found = importlib.util.find_spec("minatar")
    if found is None or not found.submodule_search_locations:
        raise WmcliError("MinAtar games need the `minatar` package: pip install 'wmcli[minatar]'")
    name = f"wmcli_minatar_{rom}"
    if name not in sys.modules:
        path = Path(found.submodule_search_locations[0]) / "environments" / f"{rom}.py"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


class MinAtarGame:
    """One MinAtar game with sticky actions, as minatar.Environment runs it (one RandomState for
    the game and the sticky draws, reseeded by `seed`), without its display code."""

    def __init__(self, rom: str, sticky_action_prob: float = 0.0):
        self.game = _minatar_game_module(rom).Env(ramping=True)
        self.random = np.random.RandomState()
        self.sticky_action_prob, self.last_action = sticky_action_prob, 0

    def seed(self, seed: int) -> None:
        self.random = np.random.RandomState(seed)
        self.game.random = self.random

    def act(self, a: int):
        if self.random.rand() < self.sticky_action_prob:
            a = self.last_action
        self.last_action = a
        return self.game.act(a)

    def reset(self) -> None:
        self.game.reset()

    def state(self) -> np.ndarray:
        return self.game.state()

    def state_shape(self):
        return self.game.state_shape()

    def minimal_action_set(self):
        return self.game.minimal_action_set()


# --------------------------------------------------------------------------------------------
# Area resampling, stated in numpy: out = Wy @ frame @ Wx^T, channel by channel.


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging each output pixel's footprint, with fractional edges."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), dtype=np.float32)
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            w[i, j] = min(hi, j + 1) - max(lo, j)
    return w / scale


class AreaResize:
    """Resize (H, W, 3) uint8 frames by area averaging, as OpenCV's INTER_AREA does when shrinking."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        self.wy = area_weights(in_hw[0], out_hw[0])  # (h, H)
        self.wx = area_weights(in_hw[1], out_hw[1])  # (w, W)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x = frame.astype(np.float32).transpose(2, 0, 1)  # (3, H, W)
        y = self.wy @ x @ self.wx.T  # (3, h, w)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(1, 2, 0)


# --------------------------------------------------------------------------------------------
# Single environments (gymnasium API).


class AtariProtocol(gym.Env):
    """One ALE game at frame skip 1, with DIAMOND's protocol applied step by step in numpy.

    Matches ale-py's C++ vector env frame for frame, including its one quirk: when the game
    ends before the last two raw frames of a step, the max-pool buffer keeps the previous
    frames, so the final observation repeats the previous one (as gymnasium's
    AtariPreprocessing and DIAMOND do).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, spec: EnvSpec):
        cfg = spec.config
        self.spec_ = spec
        self.ale_env = AtariEnv(
            spec.rom,
            mode=cfg.mode,
            difficulty=cfg.difficulty,
            obs_type="rgb",
            frameskip=1,
            repeat_action_probability=cfg.sticky_prob,
            full_action_space=False,
            max_num_frames_per_episode=cfg.max_episode_frames,
        )
        self.ale = self.ale_env.ale
        h, w = self.ale.getScreenDims()
        self.resize = AreaResize((h, w), spec.frame_shape[:2])
        self.buf = np.zeros((2, h, w, 3), dtype=np.uint8)  # the last two raw frames of a step
        self.observation_space = gym.spaces.Box(0, 255, spec.frame_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(spec.num_actions)

    def reset(self, *, seed=None, options=None):
        """Reset, then play `noops` no-op frames (options["noops"], else uniform in [0, noop_max - 1],
        as ale-py's vector env draws them)."""
        super().reset(seed=seed)
        self.ale_env.reset(seed=seed)
        noops = (options or {}).get("noops")
        if noops is None:
            noops = int(self.np_random.integers(0, max(self.spec_.config.noop_max, 1)))
        for _ in range(noops):
            _, _, term, trunc, _ = self.ale_env.step(0)
            if term or trunc:
                self.ale_env.reset()
        self.ale.getScreenRGB(self.buf[0])
        self.buf[1] = self.buf[0]
        return self.resize(self.buf[0]), {"lives": self.ale.lives()}

    def step(self, action):
        # Frame skip: repeat the action, keep the last two raw frames for the max-pool.
        skip = self.spec_.config.frame_skip
        rew, term, trunc = 0.0, False, False
        for k in range(skip):
            _, r, term, trunc, _ = self.ale_env.step(int(action))
            rew += r
            if k >= skip - 2:
                self.ale.getScreenRGB(self.buf[k - (skip - 2)])
            if term or trunc:
                break
        obs = self.resize(np.maximum(self.buf[0], self.buf[1]))
        return obs, rew, term, trunc, {"lives": self.ale.lives()}

    def render(self):
        return self.ale.getScreenRGB()

    def close(self):
        self.ale_env.close()


class MinAtarEnv(gym.Env):
    """A MinAtar game as a gymnasium env with RGB frames (fixed palette, nearest upscaling)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, spec: EnvSpec):
        cfg = spec.config
        self.spec_ = spec
        self.game = MinAtarGame(spec.rom, sticky_action_prob=cfg.sticky_prob)
        self.actions = self.game.minimal_action_set()
        self.max_steps = max(1, cfg.max_episode_frames // max(cfg.frame_skip, 1))
        self.steps = 0
        h, w, _ = self.game.state_shape()
        s = spec.frame_shape[0]
        # Nearest upscaling: which cell each output row/column shows.
        self.rows = (np.arange(s) * h) // s
        self.cols = (np.arange(s) * w) // s
        self.observation_space = gym.spaces.Box(0, 255, spec.frame_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(spec.num_actions)

    def _obs(self) -> np.ndarray:
        state = self.game.state()  # (10, 10, C) bool
        C = state.shape[-1]
        # Each cell shows its highest-numbered object channel (0 = empty).
        idx = np.max(state * np.arange(1, C + 1, dtype=np.uint8), axis=-1)
        return MINATAR_PALETTE[idx][self.rows][:, self.cols]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(int(seed))
        self.game.reset()
        self.steps = 0
        return self._obs(), {"lives": 0}

    def step(self, action):
        rew, term = self.game.act(self.actions[int(action)])
        self.steps += 1
        trunc = bool(not term and self.steps >= self.max_steps)
        return self._obs(), float(rew), bool(term), trunc, {"lives": 0}


def make_env(spec: EnvSpec):
    """One env with the protocol (gymnasium API, frames (H, W, 3) uint8)."""
    check_playable(spec)
    return MinAtarEnv(spec) if spec.kind == "minatar" else AtariProtocol(spec)


def check_playable(spec: EnvSpec) -> None:
    """Refuse, in one line, to start a real game for a spec that has none behind it (a store imported
    from recorded data without --game: `wmcli store import`)."""
    if spec.kind not in ("ale", "minatar"):
        raise WmcliError(f"{spec.name} was imported from recorded data ({spec.kind}) and has no real game to play; "
                         f"use its store instead (imagine, play and eval of a world model take --store), or import with --game GAME")


# --------------------------------------------------------------------------------------------
# Vector environments: gymnasium's VectorEnv API with next-step autoreset.


class _SqueezedAtariVectorEnv:
    """ale-py's AtariVectorEnv with its frame-stack axis of 1 removed."""

    def __init__(self, spec: EnvSpec, num_envs: int, pin_threads: bool = True):
        cfg = spec.config
        self.num_envs = num_envs
        self.venv = AtariVectorEnv(
            spec.rom,
            num_envs,
            num_threads=num_envs,
            thread_affinity_offset=_pinning_offset(num_envs) if pin_threads else -1,
            max_num_frames_per_episode=cfg.max_episode_frames,
            repeat_action_probability=cfg.sticky_prob,
            full_action_space=False,
            img_height=spec.frame_shape[0],
            img_width=spec.frame_shape[1],
            grayscale=False,
            stack_num=1,
            frameskip=cfg.frame_skip,
            maxpool=True,
            noop_max=cfg.noop_max,
            episodic_life=False,
            reward_clipping=False,
            use_fire_reset=False,
        )

    def reset(self, *, seed=None):
        obs, info = self.venv.reset(seed=seed)
        return obs[:, 0], info

    def step(self, actions):
        obs, rew, term, trunc, info = self.venv.step(np.asarray(actions, dtype=np.int64))
        return obs[:, 0], rew.astype(np.float64), term, trunc, info

    def close(self):
        self.venv.close()


def _pinning_offset(num_envs: int) -> int:
    """First core to pin ALE worker threads to (thread i on core offset + i), or -1 for no pinning.

    Pinning stops the two threads of a 2-env run from being scheduled on one core now and then
    (measured: 1.72x -> 1.84x steps/s of one env on 2 cores, docs/performance.md). ale-py pins by
    absolute core number, so pin only when the cores this process may use are contiguous and
    there are enough of them.
    """
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return -1
    if num_envs > len(cores) or cores != list(range(cores[0], cores[0] + len(cores))):
        return -1
    return cores[0]


def make_vector_env(spec: EnvSpec, num_envs: int, pin_threads: bool = True):
    """`num_envs` envs stepped together; env i is seeded with seed + i, autoreset on the next step.

    ALE games without a mode or difficulty use the threaded C++ vector env (its worker threads
    pinned one per core when possible, unless pin_threads is False); the others run `make_env`
    envs in turn in this process.
    """
    if num_envs < 1:
        raise WmcliError(f"--num-envs must be at least 1, got {num_envs}")
    check_playable(spec)
    cfg = spec.config
    if spec.kind == "ale" and cfg.mode is None and cfg.difficulty is None:
        return _SqueezedAtariVectorEnv(spec, num_envs, pin_threads)
    return gym.vector.SyncVectorEnv(
        [lambda: make_env(spec) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )


def default_store_path(game: str) -> Path:
    """Where `wmcli collect` puts a game's episodes when no --store is given: runs/<game>/store."""
    return Path("runs") / game.replace(":", "-") / "store"


def store_for(store: str | os.PathLike | None, game: str | None) -> Path:
    """The store a command reads: `store` when given, else the default store of `game`
    (default_store_path)."""
    if store is not None:
        return Path(store)
    if game is None:
        raise WmcliError("pass --store PATH (or --env GAME for runs/<game>/store)")
    return default_store_path(resolve_game(game)[1])
