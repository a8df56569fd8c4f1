"""Network blocks and the denoiser's U-Net, after DIAMOND's (Alonso et al., 2024, Appendix).

The conditioning vector `cond` (noise level + action history) enters every residual block
through adaptive group norm: x * (1 + scale) + shift, with scale and shift read off `cond`.
The output convolutions of every block, of attention and of the network are zero-initialised,
so a fresh model predicts zero and each block starts as the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcli.base.config import UNetConfig


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _groups(c: int) -> int:
    return max(1, c // 32)


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar (the noise level): [cos(2 pi w x), sin(2 pi w x)]."""

    def __init__(self, dim: int):
        super().__init__()
        assert dim % 2 == 0
        self.register_buffer("weight", torch.randn(1, dim // 2))

    def forward(self, x: Tensor) -> Tensor:  # (B,) -> (B, dim)
        f = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


class AdaGroupNorm(nn.Module):
    """Group norm without affine parameters, then a scale and shift read off the conditioning."""

    def __init__(self, channels: int, cond_channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, affine=False)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return torch.addcmul(shift, self.norm(x), 1 + scale)  # one pass instead of two


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions (scaled dot product, fused by SDPA)."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).view(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # (B, heads, HW, d) each
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        y = y.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.out(y)


class ResBlock(nn.Module):
    """Pre-activation residual block with adaptive group norm, optionally followed by attention."""

    def __init__(self, in_c: int, out_c: int, cond_c: int, attn: bool, head_dim: int):
        super().__init__()
        self.norm1 = AdaGroupNorm(in_c, cond_c)
        self.conv1 = nn.Conv2d(in_c, out_c, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_c, cond_c)
        self.conv2 = _zero(nn.Conv2d(out_c, out_c, 3, padding=1))
        self.skip = nn.Conv2d(in_c, out_c, 1) if in_c != out_c else nn.Identity()
        self.attn = SelfAttention(out_c, head_dim) if attn else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.attn(self.skip(x) + h)


class UNet(nn.Module):
    """U-Net over (B, in_channels, H, W) -> (B, out_channels, H, W), conditioned on (B, cond).

    H and W must be divisible by 2 ** (levels - 1). Skips: the stem's output and every block's
    and downsampler's output on the way down feed one block each on the way up.
    """

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.cfg = cfg
        ch, cc, hd = cfg.channels, cfg.cond_channels, cfg.attn_head_dim
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)

        self.down = nn.ModuleList()
        skip_c = [ch[0]]
        c = ch[0]
        for i, (out_c, depth, attn) in enumerate(zip(ch, cfg.depths, cfg.attn_depths)):
            level = nn.ModuleList()
            for _ in range(depth):
                level.append(ResBlock(c, out_c, cc, attn, hd))
                c = out_c
                skip_c.append(c)
            if i < len(ch) - 1:
                level.append(nn.Conv2d(c, c, 3, stride=2, padding=1))  # downsample
                skip_c.append(c)
            self.down.append(level)

        self.mid = nn.ModuleList([ResBlock(c, c, cc, True, hd), ResBlock(c, c, cc, True, hd)])

        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            level = nn.ModuleList()
            for _ in range(cfg.depths[i] + 1):
                level.append(ResBlock(c + skip_c.pop(), ch[i], cc, cfg.attn_depths[i], hd))
                c = ch[i]
            if i > 0:
                level.append(nn.Conv2d(c, c, 3, padding=1))  # after nearest x2 upsampling
            self.up.append(level)

        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = _zero(nn.Conv2d(c, out_channels, 3, padding=1))

    def _block(self, block: ResBlock, x: Tensor, cond: Tensor) -> Tensor:
        if self.cfg.grad_checkpointing and self.training:
            return torch.utils.checkpoint.checkpoint(block, x, cond, use_reentrant=False)
        return block(x, cond)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = self.conv_in(x)
        skips = [x]
        for level in self.down:
            for m in level:
                x = self._block(m, x, cond) if isinstance(m, ResBlock) else m(x)
                skips.append(x)
        for block in self.mid:
            x = self._block(block, x, cond)
        for level in self.up:
            for m in level:
                if isinstance(m, ResBlock):
                    x = self._block(m, torch.cat([x, skips.pop()], dim=1), cond)
                else:
                    x = m(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(x)))
