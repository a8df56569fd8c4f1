"""`wmcli store import`: recorded trajectories of other programs into a wmcli store, episode by episode.

Formats (one module each; docs/data.md has an example of every one):

    diamond   DIAMOND's dataset folders (one torch.save file per episode)
    csgo      the CS:GO deathmatch dataset's HDF5 files (DIAMOND's CS:GO world model's data)
    minari    local Minari datasets with image observations (the `minari` extra)
    arrays    one .npz or .h5 file per episode with obs, act, rew, end [, trunc, life_loss]
    videos    a folder of videos with an actions.csv

Each episode lands atomically through the store's writer, so a kill keeps every finished
episode; each records where it came from (`source`, `source_format`, `source_key`,
`source_frame_shape`), so running the same import again skips what is there and `wmcli store
info` counts episodes per source. Frames are resized by area averaging to the store's size (an
existing store's, or --frame-size), as the collector resizes the screen; the source's own size
is kept in each episode's attributes.

What the store is made for: with --game, a real game (its action set, its protocol: the store
takes `wmcli collect` episodes of that game too, and agents trained on it play that game); without,
an imported game named after the source (or --name) with the source's action set, which wmcli
trains world models and agents on but cannot play for real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Every, Progress
from wmcli.base.signals import stop_on_sigint
from wmcli.data.env import area_weights, make_spec
from wmcli.data.importers.arrays import SUFFIXES as ARRAY_SUFFIXES
from wmcli.data.importers.arrays import ArraySource
from wmcli.data.importers.csgo import CsgoSource
from wmcli.data.importers.diamond import DiamondSource
from wmcli.data.importers.minari_datasets import MinariSource, data_path
from wmcli.data.importers.source import Source, SourceEpisode
from wmcli.data.importers.videos import ACTIONS_FILE, VideoSource
from wmcli.data.store import Episode, Store
from wmcli.data.store_summary import summarize

FORMATS: dict[str, type[Source]] = {
    "diamond": DiamondSource, "csgo": CsgoSource, "minari": MinariSource, "arrays": ArraySource, "videos": VideoSource,
}
IMPORTED_KIND = "imported"
"""The env kind of a store made from a source without --game: no emulator behind it."""


def detect_format(src: Path | str) -> str:
    """The format of `src` from what is in it, or one error listing the formats."""
    path = Path(src)
    if data_path(src) is not None:
        return "minari"
    if path.is_dir() and (path / ACTIONS_FILE).is_file():
        return "videos"
    files = [path] if path.is_file() else ([p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [])
    if not path.exists():
        raise WmcliError(f"{src} not found (nor a local Minari dataset of that id); pass a folder or file to import")
    suffixes = {p.suffix for p in files}
    if ".pt" in suffixes:
        return "diamond"
    if any(p.name.startswith("hdf5_dm") for p in files):
        return "csgo"
    if suffixes & set(ARRAY_SUFFIXES):
        return "arrays"
    raise WmcliError(f"cannot tell the format of {src}; pass --format ({', '.join(FORMATS)}; docs/data.md)")


def open_source(src: Path | str, fmt: str | None = None) -> Source:
    fmt = fmt or detect_format(src)
    if fmt not in FORMATS:
        raise WmcliError(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[fmt](src)


def imported_env(name: str, num_actions: int, meanings: tuple[str, ...] | None, frame_size: int, fmt: str) -> dict:
    """The env record of a store with no real game behind it (EnvSpec.to_dict()'s layout)."""
    return {
        "kind": IMPORTED_KIND, "name": name, "rom": "", "num_actions": int(num_actions),
        "action_meanings": list(meanings) if meanings else [f"ACTION_{i}" for i in range(num_actions)],
        "frame_shape": [frame_size, frame_size, 3],
        "protocol": {"frame_size": frame_size, "source_format": fmt, "resize": "area"},
    }


def resize(obs: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 frames to (T, h, w, 3) by area averaging: the collector's resize (`AreaResize`),
    as two matrix products per frame and channel (for CS:GO's 150x280 frames, 2.5x faster than one
    einsum over the batch: docs/performance.md)."""
    if obs.shape[1:3] == tuple(hw):
        return obs
    wy = torch.from_numpy(area_weights(obs.shape[1], hw[0]))
    wx = torch.from_numpy(area_weights(obs.shape[2], hw[1])).T.contiguous()
    out = np.empty((len(obs), *hw, 3), np.uint8)
    for i in range(0, len(obs), 128):  # ~50 MB of float32 at a time
        x = torch.from_numpy(obs[i : i + 128]).permute(0, 3, 1, 2).float()  # (t, 3, H, W)
        y = torch.matmul(torch.matmul(wy, x), wx)  # (t, 3, h, w)
        out[i : i + 128] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def _target_env(source: Source, store_path: Path, game: str | None, name: str | None, frame_size: int | None,
                num_actions: int | None) -> dict:
    """The env a store made from `source` records (or the existing store's)."""
    if Store.exists(store_path):
        env = Store.open(store_path).env
        if frame_size is not None and frame_size != env["frame_shape"][0]:
            raise WmcliError(f"store {store_path} holds {env['frame_shape'][0]}x{env['frame_shape'][1]} frames; drop "
                             f"--frame-size {frame_size} (frames are resized to the store's) or import into another --store")
        return env
    if frame_size is None:  # the source's own size: its first episode says (read again when imported)
        if not source.keys():
            raise WmcliError(f"{source.path} holds no episodes")
        H, W = source.read(source.keys()[0]).obs.shape[1:3]
        if H != W:
            raise WmcliError(f"{source.path} has {H}x{W} frames and wmcli's models take square ones; pass "
                             f"--frame-size (64 is DIAMOND's) to resize them")
        frame_size = H
    if game is not None:
        if source.action_meanings is not None:
            raise WmcliError(f"--game does not apply to {source.format} data, whose actions are its own "
                             f"({len(source.action_meanings)} of them); drop --game (or use --name)")
        return make_spec(EnvConfig(game=game, frame_size=frame_size)).to_dict()
    n = num_actions if num_actions is not None else source.num_actions()
    if n < 1:
        raise WmcliError(f"{source.path} holds no actions; pass --num-actions")
    return imported_env(name or source.default_name(), n, source.action_meanings, frame_size, source.format)


def landed_keys(store: Store, source_id: str) -> set[str]:
    """The source keys of `store`'s episodes imported from `source_id` (read from their attributes)."""
    done = set()
    for path in store.episode_paths():
        attrs = store.episode_attrs(path)
        if attrs.get("source") == source_id and "source_key" in attrs:
            done.add(attrs["source_key"])
    return done


def import_episodes(src: Path | str, store_path: Path | str, fmt: str | None = None, game: str | None = None,
                    name: str | None = None, frame_size: int | None = None, num_actions: int | None = None,
                    limit: int | None = None, on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Import the episodes of `src` into the store at `store_path` (created when needed); returns a
    summary (episodes imported and skipped, frames, frames/s, the store's summary). `limit`: at
    most this many new episodes. Ctrl-C stops after the episode being written (`interrupted`)."""
    store_path = Path(store_path)
    source = open_source(src, fmt)
    env = _target_env(source, store_path, game, name, frame_size, num_actions)
    store = Store.create_or_open(store_path, env)
    n_actions, shape = int(env["num_actions"]), tuple(env["frame_shape"])
    source_id = f"{source.format}:{Path(source.path).resolve()}"
    done = landed_keys(store, source_id)
    writer = store.writer({"source": source_id, "source_format": source.format})
    keys = source.keys()
    todo = [k for k in keys if k not in done][: limit if limit is not None else None]
    t0, frames, imported, every, interrupted = time.perf_counter(), 0, 0, Every(), False
    with stop_on_sigint() as stop:
        for key in todo:
            ep = source.read(key)
            _check_actions(ep, n_actions, source, key, store_path)
            writer.write(_to_store(ep, shape, key))
            imported += 1
            frames += len(ep.obs)
            if on_progress and every():
                on_progress(Progress(f"import {source.format}", imported, len(todo), "episodes",
                                     {"frames/s": frames / max(time.perf_counter() - t0, 1e-9)},
                                     seconds=time.perf_counter() - t0))
            if stop.is_set():
                interrupted = True
                break
    seconds = time.perf_counter() - t0
    if on_progress and todo:
        on_progress(Progress(f"import {source.format}", imported, len(todo), "episodes",
                             {"frames/s": frames / max(seconds, 1e-9)}, seconds=seconds))
    return {
        "source": str(src), "format": source.format, "store": str(store_path), "game": env["name"],
        "episodes_in_source": len(keys), "episodes_imported": imported, "episodes_skipped": len(keys) - len(todo),
        "frames_imported": frames, "seconds": seconds, "frames_per_s": frames / seconds if seconds > 0 else None,
        "interrupted": interrupted, "store_summary": summarize(store),
    }


def _check_actions(ep: SourceEpisode, n_actions: int, source: Source, key: str, store_path: Path) -> None:
    if len(ep) and int(ep.act.max()) >= n_actions:
        raise WmcliError(f"{source.path / key if source.format != 'minari' else key}: action {int(ep.act.max())} is "
                         f"outside the store's {n_actions} actions ({store_path}); import into another --store, "
                         f"or pass --num-actions for a new one")


def _to_store(ep: SourceEpisode, shape: tuple[int, int, int], key: str) -> Episode:
    source_shape = list(ep.obs.shape[1:])
    obs = resize(ep.obs, shape[:2])
    attrs = {**ep.attrs, "source_key": key, "source_frame_shape": json.dumps(source_shape), "policy": "recorded"}
    return Episode(obs=obs, act=ep.act, rew=ep.rew, end=ep.end, life_loss=ep.life_loss, trunc=ep.trunc, attrs=attrs)
