"""`wmcli store preview`: a store's episodes as a video, to look at data before training on it.

Episodes are picked by index in the store's order (`wmcli.data.shaping.pick_episodes`) and only
those are read, each only up to `max_steps`. Under every episode's frame a caption strip shows
the episode's index, the step and the return so far ("ep 3  t 120  R 4"; under, not over
the frame: the game's score and paddle rows stay visible). Two layouts:

    grid      the episodes play side by side; one that is over holds its last frame, marked
              "done" (game over), "cut" (truncated) or "capped" (stopped at max_steps)
    sequence  one after another, each to its last frame

Frames go to the encoder one at a time (`video.video_writer`): memory is the episodes read and
one output frame, and the file appears whole or not at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wmcli.base.atomic import check_writable
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Every, Progress
from wmcli.data.shaping import pick_episodes
from wmcli.data.store import Episode, Store
from wmcli.outputs.video import BAND_HEIGHT, SHOWN_SIZE, default_scale, text_band, tile, upscale, video_writer

LAYOUTS = ("grid", "sequence")
CAPTION_COLOUR = (48, 48, 48)
"""The caption's background: dark grey, apart from the black of most games (MinAtar's, Atari's borders)."""
ENDING_COLOURS = {"done": (140, 0, 0), "cut": (110, 90, 0), "capped": (0, 60, 130)}
"""The caption's background on an episode's last frame: game over red, cut ochre, capped by max_steps blue."""
DEFAULT_EPISODES = 4
"""Without --episodes: the first 4 episodes of the store (fewer when it has fewer), in either layout."""


@dataclass
class PreviewConfig:
    """What `wmcli store preview` shows and how."""

    episodes: str | None = None
    """Indices and ranges in the store's order, e.g. 0,3,5-8 (-1: the newest); None: the first DEFAULT_EPISODES."""
    layout: str = "grid"
    """grid (side by side) or sequence (one after another)."""
    fps: float = 15.0
    """Frames per second of the video (15: real time at frame skip 4)."""
    scale: int | None = None
    """Nearest-neighbour upscaling; None: about SHOWN_SIZE px a frame, smaller tiles in a grid of more than 4."""
    max_steps: int = 1000
    """Steps shown of each episode, from its start (the rest is not read)."""

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise WmcliError(f"--layout {self.layout!r}: use grid or sequence")
        if self.max_steps < 1 or self.fps <= 0 or (self.scale is not None and self.scale < 1):
            raise WmcliError("--max-steps and --scale must be 1 or more, --fps above 0")


def preview_store(store_path: str | Path, output: str | Path, cfg: PreviewConfig | None = None,
                  on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Write the chosen episodes of a store to `output` (.mp4 or .gif) with their captions."""
    cfg = cfg or PreviewConfig()
    t0 = time.perf_counter()
    output = Path(output)
    if output.suffix.lower() not in (".mp4", ".gif"):
        raise WmcliError(f"cannot write {output}: a preview is a video, use .mp4 or .gif")
    check_writable(output)
    store = Store.open(store_path)
    paths = store.episode_paths()
    if not paths:
        raise WmcliError(f"store {store.path} has no finished episodes to show")
    index = (pick_episodes(cfg.episodes, len(paths)) if cfg.episodes is not None
             else list(range(min(DEFAULT_EPISODES, len(paths)))))
    eps = [store.read_episode(paths[i], max_steps=cfg.max_steps) for i in index]
    capped = [i for i, ep in zip(index, eps) if int(ep.attrs.get("length", len(ep))) > len(ep)]
    H, W = store.env["frame_shape"][:2]
    cols = math.ceil(math.sqrt(len(eps))) if cfg.layout == "grid" else 1
    scale = cfg.scale or min(default_scale(H), max(1, round(2 * SHOWN_SIZE / (cols * W))))

    ends = [_ending(ep, i in capped) for i, ep in zip(index, eps)]
    returns = [np.concatenate([[0.0], np.cumsum(ep.rew, dtype=np.float64)]) for ep in eps]  # (T+1,): before each frame
    total = max(len(ep.obs) for ep in eps) if cfg.layout == "grid" else sum(len(ep.obs) for ep in eps)
    every, written = Every(0.5), 0
    with video_writer(output, fps=cfg.fps) as write:
        if cfg.layout == "grid":
            for t in range(total):  # every episode at frame t, or held at its last
                tiles = np.stack([_captioned(ep, min(t, len(ep.obs) - 1), i, r, end, scale)
                                  for ep, i, r, end in zip(eps, index, returns, ends)])  # (N, h, w, 3)
                write(tile(tiles, cols=cols, gap=scale))
                written += 1
                _report(on_progress, every, written, total, t0)
        else:
            for ep, i, r, end in zip(eps, index, returns, ends):
                for t in range(len(ep.obs)):
                    write(_captioned(ep, t, i, r, end, scale))
                    written += 1
                    _report(on_progress, every, written, total, t0)
    size = _frame_size(len(eps), cols, H, W, scale, cfg.layout)
    return {"store": str(store.path), "output": str(output), "game": store.env["name"], "layout": cfg.layout,
            "episodes": index, "episode_files": [paths[i].name for i in index], "steps_shown": [len(ep) for ep in eps],
            "capped": capped, "frames": written, "fps": cfg.fps, "seconds_of_video": written / cfg.fps,
            "scale": scale, "size": size, "seconds": time.perf_counter() - t0}


def _ending(ep: Episode, capped: bool) -> str:
    """The mark of an episode's last frame shown: why it stops there."""
    if capped:
        return "capped"
    return "done" if ep.complete else "cut"


def _captioned(ep: Episode, t: int, index: int, returns: np.ndarray, ending: str, scale: int) -> np.ndarray:
    """Frame t of an episode, upscaled, over its caption: (scale*H + BAND_HEIGHT, scale*W, 3)."""
    frame = upscale(ep.obs[t], scale)  # (sH, sW, 3)
    # The default font's space is 2 px: two within a pair, four between pairs, read as one and two.
    text = f"ep  {index}    t  {t}    R  {returns[t]:g}"
    if t < len(ep.obs) - 1:
        return np.concatenate([frame, text_band(frame.shape[1], text, background=CAPTION_COLOUR)])
    return np.concatenate([frame, text_band(frame.shape[1], f"{text}    {ending}", background=ENDING_COLOURS[ending])])


def _frame_size(n: int, cols: int, H: int, W: int, scale: int, layout: str) -> list[int]:
    """[height, width] of the video's frames."""
    tile_h, tile_w = scale * H + BAND_HEIGHT, scale * W
    if layout == "sequence":
        return [tile_h, tile_w]
    rows = math.ceil(n / cols)
    return [rows * (tile_h + scale) - scale, cols * (tile_w + scale) - scale]


def _report(on_progress, every: Every, done: int, total: int, t0: float) -> None:
    if on_progress is not None and (every() or done == total):
        on_progress(Progress("preview", done, total, "frames", seconds=time.perf_counter() - t0))
