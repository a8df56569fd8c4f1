"""Frames to mp4/gif/png/y4m, and the PSNR helpers."""

from __future__ import annotations

import io
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from wmcli.base.errors import WmcliError
from wmcli.base.metrics import psnr, psnr_of_mse
from wmcli.outputs.video import Y4MWriter, read_y4m, rgb_to_yuv444, tile, upscale, write_frames


def frames(T=6, H=16, W=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)


def test_psnr_identical_is_inf_and_known_noise_is_textbook():
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    assert torch.isinf(psnr(x, x)).all()
    # A constant error of 0.02 on a range of 2: PSNR = 10 log10(4 / 0.0004) = 40 dB.
    assert psnr(x, x + 0.02) == pytest.approx(torch.full((4,), 40.0), abs=1e-3)
    # Gaussian noise of std s: MSE ~ s^2, PSNR ~ 20 log10(2 / s).
    s = 0.1
    noisy = x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert psnr(x, noisy).mean().item() == pytest.approx(20 * math.log10(2 / s), abs=0.3)
    assert psnr_of_mse(0.0) == math.inf and psnr_of_mse(4e-4) == pytest.approx(40.0)


def test_upscale_and_tile():
    f = frames(T=2, H=2, W=3)
    up = upscale(f, 3)
    assert up.shape == (2, 6, 9, 3) and (up[:, ::3, ::3] == f).all()
    grid = tile(np.stack([f, f, f]), cols=2, gap=1)  # 3 clips of (2, 2, 3, 3) in a 2x2 grid
    assert grid.shape == (2, 2 * 2 + 1, 2 * 3 + 1, 3)
    assert (grid[:, :2, :3] == f).all() and (grid[:, 3:, :3] == f).all() and (grid[:, 3:, 4:] == 0).all()


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_videos_have_the_frames_at_the_size(tmp_path, suffix):
    f = frames(T=7)
    path = write_frames(tmp_path / f"v{suffix}", f, fps=10, scale=4)
    back = iio.imread(path)
    assert back.shape[0] == 7 and back.shape[1:3] == (64, 64)


def test_png_strip(tmp_path):
    path = write_frames(tmp_path / "s.png", frames(T=5), scale=2)
    img = iio.imread(path)
    assert img.shape == (32, 5 * 32 + 4, 3)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, suffix):
    path = write_frames(tmp_path / f"v{suffix}", frames(T=3), scale=1)
    before = path.read_bytes()
    with pytest.raises((ValueError, TypeError)):  # ffmpeg and Pillow refuse 7-channel frames
        write_frames(path, np.zeros((3, 16, 16, 7), np.uint8), scale=1)
    with pytest.raises(WmcliError, match="no frames"):
        write_frames(path, np.zeros((0, 16, 16, 3), np.uint8), scale=1)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_unknown_suffix(tmp_path):
    with pytest.raises(WmcliError, match="mp4"):
        write_frames(tmp_path / "x.avi", frames())


def test_y4m_stream_round_trip():
    f = frames(T=3, H=8, W=10)
    buf = io.BytesIO()
    w = Y4MWriter(buf, width=10, height=8, fps=15)
    for x in f:
        w.write(x)
    data = buf.getvalue()
    assert data.startswith(b"YUV4MPEG2 W10 H8 F15:1")
    planes = read_y4m(data)
    assert planes.shape == (3, 3, 8, 10)
    assert planes[1].tobytes() == rgb_to_yuv444(f[1])
    # White is Y=255, U=V=128; black is Y=0.
    white = np.full((1, 1, 3), 255, np.uint8)
    assert list(rgb_to_yuv444(white)) == [255, 128, 128]
