"""The trajectory store: a folder of HDF5 files, one per episode, each written whole and renamed in.

    STORE/wmcli-store.json     format, game, protocol, action meanings, frame shape (written once)
    STORE/episodes/<time>-<id>.h5   one finished episode: obs, act, rew, end, life_loss, trunc, attributes
    STORE/partial/<id>.h5      an episode still under way (`wmcli run`): its steps so far, replaced
                               as it grows, removed once it lands in episodes/ under the same id
    STORE/held-out.json        optional: the episodes held out for validation (`wmcli store split`)

Why one file per episode: a rename is atomic, so a writer killed at any moment leaves every
finished episode whole and at most a hidden `.tmp-*` file that readers skip; several writers
never share a file, so they need no lock; a reader sees an episode the moment it is renamed in;
and one corrupt file costs one episode. Finished episode names start with the landing time in
nanoseconds, so sorting names sorts episodes by age. The format is in docs/store.md.

Unfinished episodes (DIAMOND trains on the episode under way too) live apart in partial/, so
every count of finished episodes stays as it was. A partial file is replaced atomically as the
episode grows; when the episode ends it is written to episodes/ under the same id first and the
partial file removed after, so a kill between the two leaves a stale partial that readers skip
(its id is in episodes/): never a duplicate, never a loss. `training_paths()` lists both kinds;
`seal_partial()` turns what a dead writer left under way into cut episodes.

Reading for training goes through `EpisodeBuffer` (wmcli.data.buffer), which holds frames in RAM,
or `DiskEpisodeBuffer` (wmcli.data.disk_buffer), which reads them per segment.
`STEP_DTYPES` is the one table of the per-step arrays and their types.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from wmcli import __version__
from wmcli.base.atomic import atomic_path
from wmcli.base.errors import WmcliError
from wmcli.data.spec import EnvSpec

FORMAT = "wmcli-store/1"
META_NAME = "wmcli-store.json"
EPISODES_DIR = "episodes"
PARTIAL_DIR = "partial"
HELD_OUT_NAME = "held-out.json"
HELD_OUT_FORMAT = "wmcli-held-out/1"
STEP_DTYPES = {"act": np.int64, "rew": np.float32, "end": bool, "life_loss": bool, "trunc": bool}
"""The arrays of one value per step, and their types (in the store, in RAM, in segments)."""
STEP_KEYS = tuple(STEP_DTYPES)
# Env fields that must agree between a store and what is appended to it.
ENV_IDENTITY = ("kind", "name", "num_actions", "frame_shape", "protocol")


@dataclass
class Episode:
    """One episode. T steps: obs holds T + 1 frames, first and last included.

    act[t] is the action taken at obs[t]; rew[t], end[t], life_loss[t], trunc[t] are what
    followed it. end is game over; trunc is a cut (time limit, or the collector stopped).
    """

    obs: np.ndarray  # (T+1, H, W, 3) uint8
    act: np.ndarray  # (T,) int64
    rew: np.ndarray  # (T,) float32, raw
    end: np.ndarray  # (T,) bool
    life_loss: np.ndarray  # (T,) bool
    trunc: np.ndarray  # (T,) bool
    attrs: dict = field(default_factory=dict)  # seed, policy, ...

    def __len__(self) -> int:
        return len(self.act)

    @property
    def ret(self) -> float:
        return float(self.rew.sum())

    @property
    def complete(self) -> bool:
        """Ended by the game (game over), not cut."""
        return len(self) > 0 and bool(self.end[-1])


def _bad(path: Path, why: str) -> WmcliError:
    return WmcliError(
        f"{path}: {why}; move the file out of the store (the other episodes are unaffected) "
        f"or pass --skip-bad"
    )


class Store:
    """A trajectory store on disk. `Store.open` to read, `Store.create_or_open` to append."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self.episodes_dir = path / EPISODES_DIR
        self.partial_dir = path / PARTIAL_DIR

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        path = Path(path)
        meta_path = path / META_NAME
        if not path.exists():
            raise WmcliError(f"no store at {path}; create one with `wmcli collect --store {path}`")
        if not meta_path.is_file():
            raise WmcliError(
                f"{path} is not a wmcli store (no {META_NAME}); pass the folder `wmcli collect` wrote"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise WmcliError(f"{meta_path}: unreadable store metadata ({e}); restore or recreate it") from None
        if meta.get("format") != FORMAT:
            raise WmcliError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        return cls(path, meta)

    @classmethod
    def create_or_open(cls, path: str | os.PathLike, env: dict) -> Store:
        """Open for appending episodes of `env` (EnvSpec.to_dict()), creating the store if needed."""
        path = Path(path)
        try:
            (path / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WmcliError(f"cannot create a store at {path} ({e.strerror}); choose a writable --store") from None
        if not os.access(path / EPISODES_DIR, os.W_OK):
            raise WmcliError(f"store {path} is not writable; choose a writable --store")
        meta = {"format": FORMAT, "created": time.time(), "wmcli_version": __version__, "env": env}
        if not (path / META_NAME).exists():
            try:
                with atomic_path(path / META_NAME, exclusive=True) as tmp:
                    tmp.write_text(json.dumps(meta, indent=2))
            except FileExistsError:
                pass  # another writer created it first; check it below
        store = cls.open(path)
        diff = env_differences(store.env, env)
        if diff:
            raise WmcliError(
                f"store {path} holds {store.env.get('name')} episodes with other {', '.join(diff)}; "
                f"use another --store for {env.get('name')} with these settings"
            )
        return store

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """Whether `path` holds a store (its metadata file)."""
        return (Path(path) / META_NAME).is_file()

    @property
    def env(self) -> dict:
        """The env as recorded (EnvSpec.to_dict()); `spec` is the typed view."""
        return self.meta["env"]

    @property
    def spec(self) -> EnvSpec:
        return EnvSpec.from_dict(self.meta["env"])

    # ---- listing and reading ----------------------------------------------------------

    def episode_paths(self) -> list[Path]:
        """Finished episode files, oldest first (temporary files of writers are not listed)."""
        if not self.episodes_dir.is_dir():
            return []
        return sorted(
            p for p in self.episodes_dir.iterdir() if not p.name.startswith(".") and p.is_file()
        )

    def partial_paths(self) -> list[Path]:
        """Episodes still under way (partial/), oldest id first; a stale file whose episode has
        already landed in episodes/ (a writer killed between the two steps) is not listed."""
        if not self.partial_dir.is_dir():
            return []
        landed = {episode_id(p) for p in self.episode_paths()}
        return sorted(
            p for p in self.partial_dir.iterdir()
            if not p.name.startswith(".") and p.is_file() and p.stem not in landed
        )

    def training_paths(self) -> list[Path]:
        """What training reads: the finished episodes, oldest first, then the ones under way."""
        return self.episode_paths() + self.partial_paths()

    def is_partial(self, path: Path) -> bool:
        return Path(path).parent == self.partial_dir

    def seal_partial(self) -> int:
        """Turn every unfinished episode into a finished, cut one (trunc[-1] = True) under the same
        id, and drop stale partial files; returns how many were sealed. Only while no writer is
        live: a resumed `wmcli run` does it, since the game of a stored partial episode is gone."""
        sealed = 0
        for path in self.partial_paths():
            ep = self.read_episode(path)
            ep.attrs.pop("unfinished", None)
            if len(ep) > 0:
                ep.trunc[-1] = True
                self.writer().write(ep, episode_id=path.stem)
                sealed += 1
            path.unlink(missing_ok=True)
        if self.partial_dir.is_dir():
            for path in self.partial_dir.iterdir():  # stale files (their episode landed)
                if not path.name.startswith("."):
                    path.unlink(missing_ok=True)
        return sealed

    def clear(self) -> None:
        """Remove every episode, finished or not (a test store refilled at each evaluation)."""
        for folder in (self.episodes_dir, self.partial_dir):
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file():
                        path.unlink(missing_ok=True)

    def _open_h5(self, path: Path):
        if path.suffix != ".h5":
            raise _bad(path, "not an episode file (expected <id>.h5)")
        try:
            return h5py.File(path, "r", locking=False)
        except OSError as e:
            raise _bad(path, f"unreadable HDF5 ({e})") from None

    def _check(self, path: Path, f) -> int:
        """Validate an episode file's layout; return its step count T."""
        if f.attrs.get("format") != FORMAT:
            raise _bad(path, "not a wmcli episode (missing or foreign format attribute)")
        for k in ("obs", *STEP_KEYS):
            if k not in f:
                raise _bad(path, f"dataset '{k}' is missing")
        T = f["act"].shape[0]
        if any(f[k].shape != (T,) for k in STEP_KEYS):
            raise _bad(path, "step arrays differ in length")
        shape = tuple(self.env["frame_shape"])
        if f["obs"].shape != (T + 1, *shape):
            raise _bad(path, f"obs has shape {f['obs'].shape}, expected {(T + 1, *shape)}")
        return T

    def episode_length(self, path: Path) -> int:
        """Steps T of an episode file, from its attributes (0 for a file that cannot be read)."""
        try:
            with self._open_h5(path) as f:
                return int(f.attrs.get("length", 0))
        except (WmcliError, OSError):
            return 0

    def episode_attrs(self, path: Path) -> dict:
        """An episode file's attributes alone (no arrays read); {} for a file that cannot be read."""
        try:
            with self._open_h5(path) as f:
                return {k: _attr(v) for k, v in f.attrs.items()}
        except (WmcliError, OSError):
            return {}

    def read_episode(self, path: Path, frames: bool = True, max_steps: int | None = None) -> Episode:
        """One episode; frames=False skips the frames (obs is then empty) for fast summaries;
        max_steps: only its first steps (and their max_steps + 1 frames), read without the rest (attrs
        as recorded: `length` stays the whole episode's)."""
        with self._open_h5(path) as f:
            try:
                self._check(path, f)
                head = slice(None) if max_steps is None else slice(max_steps)
                steps = {k: f[k][head].astype(STEP_DTYPES[k]) for k in STEP_KEYS}
                frames_head = slice(None) if max_steps is None else slice(max_steps + 1)
                obs = f["obs"][frames_head] if frames else np.zeros((0, *self.env["frame_shape"]), np.uint8)
                attrs = {k: _attr(v) for k, v in f.attrs.items()}
            except OSError as e:  # truncated or corrupted chunks
                raise _bad(path, f"damaged data ({e})") from None
        return Episode(obs=obs, attrs=attrs, **steps)

    def iter_episodes(self, frames: bool = True, skip_bad: bool = False) -> Iterator[tuple[Path, Episode]]:
        for path in self.episode_paths():
            try:
                yield path, self.read_episode(path, frames=frames)
            except WmcliError:
                if not skip_bad:
                    raise

    def bad_files(self) -> list[tuple[Path, str]]:
        """Every file in the store that is not a readable episode, with the reason."""
        bad = []
        for path in self.episode_paths():
            try:
                with self._open_h5(path) as f:
                    self._check(path, f)
            except WmcliError as e:
                bad.append((path, str(e)))
        return bad

    # ---- the recorded held-out split (held-out.json, `wmcli store split`) -----------------

    def held_out(self) -> list[str] | None:
        """The episode file names recorded as held out, or None when the store records no split."""
        record = self.held_out_record()
        return None if record is None else record["held_out"]

    def held_out_record(self) -> dict | None:
        """held-out.json as recorded (format, fraction, seed, when, held_out: file names), or None."""
        path = self.path / HELD_OUT_NAME
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _bad_record(self.path, e.strerror or type(e).__name__) from None
        try:
            record = json.loads(text)
        except ValueError as e:
            raise _bad_record(self.path, f"not JSON: {e}") from None
        names = record.get("held_out") if isinstance(record, dict) else None
        if not isinstance(record, dict) or record.get("format") != HELD_OUT_FORMAT:
            raise _bad_record(self.path, f"not a {HELD_OUT_FORMAT} record")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad_record(self.path, "'held_out' is not a list of episode file names")
        return record

    def split(self, val_fraction: float) -> tuple[list[Path], list[Path]]:
        """Training and held-out finished episodes, oldest first: the recorded split when the store
        has one (val_fraction is then unused; episodes landed after it train), else `split_episodes`."""
        paths = self.episode_paths()
        held = self.held_out()
        if held is None:
            return split_episodes(paths, val_fraction)
        held = set(held)
        return [p for p in paths if p.name not in held], [p for p in paths if p.name in held]

    # ---- writing ---------------------------------------------------------------------------

    def writer(self, attrs: dict | None = None) -> EpisodeWriter:
        return EpisodeWriter(self, attrs or {})


def _bad_record(path: Path, why: str) -> WmcliError:
    return WmcliError(
        f"{path / HELD_OUT_NAME}: unreadable held-out record ({why}); draw the split again with "
        f"`wmcli store split {path} --held-out 0.1 --overwrite`, or drop it with `wmcli store split {path} --clear`"
    )


def env_differences(theirs: dict, ours: dict) -> list[str]:
    """The identity fields (ENV_IDENTITY) in which two envs (EnvSpec.to_dict()) differ: what must
    agree for episodes to share a store."""
    a = {k: json.loads(json.dumps(theirs.get(k))) for k in ENV_IDENTITY}
    b = {k: json.loads(json.dumps(ours.get(k))) for k in ENV_IDENTITY}
    return [k for k in ENV_IDENTITY if a[k] != b[k]]


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


class EpisodeWriter:
    """Writes episodes into a store, each one atomically. One per process; many may run at once."""

    def __init__(self, store: Store, attrs: dict):
        self.store = store
        self.attrs = attrs  # written on every episode (seed, policy, ...)
        self.token = os.urandom(4).hex()
        self.count = 0

    def new_id(self) -> str:
        """A fresh episode id, unique across writers: <writer token>-<count>."""
        self.count += 1
        return f"{self.token}-{self.count - 1:06d}"

    def write(self, ep: Episode, episode_id: str | None = None) -> Path:
        """Land a finished (or cut) episode in episodes/; then remove its partial file, if any."""
        episode_id = episode_id or self.new_id()
        path = self.store.episodes_dir / f"{time.time_ns():020d}-{episode_id}.h5"
        self._write_file(path, ep, {})
        (self.store.partial_dir / f"{episode_id}.h5").unlink(missing_ok=True)
        return path

    def write_partial(self, ep: Episode, episode_id: str) -> Path:
        """Write (or atomically replace) the episode under way with id `episode_id` in partial/."""
        self.store.partial_dir.mkdir(exist_ok=True)
        path = self.store.partial_dir / f"{episode_id}.h5"
        self._write_file(path, ep, {"unfinished": True})
        return path

    def _write_file(self, path: Path, ep: Episode, extra: dict) -> None:
        T = len(ep)
        shape = tuple(self.store.env["frame_shape"])
        assert ep.obs.shape == (T + 1, *shape) and ep.obs.dtype == np.uint8, ep.obs.shape
        attrs = {
            "format": FORMAT,
            "env": json.dumps(self.store.env),
            "wmcli_version": __version__,
            "length": T,
            "return": ep.ret,
            **self.attrs,
            **ep.attrs,
            **extra,
        }
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w", locking=False) as f:
                # 16-frame chunks, gzip level 1: random-play Breakout frames shrink 48x (docs/performance.md).
                f.create_dataset(
                    "obs", data=ep.obs, chunks=(min(16, T + 1), *shape), compression="gzip",
                    compression_opts=1, shuffle=False,
                )
                for k in STEP_KEYS:
                    f.create_dataset(k, data=getattr(ep, k).astype(STEP_DTYPES[k]))
                for k, v in attrs.items():
                    f.attrs[k] = v


def episode_id(path: Path) -> str:
    """The id of an episode file: <id>.h5 in partial/, <time>-<id>.h5 in episodes/."""
    stem = Path(path).stem
    return stem.split("-", 1)[1] if Path(path).parent.name == EPISODES_DIR and "-" in stem else stem


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
