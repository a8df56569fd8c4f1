"""Image-quality numbers shared by training, eval, imagine and fvd: PSNR, SSIM (Wang et al., 2004),
and the frame-to-frame changes behind the temporal-consistency score (docs/metrics.md)."""

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


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per sample (Wang et al., 2004) of frames (B, C, H, W) in [-1, 1].

    The textbook setting: intensities mapped to [0, 1] (L = 1), an 11x11 Gaussian window of
    std 1.5, K1 = 0.01, K2 = 0.03, each channel on its own, the map averaged over the positions
    where the window fits whole ('valid') and over channels. Identical frames give 1. Frames
    smaller than the window use a window the size of the frame."""
    x, y = (a.float() + 1) / 2, (b.float() + 1) / 2  # (B, C, H, W) in [0, 1]
    B, C, H, W = x.shape
    k = min(window, H, W)
    r = torch.arange(k, dtype=torch.float32, device=x.device) - (k - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    g_rows, g_cols = g.view(1, 1, k, 1).expand(C, 1, k, 1), g.view(1, 1, 1, k).expand(C, 1, 1, k)

    def local_mean(z: Tensor) -> Tensor:  # the 2-D Gaussian as two 1-D passes: (B, C, H-k+1, W-k+1)
        z = torch.nn.functional.conv2d(z, g_rows, groups=C)
        return torch.nn.functional.conv2d(z, g_cols, groups=C)

    # Local moments of the signals less their frame means: the same variances, with far less
    # float32 cancellation in E[x^2] - E[x]^2.
    m_x, m_y = x.mean(dim=(2, 3), keepdim=True), y.mean(dim=(2, 3), keepdim=True)
    xc, yc = x - m_x, y - m_y
    mu_xc, mu_yc = local_mean(xc), local_mean(yc)
    var_x = local_mean(xc * xc) - mu_xc**2
    var_y = local_mean(yc * yc) - mu_yc**2
    cov = local_mean(xc * yc) - mu_xc * mu_yc
    mu_x, mu_y = mu_xc + m_x, mu_yc + m_y
    c1, c2 = 0.01**2, 0.03**2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    return (luminance * contrast_structure).flatten(1).mean(dim=1)


def frame_changes(frames: Tensor) -> Tensor:
    """Consecutive differences of a video (T, C, H, W) -> (T - 1, C, H, W)."""
    return frames[1:].float() - frames[:-1].float()


def change_errors(real: Tensor, generated: Tensor) -> Tensor:
    """Per transition (T - 1,): the MSE between how the generated video changes from one frame
    to the next and how the real one does. Pooled into a PSNR, this is the temporal-consistency
    score of docs/metrics.md (data range 2, as frame PSNR)."""
    return (frame_changes(generated) - frame_changes(real)).pow(2).flatten(1).mean(dim=1)


def motion(frames: Tensor) -> Tensor:
    """Per transition (T - 1,): the mean absolute change between consecutive frames in [-1, 1]."""
    return frame_changes(frames).abs().flatten(1).mean(dim=1)
