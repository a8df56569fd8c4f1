"""Image-quality numbers shared by training, eval and imagine."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per sample (dB) of frames (B, ...) in a range of width data_range
    ([-1, 1] frames: 2). Identical frames give +inf."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse)


def psnr_of_mse(mse: float, data_range: float = 2.0) -> float:
    """PSNR (dB) of a mean squared error, e.g. pooled over many frames. Pooling the MSE first
    keeps exact frames (a copied static frame) from making the average infinite."""
    return 10 * math.log10(data_range**2 / mse) if mse > 0 else float("inf")
