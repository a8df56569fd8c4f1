"""What only a CUDA GPU can show: bf16 autocast with fused AdamW and channels_last, torch.compile
against eager, CUDA sampling against the CPU's, and train-wm under torchrun with NCCL.

Marked `cuda`: each skips without a GPU (CI has none); benchmarks/gpu_check.py runs them on one
with `pytest --noconftest -m cuda tests/test_cuda.py` (conftest.py imports ale-py, which the GPU
machine may lack, so this file needs nothing from it). Sizes are small so the file runs in about a minute there;
the store is synthetic (the GPU machine has no ALE), written with wmcli's Store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SMALL = [
    "denoiser.unet.channels=[32,32,32,32]", "denoiser.unet.cond_channels=64", "reward_end.channels=[16,16,16,16]",
    "reward_end.lstm_dim=64", "train_wm.batch_size=8", "train_wm.rew_end_batch_size=4", "train_wm.rew_end_seq_len=6",
    "train_wm.val_batches=1", "train_wm.warmup_steps=1",
]


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def small_denoiser(seed: int = 0):
    from wmcli.base.recipe import load_recipe
    from wmcli.world.world_model import build_networks

    recipe = load_recipe("atari100k", SMALL)
    torch.manual_seed(seed)
    den, rew_end = build_networks(recipe, 4)
    return recipe, den, rew_end


def inputs(B: int, n: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = (torch.rand(B, n, 3, 64, 64, generator=g) * 2 - 1).to(device)
    act = torch.randint(0, 4, (B, n), generator=g).to(device)
    return obs, act


def test_bf16_fused_adamw_channels_last_step():
    from wmcli.base.runtime import make_optimizer, make_runtime
    from wmcli.world.batches import DenoiserLoss

    rt = make_runtime("cuda", "bf16", compile=False)
    recipe, den, _ = small_denoiser()
    den.to(rt.device, memory_format=torch.channels_last)
    opt = make_optimizer(den, recipe.train_wm, rt)
    assert opt.defaults.get("fused") is True
    loss_mod = DenoiserLoss(den, 1)
    obs, act = inputs(8, 6, rt.device)
    mask = torch.ones(8, 6, dtype=torch.bool, device=rt.device)
    draws = {"noise": torch.randn(2, 8, 3, 64, 64, device=rt.device), "level": torch.rand(2, 8, device=rt.device) + 0.1,
             "offset": torch.randn(2, 8, 3, 1, 1, device=rt.device)}
    before = [p.detach().clone() for p in den.parameters()]
    losses = []
    for _ in range(3):
        with rt.autocast():
            loss = loss_mod(obs, act, mask, **draws)
        assert loss.dtype == torch.float32 or loss.dtype == torch.bfloat16
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, den.parameters()))
    assert all(torch.isfinite(p).all() for p in den.parameters())


def test_compile_matches_eager():
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 against fp32 (make_runtime turns TF32 on)
    torch.backends.cudnn.allow_tf32 = False
    _, den, _ = small_denoiser()
    den = den.cuda().eval()
    obs, act = inputs(4, 4, "cuda")
    x = torch.randn(4, 3, 64, 64, device="cuda")
    sigma = torch.full((4,), 0.7, device="cuda")
    with torch.no_grad():
        eager = den.denoise(x, sigma, obs, act)
        den.unet = torch.compile(den.unet, dynamic=False)
        compiled = den.denoise(x, sigma, obs, act)
    torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=1e-3)


def test_sampling_on_cuda_matches_cpu():
    from wmcli.models.sampler import karras_sigmas, quantize, sample_euler

    recipe, den, _ = small_denoiser()
    den.eval()
    cfg = recipe.sampler
    obs, act = inputs(4, 4, "cpu")
    noise = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # the same start noise on both
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 against fp32
    torch.backends.cudnn.allow_tf32 = False

    def sample(device):
        # sample_next_obs's EDM path (DIAMOND's unit start noise, 3 Euler steps, quantised estimates), noise given.
        d, o, a = den.to(device), obs.to(device), act.to(device)
        sigmas = karras_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(device)
        with torch.no_grad():
            return sample_euler(lambda x, s: quantize(d.denoise(x, s, o, a), cfg.quantize), noise.to(device), sigmas, cfg).cpu()

    cpu, cuda = sample("cpu"), sample("cuda")
    diff = (cuda - cpu).abs()
    # Quantised to 8-bit levels: a rounding difference can move a pixel by a level, rarely more.
    assert diff.mean() < 0.01 and (diff > 2.5 / 127.5).float().mean() < 0.01, (diff.mean(), diff.max())


def test_train_wm_under_torchrun_nccl(tmp_path):
    from wmcli.base.checkpoint import load_checkpoint
    from wmcli.base.config import EnvConfig
    from wmcli.data.spec import EnvSpec
    from wmcli.data.store import Episode, Store

    spec = EnvSpec("ale", "Breakout", "breakout", 4, ("NOOP", "FIRE", "RIGHT", "LEFT"), (64, 64, 3), EnvConfig())
    store = Store.create_or_open(tmp_path / "store", spec.to_dict())
    w = store.writer({"policy": "random"})
    rng = np.random.default_rng(0)
    for _ in range(4):  # random frames: this test checks the plumbing, not learning
        T = 40
        end = np.eye(1, T, T - 1, dtype=bool)[0]
        w.write(Episode(rng.integers(0, 256, (T + 1, 64, 64, 3), dtype=np.uint8), rng.integers(0, 4, T),
                        rng.choice([0.0, 1.0], T).astype(np.float32), end, np.zeros(T, bool), np.zeros(T, bool)))
    out = tmp_path / "wm.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", free_port(),
           "-m", "wmcli", "train-wm", "--store", str(store.path), "-o", str(out), "--recipe", "atari100k", "--steps", "4",
           "--device", "cuda", "--no-compile", "--json",
           *[a for s in [*SMALL, "train_wm.log_every=2", "train_wm.val_every=4"] for a in ("--set", s)]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "NCCL_DEBUG": "INFO"})
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert result["steps"] == 4 and result["device"].startswith("cuda") and result["precision"] == "bf16"
    assert "NCCL INFO" in p.stderr  # the process group came up on NCCL
    assert load_checkpoint(out, "world_model")["step"] == 4
