"""Video files read back as frames: every frame of an .mp4, .gif (or any format imageio's ffmpeg
plugin reads) as (T, H, W, 3) uint8 RGB, or one clear error. Used by `wmcli store import` (videos
with an actions file), `wmcli fvd` and the tests of `play`'s recordings."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from wmcli.base.errors import WmcliError


def read_video(path: str | Path) -> np.ndarray:
    """Every frame of a video file (.mp4, .gif, ...) as (T, H, W, 3) uint8 RGB."""
    path = Path(path)
    try:
        frames = iio.imread(path, index=None)
    except Exception as e:  # noqa: BLE001 - imageio's plugins raise many kinds for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WmcliError(f"cannot read the video {path} ({first[:160]})") from None
    frames = np.asarray(frames)
    if frames.ndim == 3:  # one frame, or grey frames (T, H, W)
        frames = frames[None] if frames.shape[-1] in (3, 4) else frames[..., None]
    if frames.shape[-1] == 1:
        frames = frames.repeat(3, axis=-1)
    return np.ascontiguousarray(frames[..., :3].astype(np.uint8))
