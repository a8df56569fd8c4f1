"""The one place where frames change representation: uint8 (..., H, W, 3) <-> float (..., 3, H, W) in [-1, 1]."""

from __future__ import annotations

import torch
from torch import Tensor


def to_float(frames: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float().div_(127.5).sub_(1.0)


def to_uint8(frames: Tensor) -> Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3), rounding to the nearest level."""
    return ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)
