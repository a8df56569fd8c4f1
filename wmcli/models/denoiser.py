"""The next-frame denoiser: a U-Net conditioned on past frames and actions, in two formulations.

- EDM (Karras et al., 2022), DIAMOND's: the network F is preconditioned by c_in, c_out, c_skip,
  c_noise around sigma_data = 0.5, and D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise).
  With offset noise (DIAMOND: 0.3) every scaling uses sigma' = sqrt(sigma^2 + offset^2).
- DDPM (Ho et al., 2020): epsilon prediction on T = 1000 discrete steps, with
  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) for linear or cosine beta schedules.

Both take the context as `obs` (B, n, 3, H, W) in [-1, 1] and `act` (B, n); the noisy frame is
concatenated with the context frames on channels, the actions and noise level form `cond`.
`loss(...)` takes its noise and noise level as arguments, so it is deterministic for given inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcli.base.config import DenoiserConfig
from wmcli.models.nets import FourierFeatures, UNet


def ddpm_alphas_cumprod(T: int, schedule: str) -> Tensor:
    """abar_t for t = 0 .. T-1, in float64."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        return torch.cumprod(1 - betas, dim=0)
    # Cosine schedule, s = 0.008, betas clipped at 0.999 (Nichol & Dhariwal, 2021, eq. 17).
    s = 0.008
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def edm_scalings(sigma: Tensor, cfg: DenoiserConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """c_skip, c_out, c_in, c_noise for noise levels sigma (any shape), each of sigma's shape."""
    sd = cfg.sigma_data
    s = (sigma**2 + cfg.sigma_offset_noise**2).sqrt()  # sigma' (offset noise included)
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = s * sd / (s**2 + sd**2).sqrt()
    c_in = 1 / (s**2 + sd**2).sqrt()
    c_noise = s.log() / 4
    return c_skip, c_out, c_in, c_noise


def train_sigmas(cfg: DenoiserConfig, shape, generator: torch.Generator | None = None, device=None) -> Tensor:
    """EDM training noise levels of `shape`: ln sigma ~ N(loc, scale^2), clipped."""
    z = torch.randn(shape, generator=generator, device=device)
    return (cfg.train_sigma_loc + cfg.train_sigma_scale * z).exp().clamp(cfg.train_sigma_min, cfg.train_sigma_max)


class Denoiser(nn.Module):
    kind = "frame"

    def __init__(self, cfg: DenoiserConfig, num_actions: int, img_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        n, cc = cfg.num_context, cfg.unet.cond_channels
        self.noise_emb = FourierFeatures(cc)
        self.act_emb = nn.Embedding(num_actions, cfg.action_emb_dim)
        self.act_proj = nn.Linear(n * cfg.action_emb_dim, cc) if n * cfg.action_emb_dim != cc else nn.Identity()
        self.ctx_noise_emb = FourierFeatures(cc) if cfg.context_noise_max > 0 else None
        self.cond_mlp = nn.Sequential(nn.Linear(cc, cc), nn.SiLU(), nn.Linear(cc, cc))
        self.unet = UNet(cfg.unet, (n + 1) * img_channels, img_channels)
        self.register_buffer(
            "alphas_cumprod", ddpm_alphas_cumprod(cfg.ddpm_timesteps, cfg.ddpm_beta_schedule).float()
        )

    # ---- the network ---------------------------------------------------------------------

    def forward(self, x_in: Tensor, c_noise: Tensor, obs: Tensor, act: Tensor, ctx_sigma: Tensor | None = None) -> Tensor:
        """F(x_in; c_noise, context): x_in (B, 3, H, W), c_noise (B,), obs (B, n, 3, H, W), act (B, n)."""
        B, n, C, H, W = obs.shape
        cond = self.noise_emb(c_noise) + self.act_proj(self.act_emb(act).flatten(1))  # (B, cc)
        if self.ctx_noise_emb is not None:
            s = ctx_sigma if ctx_sigma is not None else torch.zeros_like(c_noise)
            cond = cond + self.ctx_noise_emb(s)
        cond = self.cond_mlp(cond)
        x = torch.cat([obs.reshape(B, n * C, H, W), x_in], dim=1)  # (B, (n+1)*C, H, W)
        return self.unet(x, cond)

    # ---- EDM -------------------------------------------------------------------------------

    def edm_scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise for noise levels sigma (B,), each (B,)."""
        return edm_scalings(sigma, self.cfg)

    def sample_train_sigma(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """EDM training noise levels: ln sigma ~ N(loc, scale^2), clipped."""
        return train_sigmas(self.cfg, (batch_size,), generator, device)

    def denoise(self, x: Tensor, sigma: Tensor, obs: Tensor, act: Tensor) -> Tensor:
        """D(x; sigma): the EDM estimate of the clean frame from x at noise level sigma (B,)."""
        c_skip, c_out, c_in, c_noise = (c[:, None, None, None] for c in self.edm_scalings(sigma))
        obs_in = obs / self.cfg.sigma_data
        return c_skip * x + c_out * self(c_in * x, c_noise.flatten(), obs_in, act)

    # ---- DDPM ------------------------------------------------------------------------------

    def predict_eps(self, x_t: Tensor, t: Tensor, obs: Tensor, act: Tensor) -> Tensor:
        """epsilon_theta(x_t, t, context) for integer timesteps t (B,)."""
        c_noise = t.float() / self.cfg.ddpm_timesteps
        return self(x_t, c_noise, obs, act)

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t ~ q(x_t | x_0) in closed form: sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        ab = self.alphas_cumprod[t][:, None, None, None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    # ---- training loss ---------------------------------------------------------------------

    def loss(
        self,
        x0: Tensor,
        obs: Tensor,
        act: Tensor,
        noise: Tensor,
        level: Tensor,
        mask: Tensor | None = None,
        offset: Tensor | None = None,
        ctx_sigma: Tensor | None = None,
        return_denoised: bool = False,
    ):
        """Mean denoising loss over the real targets (mask (B,) bool).

        EDM: level is sigma (B,) float; offset (B, C, 1, 1) is the offset-noise draw (standard
        normal; scaled here). The network is trained with plain MSE against
        (x0 - c_skip * x_noisy) / c_out, as DIAMOND does.
        DDPM: level is t (B,) long; loss ||eps - eps_theta(x_t, t)||^2.
        ctx_sigma (B,): noise-augmentation level of the context frames (already added to obs).
        return_denoised: also return the one-step estimate of x0 (for the autoregressive step).
        """
        if self.cfg.formulation == "edm":
            x_noisy = x0 + level[:, None, None, None] * noise
            if offset is not None and self.cfg.sigma_offset_noise > 0:
                x_noisy = x_noisy + self.cfg.sigma_offset_noise * offset
            c_skip, c_out, c_in, c_noise = (c[:, None, None, None] for c in self.edm_scalings(level))
            target = (x0 - c_skip * x_noisy) / c_out
            pred = self(c_in * x_noisy, c_noise.flatten(), obs / self.cfg.sigma_data, act, ctx_sigma)
            denoised = c_skip * x_noisy + c_out * pred if return_denoised else None
        else:
            x_t = self.q_sample(x0, level, noise)
            target = noise
            pred = self(x_t, level.float() / self.cfg.ddpm_timesteps, obs, act, ctx_sigma)
            if return_denoised:
                ab = self.alphas_cumprod[level][:, None, None, None]
                denoised = (x_t - (1 - ab).sqrt() * pred) / ab.sqrt()
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
        if mask is None:
            loss = per_sample.mean()
        else:
            m = mask.to(per_sample.dtype)
            loss = (per_sample * m).sum() / m.sum().clamp(min=1)
        return (loss, denoised) if return_denoised else loss
