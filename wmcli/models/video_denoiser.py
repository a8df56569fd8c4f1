"""The video denoiser: a window of future frames denoised jointly, each at its own noise level.

A space-time version of DIAMOND's denoiser (docs/video_model.md). The window holds T future
frames x (B, T, 3, H, W) after the n context frames obs (B, n, 3, H, W); each frame goes through
the same U-Net as DIAMOND's, with the context frames concatenated on its channels, conditioned
through adaptive group norm on its own noise level and on the n actions before it; attention
across the window's frames follows the blocks of the levels `video.temporal_attn` flags and of
the middle (causal or not). EDM preconditioning is applied frame by frame, so every frame may
sit at its own sigma (diffusion forcing, Chen et al., 2024): all at one level (joint sampling),
the first one cleanest (frame-by-frame emission) or a staircase between (staggered sampling;
wmcli.models.video_sampler).

Actions: act (B, n + T - 1) holds the actions at the n context frames, then at the window's
frames but its last; frame t of the window sees act[:, t : t + n]. An action not chosen yet is
`null_action` (= num_actions), which training shows the model with `video.unknown_action_prob`.
`inverse_dynamics` is the head of the action-consistency loss: it recovers the action taken
between two consecutive frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcli.base.config import DenoiserConfig
from wmcli.models.denoiser import edm_scalings, train_sigmas
from wmcli.models.nets import FourierFeatures, UNet


class InverseDynamics(nn.Module):
    """Logits (B, num_actions) of the action taken between frames (B, 3, H, W) and (B, 3, H, W)."""

    def __init__(self, img_channels: int, channels: int, num_actions: int):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(2 * img_channels, c, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_actions),
        )

    def forward(self, before: Tensor, after: Tensor) -> Tensor:
        return self.net(torch.cat([before, after], dim=1))


class VideoDenoiser(nn.Module):
    kind = "video"

    def __init__(self, cfg: DenoiserConfig, num_actions: int, img_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        n, cc = cfg.num_context, cfg.unet.cond_channels
        self.null_action = num_actions
        self.noise_emb = FourierFeatures(cc)
        self.act_emb = nn.Embedding(num_actions + 1, cfg.action_emb_dim)  # + the unknown action
        self.act_proj = nn.Linear(n * cfg.action_emb_dim, cc) if n * cfg.action_emb_dim != cc else nn.Identity()
        self.cond_mlp = nn.Sequential(nn.Linear(cc, cc), nn.SiLU(), nn.Linear(cc, cc))
        self.unet = UNet(cfg.unet, (n + 1) * img_channels, img_channels, cfg.video.temporal_attn, cfg.video.causal)
        self.inverse_dynamics = InverseDynamics(img_channels, cfg.unet.channels[0], num_actions)

    @property
    def window(self) -> int:
        return self.cfg.video.window

    # ---- the network ---------------------------------------------------------------------

    def forward(self, x_in: Tensor, c_noise: Tensor, obs: Tensor, act: Tensor) -> Tensor:
        """F(x_in; c_noise, context): x_in (B, T, 3, H, W), c_noise (B, T), obs (B, n, 3, H, W),
        act (B, n + T - 1). Returns (B, T, 3, H, W)."""
        B, T, C, H, W = x_in.shape
        n = obs.shape[1]
        acts = act.unfold(1, n, 1)  # (B, T, n): the n actions before each frame of the window
        cond = self.noise_emb(c_noise.reshape(B * T)) + self.act_proj(self.act_emb(acts).flatten(2)).reshape(B * T, -1)
        cond = self.cond_mlp(cond)
        ctx = obs.reshape(B, 1, n * C, H, W).expand(B, T, n * C, H, W)
        x = torch.cat([ctx, x_in], dim=2).reshape(B * T, (n + 1) * C, H, W)
        return self.unet(x, cond, frames=T).view(B, T, C, H, W)

    # ---- EDM, frame by frame -----------------------------------------------------------------

    def denoise(self, x: Tensor, sigma: Tensor, obs: Tensor, act: Tensor) -> Tensor:
        """D(x; sigma) for a window x (B, T, 3, H, W) at noise levels sigma (B, T)."""
        c_skip, c_out, c_in, c_noise = (c[..., None, None, None] for c in edm_scalings(sigma, self.cfg))
        return c_skip * x + c_out * self(c_in * x, c_noise[..., 0, 0, 0], obs / self.cfg.sigma_data, act)

    def sample_train_sigma(self, shape, generator: torch.Generator | None = None, device=None) -> Tensor:
        return train_sigmas(self.cfg, shape, generator, device)

    def loss(self, x0: Tensor, obs: Tensor, act: Tensor, noise: Tensor, sigma: Tensor, mask: Tensor,
             offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean denoising loss over the real frames of windows x0 (B, T, 3, H, W), mask (B, T) bool,
        at noise levels sigma (B, T); noise as x0, offset (B, T, 3, 1, 1) standard normal (scaled
        here by sigma_offset_noise). Returns the loss and the one-step estimates of x0 (B, T, ...)."""
        x_noisy = x0 + sigma[..., None, None, None] * noise
        if offset is not None and self.cfg.sigma_offset_noise > 0:
            x_noisy = x_noisy + self.cfg.sigma_offset_noise * offset
        c_skip, c_out, c_in, c_noise = (c[..., None, None, None] for c in edm_scalings(sigma, self.cfg))
        target = (x0 - c_skip * x_noisy) / c_out
        pred = self(c_in * x_noisy, c_noise[..., 0, 0, 0], obs / self.cfg.sigma_data, act)
        per_frame = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(2, 3, 4))  # (B, T)
        m = mask.to(per_frame.dtype)
        return (per_frame * m).sum() / m.sum().clamp(min=1), c_skip * x_noisy + c_out * pred
