"""Network blocks and the denoiser's U-Net: DIAMOND's (Alonso et al., 2024), function for function.

The conditioning vector `cond` (noise level + action history) enters every residual block
through adaptive group norm: x * (1 + scale) + shift, with scale and shift read off `cond`.
Each block computes what DIAMOND's block of the same name computes (its `src/models/blocks.py`),
so DIAMOND's trained weights load into these modules unchanged (wmcli.world.diamond) and give
its outputs; that includes its choices below, which a test pins against DIAMOND's own modules:
- self-attention adds its output to the *normalised* input (not to the block's input);
- the U-Net's up path ends each level at the channels of the level above (as DIAMOND's does);
- initialisation: the second conv of each residual block and the network's output conv start
  with zero weights (their biases keep torch's default), attention's output projection at zero,
  down-sampling convs orthogonal.
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


def init_lstm(lstm: nn.LSTM | nn.LSTMCell) -> None:
    """DIAMOND's LSTM initialisation: input weights Xavier-uniform, recurrent weights orthogonal,
    biases zero but the forget gate's input bias at 1 (torch orders the gates i, f, g, o)."""
    for name, p in lstm.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(p)
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(p)
        elif name.startswith("bias"):
            nn.init.zeros_(p)
            if name.startswith("bias_ih"):
                h = p.shape[0] // 4
                nn.init.ones_(p[h:2 * h])


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
    """Multi-head self-attention over the H*W positions (scaled dot product, fused by SDPA).

    As DIAMOND's SelfAttention2d: the residual adds the attention output to the group-normalised
    input, so the block's output is norm(x) + out(attn(norm(x))), not x + ...; DIAMOND's trained
    models compute that, and a fresh block (output projection at zero) starts as the norm."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        x = self.norm(x)
        qkv = self.qkv(x).view(B, 3, self.heads, C // self.heads, H * W)
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
        self.conv2 = nn.Conv2d(out_c, out_c, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # DIAMOND: the weight only; the bias keeps torch's default
        self.skip = nn.Conv2d(in_c, out_c, 1) if in_c != out_c else nn.Identity()
        self.attn = SelfAttention(out_c, head_dim) if attn else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.attn(self.skip(x) + h)


def frame_positions(frames: int, channels: int, device) -> Tensor:
    """Sinusoidal encodings (frames, channels) of the positions 0 .. frames - 1 in a window
    (Vaswani et al., 2017), so temporal attention knows the order of its frames at any length."""
    half = channels // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angle = torch.arange(frames, device=device, dtype=torch.float32)[:, None] * freq[None]
    enc = torch.cat([angle.sin(), angle.cos()], dim=1)
    return F.pad(enc, (0, channels - enc.shape[1]))


class TemporalAttention(nn.Module):
    """Multi-head self-attention across the frames of a window at each pixel: (B * T, C, H, W) in,
    the same out; every position attends to itself in the other frames (causal: the earlier ones).
    Pre-norm and a residual, output projection at zero, so a fresh block passes its input through
    and a fresh video model starts as the per-frame model."""

    def __init__(self, channels: int, head_dim: int, causal: bool):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.causal = causal
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = _zero(nn.Linear(channels, channels))

    def forward(self, x: Tensor, frames: int) -> Tensor:
        BT, C, H, W = x.shape
        B = BT // frames
        tokens = x.view(B, frames, C, H * W).permute(0, 3, 1, 2).reshape(B * H * W, frames, C)
        h = self.norm(tokens) + frame_positions(frames, C, x.device).to(tokens.dtype)
        q, k, v = self.qkv(h).view(B * H * W, frames, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (BHW, heads, T, d)
        y = self.out(y.transpose(1, 2).reshape(B * H * W, frames, C))
        return x + y.view(B, H * W, frames, C).permute(0, 2, 3, 1).reshape(BT, C, H, W)


class SpaceTimeBlock(nn.Module):
    """A residual block inside each frame, then attention across the frames of the window."""

    def __init__(self, block: ResBlock, temporal: TemporalAttention):
        super().__init__()
        self.block = block
        self.temporal = temporal

    def forward(self, x: Tensor, cond: Tensor, frames: int) -> Tensor:
        return self.temporal(self.block(x, cond), frames)


def downsample(channels: int) -> nn.Conv2d:
    """A stride-2 3x3 conv halving H and W, orthogonally initialised (DIAMOND's Downsample)."""
    conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
    nn.init.orthogonal_(conv.weight)
    return conv


class UNet(nn.Module):
    """U-Net over (B, in_channels, H, W) -> (B, out_channels, H, W), conditioned on (B, cond).

    H and W must be divisible by 2 ** (levels - 1). Skips: the stem's output and every block's
    and downsampler's output on the way down feed one block each on the way up. On the way up,
    level i has depths[i] + 1 blocks; the last one brings the channels to those of level i - 1
    (DIAMOND's layout), then a nearest x2 upsampling and a 3x3 conv lead into level i - 1.

    temporal (one flag per level; the video denoiser): the input is a batch of windows, (B * T,
    in_channels, H, W) frame after frame, and the blocks of the flagged levels and of the middle
    are followed by attention across each window's T frames (SpaceTimeBlock); forward's `frames`
    gives T. Without it the network is DIAMOND's, module for module.
    """

    def __init__(self, cfg: UNetConfig, in_channels: int, out_channels: int,
                 temporal: tuple[bool, ...] | None = None, causal: bool = True):
        super().__init__()
        self.cfg = cfg
        ch, cc, hd = cfg.channels, cfg.cond_channels, cfg.attn_head_dim

        def block(in_c: int, out_c: int, attn: bool, level: int | None) -> nn.Module:
            b = ResBlock(in_c, out_c, cc, attn, hd)
            if temporal is None or (level is not None and not temporal[level]):
                return b
            return SpaceTimeBlock(b, TemporalAttention(out_c, hd, causal))

        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)

        self.down = nn.ModuleList()
        skip_c = [ch[0]]
        c = ch[0]
        for i, (out_c, depth, attn) in enumerate(zip(ch, cfg.depths, cfg.attn_depths)):
            level = nn.ModuleList()
            for _ in range(depth):
                level.append(block(c, out_c, attn, i))
                c = out_c
                skip_c.append(c)
            if i < len(ch) - 1:
                level.append(downsample(c))
                skip_c.append(c)
            self.down.append(level)

        self.mid = nn.ModuleList([block(c, c, True, None), block(c, c, True, None)])

        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            level = nn.ModuleList()
            for j in range(cfg.depths[i] + 1):
                out_c = ch[max(i - 1, 0)] if j == cfg.depths[i] else ch[i]
                level.append(block(c + skip_c.pop(), out_c, cfg.attn_depths[i], i))
                c = out_c
            if i > 0:
                level.append(nn.Conv2d(c, c, 3, padding=1))  # after nearest x2 upsampling
            self.up.append(level)

        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # DIAMOND: the weight only

    def _block(self, block: nn.Module, x: Tensor, cond: Tensor, frames: int) -> Tensor:
        args = (x, cond, frames) if isinstance(block, SpaceTimeBlock) else (x, cond)
        if self.cfg.grad_checkpointing and self.training:
            return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, x: Tensor, cond: Tensor, frames: int = 1) -> Tensor:
        x = self.conv_in(x)
        skips = [x]
        for level in self.down:
            for m in level:
                x = self._block(m, x, cond, frames) if isinstance(m, (ResBlock, SpaceTimeBlock)) else m(x)
                skips.append(x)
        for block in self.mid:
            x = self._block(block, x, cond, frames)
        for level in self.up:
            for m in level:
                if isinstance(m, (ResBlock, SpaceTimeBlock)):
                    x = self._block(m, torch.cat([x, skips.pop()], dim=1), cond, frames)
                else:
                    x = m(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(x)))
