"""Frames to files people can watch: mp4, gif, png strips and grids, and y4m streams for pipes.

All functions take uint8 frames (..., H, W, 3). Frames are upscaled by nearest neighbour
(`scale`), so 64x64 Atari pixels stay sharp. `side_by_side` and `grid_of` lay rollouts out in
one frame (`wmcli imagine --compare`, `--batch`); `write_grid` writes rows x columns of frames
as one png; `video_writer` writes frames one at a time (`wmcli store preview`), `text_band` is
a caption strip to set under a frame; `read_video` (wmcli.data.video_files) reads mp4/gif back (for `wmcli fvd`). The y4m stream (`Y4MWriter`) is
uncompressed YUV 4:4:4 that ffmpeg and most players read from a pipe:
`wmcli imagine ... -o - | ffmpeg -i - out.mp4`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wmcli.base.atomic import atomic_path
from wmcli.base.errors import WmcliError
from wmcli.data.video_files import read_video  # noqa: F401 - videos are read back here too (wmcli fvd)

VIDEO_SUFFIXES = (".mp4", ".gif", ".png")


SHOWN_SIZE = 256
"""Frames are upscaled to about this many pixels a side by default: 64x64 Atari frames 4x, MinAtar's 10x10 26x."""


BAND_HEIGHT = 14
"""Pixels of a caption strip (`text_band`): one line of PIL's default font."""


def default_scale(frame_size: int) -> int:
    """The nearest-neighbour factor that shows a frame_size x frame_size frame at about SHOWN_SIZE pixels."""
    return max(1, round(SHOWN_SIZE / frame_size))


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, 3) by an integer factor."""
    if scale == 1:
        return frames
    # Each pixel's C values repeated as one item (a C-byte void) is ~3x faster than repeating along
    # W of (..., W, C), where numpy copies C bytes at a time with strides.
    frames = np.ascontiguousarray(frames)
    C = frames.shape[-1]
    pixels = frames.view(np.dtype((np.void, C * frames.itemsize)))[..., 0]  # (..., H, W)
    out = pixels.repeat(scale, axis=-1).repeat(scale, axis=-2)  # (..., sH, sW)
    return out.view(frames.dtype).reshape(*out.shape, C)


def tile(frames: np.ndarray, cols: int | None = None, gap: int = 1) -> np.ndarray:
    """(N, ..., H, W, 3) -> (..., rows*H, cols*W, 3): N images side by side in a grid, with
    `gap` black pixels between them."""
    N = frames.shape[0]
    cols = cols or math.ceil(math.sqrt(N))
    rows = math.ceil(N / cols)
    *lead, H, W, C = frames.shape[1:]
    out = np.zeros((*lead, rows * (H + gap) - gap, cols * (W + gap) - gap, C), dtype=frames.dtype)
    for i in range(N):
        r, c = divmod(i, cols)
        out[..., r * (H + gap) : r * (H + gap) + H, c * (W + gap) : c * (W + gap) + W, :] = frames[i]
    return out


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) twice -> (..., H, 2W + 1, 3): left | right, one black column between."""
    return tile(np.stack([left, right]), cols=2)


def grid_of(frames: np.ndarray) -> np.ndarray:
    """B rollouts (B, ..., H, W, 3) -> (..., H', W', 3): in a grid of ceil(sqrt(B)) columns."""
    return tile(frames, cols=math.ceil(math.sqrt(len(frames))))


def write_frames(path: str | Path, frames: np.ndarray, fps: float = 15.0, scale: int | None = None) -> Path:
    """Write (T, H, W, 3) uint8 frames by extension: .mp4 (H.264), .gif, or .png (one strip, time left
    to right), upscaled by `scale` (None: default_scale of the frames' height)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise WmcliError(f"cannot write {path}: use one of {', '.join(VIDEO_SUFFIXES)} (or - for a y4m stream)")
    if len(frames) == 0:
        raise WmcliError(f"cannot write {path}: no frames")
    frames = np.asarray(frames, dtype=np.uint8)
    frames = upscale(frames, default_scale(frames.shape[1]) if scale is None else scale)
    with atomic_path(path) as tmp:  # the temporary name keeps the suffix imageio goes by
        if suffix == ".png":
            iio.imwrite(tmp, tile(frames, cols=len(frames)))
        elif suffix == ".gif":
            iio.imwrite(tmp, frames, duration=1000 / fps, loop=0)
        else:
            iio.imwrite(tmp, frames, fps=fps, **_mp4_options(*frames.shape[1:3]))
    return path


def _mp4_options(height: int, width: int) -> dict:
    """imageio-ffmpeg's settings for an H.264 file of height x width frames."""
    # Players want yuv420p, which needs an even width and height; otherwise yuv444p (the
    # [real | dream] panels of imagine --compare are 2W + 1 wide). macro_block_size=1 keeps
    # our exact size.
    odd = height % 2 or width % 2
    return {"codec": "libx264", "macro_block_size": 1, "pixelformat": "yuv444p" if odd else "yuv420p"}


@contextlib.contextmanager
def video_writer(path: str | Path, fps: float = 15.0) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield `write(frame)` for (H, W, 3) uint8 frames of one size, already upscaled, going to an
    .mp4 (streamed to the encoder: memory stays one frame) or a .gif (kept until the end: long
    gifs take memory). The file appears whole when the block ends, or not at all."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise WmcliError(f"cannot write the video {path}: use .mp4 or .gif")
    with atomic_path(path) as tmp:
        encoder, kept = None, []

        def write(frame: np.ndarray) -> None:
            nonlocal encoder
            if suffix == ".gif":
                kept.append(np.array(frame))  # a copy: the caller may reuse its array
                return
            if encoder is None:
                encoder = iio2.get_writer(tmp, format="FFMPEG", fps=fps, **_mp4_options(*frame.shape[:2]))
            encoder.append_data(frame)

        try:
            yield write
        finally:
            if encoder is not None:
                encoder.close()
        if suffix == ".gif" and kept:
            iio.imwrite(tmp, np.stack(kept), duration=1000 / fps, loop=0)
        if encoder is None and not kept:
            raise WmcliError(f"cannot write {path}: no frames")


@functools.lru_cache(maxsize=256)
def text_band(width: int, text: str, height: int = BAND_HEIGHT, background: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """A (height, width, 3) strip (black by default) with `text` in white at its left: a caption to
    put beside a frame (under it, so that no pixel of the game is hidden). Read-only: the same
    caption is drawn once (a finished episode held in a grid repeats its own)."""
    band = Image.new("RGB", (width, height), background)
    ImageDraw.Draw(band).text((3, height // 2), text, fill=(255, 255, 255), font=_font(), anchor="lm")
    out = np.array(band)
    out.flags.writeable = False
    return out


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def write_grid(path: str | Path, frames: np.ndarray, scale: int = 4, gap: int = 1, row_labels: list[str] | None = None,
               column_groups: list[tuple[int, str]] | None = None) -> Path:
    """Write (R, C, H, W, 3) uint8 frames as one png of R rows and C columns, `gap` black pixels
    (before upscaling) between them. row_labels: a word left of each row; column_groups: (count,
    word) pairs labelling consecutive columns above the grid, with a rule under each word."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise WmcliError(f"cannot write the grid {path}: use a .png file")
    R, C = frames.shape[:2]
    grid = tile(np.asarray(frames, dtype=np.uint8).reshape(R * C, *frames.shape[2:]), cols=C, gap=gap)
    image = upscale(grid, scale)
    if row_labels or column_groups:
        H, W = frames.shape[2:4]
        image = _labelled(image, (H + gap) * scale, (W + gap) * scale, row_labels or [], column_groups or [])
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image)
    return path


def _labelled(image: np.ndarray, row_px: int, col_px: int, row_labels: list[str],
              column_groups: list[tuple[int, str]]) -> np.ndarray:
    """The grid image with a margin of words: row labels on the left, column groups on top."""
    font = ImageFont.load_default()
    left = 8 + max((int(font.getlength(t)) for t in row_labels), default=0) if row_labels else 0
    top = 18 if column_groups else 0
    h, w = image.shape[:2]
    canvas = Image.new("RGB", (w + left, h + top))
    canvas.paste(Image.fromarray(image), (left, top))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(row_labels):
        draw.text((4, top + i * row_px + row_px // 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    x = left
    for count, text in column_groups:
        span = count * col_px
        draw.line([(x + 1, top - 3), (x + span - 3, top - 3)], fill=(200, 200, 200), width=1)
        draw.text((x + 2, 2), text, fill=(255, 255, 255), font=font)
        x += span
    return np.asarray(canvas)


def rgb_to_yuv444(frame: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> planar Y, U, V bytes (BT.601, full range, as y4m's C444 with XCOLORRANGE=FULL)."""
    f = frame.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 128 + (-0.168736 * r - 0.331264 * g + 0.5 * b)
    v = 128 + (0.5 * r - 0.418688 * g - 0.081312 * b)
    return np.clip(np.rint(np.stack([y, u, v])), 0, 255).astype(np.uint8).tobytes()


class Y4MWriter:
    """Streams frames as YUV4MPEG2 (4:4:4, full range) to a binary stream, one frame at a time."""

    def __init__(self, stream: BinaryIO, width: int, height: int, fps: int = 15):
        self.stream = stream
        self.shape = (height, width)
        stream.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C444 XCOLORRANGE=FULL\n".encode())

    def write(self, frame: np.ndarray) -> None:
        assert frame.shape[:2] == self.shape, (frame.shape, self.shape)
        self.stream.write(b"FRAME\n" + rgb_to_yuv444(frame))
        self.stream.flush()


def read_y4m(data: bytes) -> np.ndarray:
    """Parse a 4:4:4 y4m byte string back into (T, 3, H, W) uint8 Y, U, V planes (for tests and tools)."""
    header, _, rest = data.partition(b"\n")
    fields = dict((f[:1].decode(), f[1:].decode()) for f in header.split()[1:])
    W, H = int(fields["W"]), int(fields["H"])
    size = 3 * H * W
    frames = []
    while rest:
        assert rest.startswith(b"FRAME"), rest[:10]
        rest = rest.partition(b"\n")[2]
        frames.append(np.frombuffer(rest[:size], dtype=np.uint8).reshape(3, H, W))
        rest = rest[size:]
    return np.stack(frames) if frames else np.zeros((0, 3, H, W), np.uint8)
