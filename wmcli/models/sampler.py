"""Noise schedules and samplers, as pure functions with their randomness passed in.

EDM models: Euler and Heun steps on the Karras schedule (Karras et al., 2022, Algorithm 2),
with optional churn. DDPM models: DDIM (Song et al., 2021), deterministic at eta = 0, and DDPM
ancestral sampling, which on a respaced schedule is DDIM with eta = 1. Every sampler takes
a denoiser callable, the starting noise and a `torch.Generator`, and runs any number of steps.
`sample_next_obs` is the one entry point the world model uses; DIAMOND's default is 3 Euler steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from wmcli.base.config import SAMPLERS, SamplerConfig
from wmcli.base.errors import WmcliError


def check_compatible(sampler: str, formulation: str) -> None:
    """Refuse a sampler that does not fit the model's formulation, with what would fit."""
    if SAMPLERS[sampler] != formulation:
        fits = [s for s, f in SAMPLERS.items() if f == formulation]
        raise WmcliError(
            f"sampler '{sampler}' needs a {SAMPLERS[sampler].upper()} model but this model is "
            f"{formulation.upper()}; use --sampler {' or '.join(fits)}"
        )


# ---- EDM -----------------------------------------------------------------------------------


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) eq. 5: num_steps levels from sigma_max to sigma_min, then a final 0."""
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    if num_steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    min_r, max_r = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_r + ramp * (min_r - max_r)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


DenoiseFn = Callable[[Tensor, Tensor], Tensor]  # D(x, sigma (B,)) -> clean estimate


def _churn(x, sigma, cfg: SamplerConfig, n_steps: int, generator):
    """Karras et al. Algorithm 2, lines 4-6: raise the noise level from sigma to sigma_hat."""
    gamma = min(cfg.s_churn / n_steps, 2**0.5 - 1) if cfg.s_tmin <= sigma <= cfg.s_tmax else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * cfg.s_noise
        x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def sample_euler(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cfg: SamplerConfig = SamplerConfig(),
                 generator: torch.Generator | None = None, callback=None) -> Tensor:
    """Euler steps on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma."""
    n = len(sigmas) - 1
    for i in range(n):
        x, sigma_hat = _churn(x, float(sigmas[i]), cfg, n, generator)
        denoised = denoise(x, x.new_full((x.shape[0],), sigma_hat))
        if callback is not None:
            callback(i, denoised)
        d = (x - denoised) / sigma_hat  # the ODE's slope at sigma_hat
        x = x + d * (float(sigmas[i + 1]) - sigma_hat)  # Euler step
    return x


def sample_heun(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, cfg: SamplerConfig = SamplerConfig(),
                generator: torch.Generator | None = None, callback=None) -> Tensor:
    """Heun steps (Karras et al., Algorithm 2): Euler, then a trapezoidal correction unless
    the step ends at sigma = 0. Two network evaluations per step but the last."""
    n = len(sigmas) - 1
    for i in range(n):
        x, sigma_hat = _churn(x, float(sigmas[i]), cfg, n, generator)
        sigma_next = float(sigmas[i + 1])
        denoised = denoise(x, x.new_full((x.shape[0],), sigma_hat))
        if callback is not None:
            callback(i, denoised)
        d = (x - denoised) / sigma_hat
        x_next = x + d * (sigma_next - sigma_hat)  # Euler step
        if sigma_next > 0:  # second-order correction
            d_next = (x_next - denoise(x_next, x.new_full((x.shape[0],), sigma_next))) / sigma_next
            x_next = x + (d + d_next) / 2 * (sigma_next - sigma_hat)
        x = x_next
    return x


# ---- DDPM ----------------------------------------------------------------------------------


def ddim_timesteps(num_steps: int, num_train_steps: int) -> Tensor:
    """num_steps evenly spaced training timesteps, descending, from T-1 down to 0."""
    t = torch.linspace(num_train_steps - 1, 0, num_steps).round().long()
    return torch.unique_consecutive(t)


EpsFn = Callable[[Tensor, Tensor], Tensor]  # eps_theta(x_t, t (B,) long)


def sample_ddim(eps_fn: EpsFn, x: Tensor, timesteps: Tensor, alphas_cumprod: Tensor, eta: float = 0.0,
                generator: torch.Generator | None = None, callback=None) -> Tensor:
    """DDIM (Song et al., 2021, eq. 12) from x at timesteps[0] down to a clean sample.

    eta = 0: deterministic; eta = 1: DDPM's ancestral sampling on this (respaced) schedule.
    """
    for i, t in enumerate(timesteps.tolist()):
        ab = alphas_cumprod[t].to(x.dtype)
        ab_prev = alphas_cumprod[timesteps[i + 1]].to(x.dtype) if i + 1 < len(timesteps) else x.new_tensor(1.0)
        eps = eps_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()  # predicted clean sample
        if callback is not None:
            callback(i, x0)
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp(min=0).sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(timesteps):
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


# ---- the world model's entry point ---------------------------------------------------------


def quantize(x: Tensor, mode: str = "round") -> Tensor:
    """Clamp to [-1, 1] and put on the 256 levels of an 8-bit frame: the nearest level ("round"),
    or the level below ("truncate": DIAMOND's arithmetic, (x + 1) / 2 * 255 floored as `.byte()`
    does, in its order of operations so that its trained models dream exactly as in DIAMOND)."""
    if mode == "truncate":
        return x.clamp(-1, 1).add(1).div(2).mul(255).floor().div(255).mul(2).sub(1)
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def quantize_straight_through(x: Tensor, mode: str = "round") -> Tensor:
    """quantize(x) in the forward pass, the identity in the backward one (Bengio et al., 2013's
    straight-through estimator): a sampler made of it can be trained (distillation) while it
    computes exactly what sampling computes."""
    return x + (quantize(x, mode) - x).detach()


def sample_next_obs(denoiser, obs: Tensor, act: Tensor, cfg: SamplerConfig,
                    generator: torch.Generator | None = None, callback=None, noise: Tensor | None = None,
                    differentiable: bool = False) -> Tensor:
    """Generate the next frame (B, 3, H, W) in [-1, 1], 8-bit levels, from context obs (B, n, 3, H, W)
    and act (B, n). callback(i, x0_estimate) sees each step's prediction of the clean frame.

    EDM: every denoised estimate is quantised (cfg.quantize) and the last step lands on the last
    estimate; the start noise is N(0, sigma_max^2), or N(0, 1) with cfg.start_noise "unit" (DIAMOND).
    noise: the standard-normal draw (B, 3, H, W) to start from (default: drawn from `generator`),
    so that two samplers can start from the same one (distillation). differentiable: quantise
    straight-through, so gradients reach the denoiser (the frame computed is the same)."""
    formulation = denoiser.cfg.formulation
    check_compatible(cfg.name, formulation)
    B, n, C, H, W = obs.shape
    if noise is None:
        noise = torch.randn((B, C, H, W), generator=generator, device=obs.device, dtype=obs.dtype)
    levels = quantize_straight_through if differentiable else quantize
    if formulation == "edm":
        sigmas = karras_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(obs.device)

        def denoise(x, sigma):
            return levels(denoiser.denoise(x, sigma, obs, act), cfg.quantize)

        step = sample_euler if cfg.name == "euler" else sample_heun
        x = step(denoise, noise if cfg.start_noise == "unit" else noise * cfg.sigma_max, sigmas, cfg, generator, callback)
        if cfg.quantize == "truncate":
            # The last step ends at sigma = 0 on the last (quantised) estimate, up to rounding; DIAMOND
            # returns it as it is: truncating it again could drop a level.
            return x
    else:
        timesteps = ddim_timesteps(cfg.num_steps, denoiser.cfg.ddpm_timesteps)
        eta = 1.0 if cfg.name == "ddpm" else cfg.eta

        def eps_fn(x, t):
            return denoiser.predict_eps(x, t, obs, act)

        x = sample_ddim(eps_fn, noise, timesteps, denoiser.alphas_cumprod, eta, generator, callback)
    return levels(x)
