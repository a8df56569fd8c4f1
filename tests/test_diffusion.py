"""Denoiser scalings and losses, the DDPM forward process, samplers' determinism and order."""

from __future__ import annotations

import math

import pytest
import torch

from wmcli.base.config import DenoiserConfig, UNetConfig
from wmcli.base.errors import WmcliError
from wmcli.models.denoiser import Denoiser, ddpm_alphas_cumprod
from wmcli.models.sampler import (
    SamplerConfig,
    ddim_timesteps,
    karras_sigmas,
    quantize,
    sample_ddim,
    sample_euler,
    sample_heun,
    sample_next_obs,
)

TINY_UNET = UNetConfig(channels=(8, 8), depths=(1, 1), attn_depths=(False, False), cond_channels=16, attn_head_dim=4)


def tiny(formulation="edm", n=2, **kw):
    torch.manual_seed(0)
    cfg = DenoiserConfig(formulation=formulation, num_context=n, action_emb_dim=8, unet=TINY_UNET, **kw)
    return Denoiser(cfg, num_actions=3)


def test_edm_scalings():
    d = tiny(sigma_offset_noise=0.0)
    c_skip, c_out, c_in, c_noise = d.edm_scalings(torch.tensor([1e-6, 0.5, 10.0]))
    assert c_skip[0] == pytest.approx(1.0) and c_out[0] == pytest.approx(0.0, abs=1e-5)
    # At sigma = sigma_data: c_skip = 1/2, c_out = sigma_data / sqrt(2), c_in = 1 / (sigma_data sqrt(2)).
    assert c_skip[1] == pytest.approx(0.5) and c_out[1] == pytest.approx(0.5 / math.sqrt(2))
    assert c_in[1] == pytest.approx(1 / (0.5 * math.sqrt(2))) and c_noise[1] == pytest.approx(math.log(0.5) / 4)
    # Large sigma: the output is mostly the network's (c_skip -> 0, c_out -> sigma_data).
    assert c_skip[2] < 0.003 and c_out[2] == pytest.approx(0.5, rel=1e-2)


def test_denoise_gives_the_input_back_at_sigma_zero():
    d = tiny(sigma_offset_noise=0.0)
    for p in d.parameters():  # a trained-looking network: nonzero output
        torch.nn.init.normal_(p, std=0.05)
    x, obs, act = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 2, 3, 16, 16), torch.randint(0, 3, (2, 2))
    out = d.denoise(x, torch.full((2,), 1e-7), obs, act)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_offset_noise_floors_the_effective_sigma():
    d = tiny(sigma_offset_noise=0.3)
    c_skip, c_out, _, c_noise = d.edm_scalings(torch.tensor([0.0]))
    assert c_noise.item() == pytest.approx(math.log(0.3) / 4)
    assert c_skip.item() == pytest.approx(0.25 / (0.09 + 0.25))


def test_training_sigma_distribution():
    d = tiny()
    s = d.sample_train_sigma(200_000, generator=torch.Generator().manual_seed(0))
    ln = s.log()
    inner = ln[(s > 2e-3 * 1.01) & (s < 20 * 0.99)]
    assert inner.mean().item() == pytest.approx(-0.4, abs=0.05) and s.min() >= 2e-3 and s.max() <= 20


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_closed_form_matches_iterating_the_forward_process(schedule):
    T = 1000
    ab = ddpm_alphas_cumprod(T, schedule)
    betas = 1 - ab / torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000,), 0.7, dtype=torch.float64)
    x = x0.clone()
    d = tiny("ddpm", ddpm_beta_schedule=schedule)
    for t in range(T):
        x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype)
        if t in (9, 499, 999):
            closed = d.q_sample(x0.float()[:, None, None, None], torch.full((20000,), t), torch.randn(20000, 1, 1, 1, generator=g))
            assert x.mean().item() == pytest.approx(closed.mean().item(), abs=0.03)
            assert x.std().item() == pytest.approx(closed.std().item(), abs=0.03)
            assert x.mean().item() == pytest.approx(0.7 * ab[t].sqrt().item(), abs=0.02)


def test_losses_are_deterministic_for_given_noise_and_masked():
    for formulation in ("edm", "ddpm"):
        d = tiny(formulation)
        x0, obs, act = torch.rand(4, 3, 16, 16), torch.rand(4, 2, 3, 16, 16), torch.randint(0, 3, (4, 2))
        noise = torch.randn(4, 3, 16, 16)
        level = torch.tensor([0.1, 1.0, 3.0, 0.5]) if formulation == "edm" else torch.tensor([1, 10, 500, 999])
        a = d.loss(x0, obs, act, noise, level, offset=torch.zeros(4, 3, 1, 1))
        b = d.loss(x0, obs, act, noise, level, offset=torch.zeros(4, 3, 1, 1))
        assert a.item() == b.item() and a.item() > 0
        # Masked-out samples do not count.
        mask = torch.tensor([True, True, False, False])
        m = d.loss(x0, obs, act, noise, level, mask=mask, offset=torch.zeros(4, 3, 1, 1))
        first2 = d.loss(x0[:2], obs[:2], act[:2], noise[:2], level[:2], offset=torch.zeros(2, 3, 1, 1))
        assert m.item() == pytest.approx(first2.item(), rel=1e-5)


@pytest.mark.parametrize("n", [1, 2, 4, 6])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_unet_shapes_any_context_length(n, size):
    cfg = DenoiserConfig(num_context=n, unet=UNetConfig(channels=(8, 8, 16), depths=(1, 1, 1),
                                                        attn_depths=(False, True, False), cond_channels=32))
    d = Denoiser(cfg, num_actions=5)
    out = d.denoise(torch.randn(2, 3, size, size), torch.ones(2), torch.randn(2, n, 3, size, size), torch.randint(0, 5, (2, n)))
    assert out.shape == (2, 3, size, size)


def test_diamond_sized_denoiser_has_diamonds_parameter_count():
    # 4,405,955 for Breakout's 4 actions, counted from DIAMOND's configs (DIAMOND_FACTS.md).
    d = Denoiser(DenoiserConfig(), num_actions=4)
    assert sum(p.numel() for p in d.parameters()) == 4_405_955


def test_fresh_model_outputs_its_output_convs_bias():
    # DIAMOND zero-initialises the output conv's weight only: a fresh network outputs the bias.
    d = tiny()
    out = d(torch.randn(2, 3, 16, 16), torch.zeros(2), torch.randn(2, 2, 3, 16, 16), torch.zeros(2, 2, dtype=torch.long))
    bias = d.unet.conv_out.bias.detach()
    assert bias.abs().max() > 0
    torch.testing.assert_close(out.detach(), bias[None, :, None, None].expand_as(out), rtol=0, atol=1e-7)


def test_karras_schedule():
    s = karras_sigmas(3, 2e-3, 5.0, 7.0)
    assert s.tolist() == pytest.approx([5.0, 0.2833, 0.002, 0.0], rel=1e-3)
    assert karras_sigmas(1, 2e-3, 5.0).tolist() == pytest.approx([5.0, 0.0])


@pytest.mark.parametrize(
    "sampler, formulation, extra",
    [("euler", "edm", {}), ("heun", "edm", {}), ("euler", "edm", {"s_churn": 1.0}),
     ("ddim", "ddpm", {}), ("ddim", "ddpm", {"eta": 0.5}), ("ddpm", "ddpm", {})],
)
def test_samplers_are_deterministic_under_fixed_noise(sampler, formulation, extra):
    d = tiny(formulation)
    for p in d.parameters():
        torch.nn.init.normal_(p, std=0.05)
    obs, act = torch.rand(2, 2, 3, 16, 16) * 2 - 1, torch.randint(0, 3, (2, 2))
    cfg = SamplerConfig(name=sampler, num_steps=4, **extra)

    def run(seed):
        return sample_next_obs(d, obs, act, cfg, torch.Generator().manual_seed(seed))

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (2, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.allclose(quantize(a), a)  # 8-bit levels


def test_incompatible_sampler_is_refused():
    with pytest.raises(WmcliError, match="use --sampler euler or heun"):
        sample_next_obs(tiny("edm"), torch.zeros(1, 2, 3, 16, 16), torch.zeros(1, 2, dtype=torch.long), SamplerConfig(name="ddpm"))
    with pytest.raises(WmcliError, match="use --sampler ddim or ddpm"):
        sample_next_obs(tiny("ddpm"), torch.zeros(1, 2, 3, 16, 16), torch.zeros(1, 2, dtype=torch.long), SamplerConfig(name="heun"))


# Gaussian data N(0, s^2): the ideal denoiser and the exact ODE solution are known.
S = 0.5


def gaussian_denoise(x, sigma):
    return x * S**2 / (S**2 + sigma[:, None] ** 2)


def exact(x_start, sigma_start, sigma_end):
    return x_start * math.sqrt(S**2 + sigma_end**2) / math.sqrt(S**2 + sigma_start**2)


def test_euler_is_first_order_and_heun_second_order():
    x = torch.randn(64, 1, dtype=torch.float64) * 5.0
    lo, hi = 0.05, 5.0
    errs = {"euler": [], "heun": []}
    for n in (8, 16, 32):
        sigmas = karras_sigmas(n, lo, hi).double()[:-1]  # stop at sigma_min (no jump to 0)
        want = exact(x, hi, lo)
        errs["euler"].append((sample_euler(gaussian_denoise, x, sigmas) - want).abs().max().item())
        errs["heun"].append((sample_heun(gaussian_denoise, x, sigmas) - want).abs().max().item())
    for i in range(2):
        assert 1.6 < errs["euler"][i] / errs["euler"][i + 1] < 2.5  # ~2x per doubling: order 1
        assert 3.2 < errs["heun"][i] / errs["heun"][i + 1] < 5.0  # ~4x per doubling: order 2


def test_ddim_and_ancestral_recover_the_data_distribution():
    T = 1000
    ab = ddpm_alphas_cumprod(T, "linear").float()

    def eps_fn(x, t):  # E[eps | x_t] for Gaussian data N(0, S^2)
        a = ab[t][:, None]
        return (1 - a).sqrt() * x / (a * S**2 + 1 - a)

    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(40000, 1, generator=g)
    for eta in (0.0, 1.0):
        errors = []
        for n in (20, 100, 1000):  # with all 1000 steps, ancestral sampling is DDPM itself
            x0 = sample_ddim(eps_fn, x_T, ddim_timesteps(n, T), ab, eta=eta, generator=g)
            errors.append(abs(x0.std().item() - S))
            assert abs(x0.mean().item()) < 0.02
        assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 * S


def test_gradient_checkpointing_gives_the_same_gradients():
    import dataclasses

    grads = []
    for ckpt in (False, True):
        d = tiny()
        d = Denoiser(dataclasses.replace(d.cfg, unet=dataclasses.replace(TINY_UNET, grad_checkpointing=ckpt)), 3)
        d.load_state_dict(tiny().state_dict())
        for p in d.parameters():
            torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(p.numel()))
        g = torch.Generator().manual_seed(0)
        x0, obs = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 2, 3, 16, 16, generator=g)
        loss = d.loss(x0, obs, torch.zeros(2, 2, dtype=torch.long), torch.randn(2, 3, 16, 16, generator=g), torch.ones(2))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in d.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
