"""GPU check: everything wmcli needs from a CUDA GPU, proven in one run of under 8 minutes.

Five parts, each a function below, run in order; a part that fails or is skipped says why in the
table and the others still run:
  (a) tests    pytest -m cuda tests/test_cuda.py (bf16 + fused AdamW + channels_last step,
               torch.compile vs eager, CUDA vs CPU sampling, train-wm under torchrun with NCCL);
  (b) burst    the atari100k denoiser and reward/end model trained by wmcli's own loop
               (train_world_model) on a synthetic store written with wmcli's Store: bf16 autocast,
               fused AdamW, channels_last, torch.compile; checks the losses fall and stay finite;
               then a few agent steps (train_agent) when gymnasium is importable;
  (c) speed    denoiser training steps/s and imagined frames/s (3 Euler steps + reward/end) at
               batch 1, 32 and 256, as a share of a bf16 matmul peak measured in the same run;
  (d) scale    `wmcli train-wm` under `torchrun --nproc-per-node 1` (NCCL), and `wmcli run` for a
               few shrunken epochs of the atari100k schedule on real Breakout (needs ale-py and
               gymnasium: carried as wheels on the device machine, see docs/performance.md);
  (e) estimate the wall time of a full Atari 100k run (wmcli.run.plan) from the rates measured.

    python benchmarks/gpu_check.py --out /tmp/gpu_check.json    # on a CUDA GPU (bf16, compile)
    python benchmarks/gpu_check.py --dry                         # CPU, tiny sizes, same functions

Without a GPU (or with --dry) it runs the same functions at tiny sizes on the CPU, in fp32 with
plain AdamW and without torch.compile, and the table says which GPU parts were skipped.
--out X.json also writes X.md (the table). Timings are medians of repeated calls after warm-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("wmcli") is None:  # not installed (the device machine): from this checkout,
    sys.path.insert(0, str(ROOT))  # and for the child processes (pytest, torchrun, wmcli run) too
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
from _common import count_flops, machine_info  # noqa: E402

from wmcli.base.config import EnvConfig  # noqa: E402
from wmcli.base.recipe import load_recipe  # noqa: E402
from wmcli.base.runtime import Runtime, make_optimizer, make_runtime  # noqa: E402
from wmcli.data.spec import EnvSpec  # noqa: E402
from wmcli.data.store import Episode, Store  # noqa: E402
from wmcli.models.sampler import sample_next_obs  # noqa: E402
from wmcli.run import plan  # noqa: E402
from wmcli.training.train_wm import train_world_model  # noqa: E402
from wmcli.world.batches import DenoiserLoss  # noqa: E402
from wmcli.world.world_model import build_networks  # noqa: E402

WHEELS = ["gymnasium==1.4.0", "ale-py==0.12.1", "farama-notifications==0.0.4"]
"""What `wmcli run` needs that the device machine lacks (their other needs, numpy, cloudpickle and
typing-extensions, are there). imageio-ffmpeg (evaluation videos) is a 68 MB wheel, over the
64 MiB a call may carry."""

# A CPU-sized network for the dry mode (the tests' MICRO sizes).
MICRO = [
    "denoiser.unet.channels=[8,8]", "denoiser.unet.depths=[1,1]", "denoiser.unet.attn_depths=[false,false]",
    "denoiser.unet.cond_channels=16", "denoiser.action_emb_dim=4", "denoiser.unet.attn_head_dim=4",
    "reward_end.channels=[8,8]", "reward_end.depths=[1,1]", "reward_end.cond_channels=8",
    "reward_end.lstm_dim=16", "reward_end.attn_head_dim=4", "actor_critic.channels=[8,8]", "actor_critic.lstm_dim=16",
    "train_wm.batch_size=4", "train_wm.rew_end_batch_size=2", "train_wm.rew_end_seq_len=4", "train_wm.val_batches=1",
    "train_agent.batch_size=2", "train_agent.horizon=3",
]


@dataclass
class Mode:
    """The sizes of one check: the GPU's (DIAMOND's) or the dry CPU one's."""

    gpu: bool
    recipe: str
    overrides: list[str]
    frame_size: int
    burst_steps: int  # train_world_model steps in (b)
    agent_steps: int  # train_agent steps in (b)
    batches: tuple[int, ...]  # (c)
    min_time: float  # (c): time each measurement for at least this long
    peak_n: int  # matmul size of the peak
    ddp_steps: int  # (d)
    run_sets: list[str] = field(default_factory=list)  # (d): `wmcli run` overrides

    @property
    def device(self) -> str:
        return "cuda" if self.gpu else "cpu"

    @property
    def precision(self) -> str:
        return "bf16" if self.gpu else "fp32"


def make_mode(gpu: bool, burst_steps: int | None) -> Mode:
    # wmcli run: 300 initial random steps, then (400 - 300) / 100 = 1 collecting epoch + 1 final one;
    # tiny step counts; one evaluation episode capped at 2,000 frames (Breakout waits for FIRE).
    run_sets = ["run.initial_collect_steps=300", "run.initial_collect_min_rewards=0", "run.initial_collect_max_steps=300",
                "run.total_real_steps=400", "run.final_epochs=1", "run.eval_every=100", "run.eval_episodes=1",
                "run.final_eval_episodes=1", "run.eval_num_envs=1", "env.max_episode_frames=2000",
                "run.eval_video=false",  # the GPU machine has no imageio-ffmpeg (its wheel is over the carry limit)
                "train_wm.log_every=10", "train_wm.val_every=1000", "train_wm.checkpoint_every=1000",
                "train_agent.log_every=10", "train_agent.checkpoint_every=1000"]
    if gpu:
        return Mode(True, "atari100k", [], 64, burst_steps or 150, 20, (1, 32, 256), 1.0, 8192, 30,
                    run_sets + ["train_wm.steps=40", "run.wm_steps=20", "train_agent.steps=20", "run.agent_steps=10"])
    return Mode(False, "tiny", MICRO, 64, burst_steps or 8, 2, (1, 2, 4), 0.0, 512, 2,
                [*MICRO, *run_sets, "train_wm.steps=2", "run.wm_steps=1", "train_agent.steps=2", "run.agent_steps=1"])


# ---- shared helpers ----------------------------------------------------------------------------


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device: str, min_time: float, warmup: int = 2, max_reps: int = 50) -> float:
    """Median seconds of one call of fn after `warmup` calls (compilation happens there), over
    at least 3 calls and at least `min_time` seconds (1 call when min_time is 0: the dry mode)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while not times or (min_time > 0 and (len(times) < 3 or time.perf_counter() - start < min_time) and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_peak(device: str, n: int) -> tuple[float, str]:
    """FLOP/s of an n x n x n matmul: bf16 on CUDA (the tensor cores' rate), fp32 on the CPU."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    t = time_call(lambda: torch.mm(a, b), device, 0.5 if device == "cuda" else 0.0, warmup=3)
    return 2 * n**3 / t, f"{n}x{n} {str(dtype).removeprefix('torch.')} matmul"


def synthetic_store(path: Path, frame_size: int, episodes: int = 12, length: int = 120, seed: int = 0) -> Store:
    """A store of Breakout-shaped episodes written with wmcli's Store: a bright square that the
    actions move left and right while it falls, over a fixed background; reward +1 when it
    reaches the bottom (then it restarts at the top), an end at the episode's last step.
    Learnable dynamics, so a few hundred steps show the losses falling; no emulator needed."""
    S = frame_size
    spec = EnvSpec("ale", "Breakout", "breakout", 4, ("NOOP", "FIRE", "RIGHT", "LEFT"), (S, S, 3), EnvConfig(frame_size=S))
    store = Store.create_or_open(path, spec.to_dict())
    writer = store.writer({"policy": "synthetic"})
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S]
    background = np.stack([40 + 60 * xx / S, 30 + 40 * yy / S, np.full((S, S), 70)], -1).astype(np.uint8)
    side = max(2, S // 8)
    for _ in range(episodes):
        act = rng.integers(0, 4, size=length)
        rew = np.zeros(length, np.float32)
        x, y = int(rng.integers(0, S - side)), 0
        frames = []
        for t in range(length + 1):
            f = background.copy()
            f[y:y + side, x:x + side] = (250, 220, 60)
            frames.append(f)
            if t == length:
                break
            x = int(np.clip(x + {2: 2, 3: -2}.get(int(act[t]), 0), 0, S - side))
            y += 2
            if y + side > S:
                y, rew[t] = 0, 1.0
        end = np.zeros(length, bool)
        end[-1] = True
        writer.write(Episode(np.stack(frames), act, rew, end, np.zeros(length, bool), np.zeros(length, bool)))
    return store


def importable(*names: str) -> list[str]:
    """The names among `names` that cannot be imported here."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


# ---- (a) the CUDA tests ------------------------------------------------------------------------


def part_tests(mode: Mode, work: Path, budget: float) -> list[dict]:
    """pytest -m cuda: they run on a GPU and skip without one. --noconftest: the shared conftest.py
    imports ale-py (for its real-game fixtures), which the device machine may not have."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "--noconftest", str(ROOT / "tests" / "test_cuda.py")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, cwd=ROOT)
    last = (p.stdout.strip().splitlines() or ["(no output)"])[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", last)}
    (work / "pytest_cuda.log").write_text(p.stdout + p.stderr)
    ok = p.returncode == 0 and counts.get("passed", 0) > 0 and not counts.get("skipped")
    status = "ok" if ok else ("skipped" if p.returncode == 0 and not counts.get("passed") else "FAILED" if p.returncode else "partial")
    return [{"part": "a tests", "what": "pytest -m cuda tests/test_cuda.py", "value": last, "status": status,
             "note": "" if mode.gpu else "no CUDA GPU: every cuda test skips"}]


# ---- (b) a training burst ----------------------------------------------------------------------


def metrics(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def part_burst(mode: Mode, rt: Runtime, work: Path, store: Store, ctx: dict) -> list[dict]:
    """wmcli's own train_world_model at the recipe's sizes, then train_agent on its checkpoint."""
    n = mode.burst_steps
    recipe = load_recipe(mode.recipe, [*mode.overrides, f"train_wm.steps={n}", f"train_wm.log_every={max(1, n // 5)}",
                                       f"train_wm.val_every={n}", f"train_wm.checkpoint_every={n}"])
    wm_path = work / "wm.pt"
    t = time.perf_counter()
    r = train_world_model(recipe, store.path, wm_path, rt, overwrite=True)
    seconds = time.perf_counter() - t
    lines = [m for m in metrics(wm_path.with_suffix(".metrics.jsonl")) if "losses/denoiser" in m]
    first, last = lines[0], lines[-1]
    falls = {k: last[k] < first[k] for k in ("losses/denoiser", "losses/rew_end")}
    finite = all(np.isfinite(m[k]) for m in lines for k in falls)
    ctx["wm_steps_per_s"] = last["perf/steps_per_s"]  # the last window: compilation is behind it
    ctx["wm_path"] = wm_path
    feats = f"{rt.precision}, {'fused ' if rt.device.type == 'cuda' else ''}AdamW, channels_last, {'compile' if rt.compile else 'eager'}"
    rows = [
        {"part": "b burst", "what": f"train-wm {mode.recipe}: {n} steps ({feats})", "value": f"{seconds:.1f} s in all",
         "status": "ok" if finite else "FAILED", "note": "losses finite" if finite else "non-finite loss"},
        {"part": "b burst", "what": "denoiser loss, first -> last log", "value":
         f"{first['losses/denoiser']:.4f} -> {last['losses/denoiser']:.4f}", "status": "ok" if falls["losses/denoiser"] else "FAILED",
         "note": "falls" if falls["losses/denoiser"] else "does not fall"},
        {"part": "b burst", "what": "reward/end loss, first -> last log", "value":
         f"{first['losses/rew_end']:.4f} -> {last['losses/rew_end']:.4f}", "status": "ok" if falls["losses/rew_end"] else "FAILED",
         "note": "falls" if falls["losses/rew_end"] else "does not fall"},
        {"part": "b burst", "what": "world-model steps/s (last log window)", "value": f"{ctx['wm_steps_per_s']:.2f}",
         "status": "ok", "note": f"denoiser batch {recipe.train_wm.batch_size} + reward/end {recipe.train_wm.rew_end_batch_size}"
                                  f"x{recipe.train_wm.rew_end_seq_len}; first-window steps/s {first['perf/steps_per_s']:.2f}"},
    ]
    ctx["wm_result"] = r
    missing = importable("gymnasium")
    if missing:
        rows.append({"part": "b burst", "what": f"train-agent {mode.agent_steps} steps", "value": "-", "status": "skipped",
                     "note": "the agent's imagination env needs gymnasium: carry its wheel (docs/performance.md)"})
        return rows
    from wmcli.training.train_agent import train_agent  # needs gymnasium (the imagination env)

    k = mode.agent_steps
    arecipe = replace(recipe, train_agent=replace(recipe.train_agent, steps=k, log_every=max(1, k // 2), checkpoint_every=k))
    a = train_agent(arecipe, wm_path, work / "agent.pt", rt, store_path=store.path, overwrite=True)
    alines = metrics((work / "agent.pt").with_suffix(".metrics.jsonl"))
    rate = alines[-1].get("perf/steps_per_s") if alines else None
    ctx["agent_steps_per_s"] = rate
    rows.append({"part": "b burst", "what": f"train-agent {a['steps']} steps (horizon {recipe.train_agent.horizon}, "
                                            f"batch {recipe.train_agent.batch_size})",
                 "value": f"{rate:.2f} steps/s" if rate else "-", "status": "ok", "note": "last log window"})
    return rows


# ---- (c) speed at batch 1, 32, 256 ---------------------------------------------------------------


def part_speed(mode: Mode, rt: Runtime, ctx: dict, budget: float) -> list[dict]:
    """Denoiser training steps/s and imagined frames/s at each batch size, against the peak."""
    started = time.perf_counter()
    peak, how = matmul_peak(mode.device, mode.peak_n)
    ctx["peak"] = peak
    rows = [{"part": "c speed", "what": f"peak: {how}", "value": f"{peak / 1e12:.1f} TFLOP/s" if mode.gpu else
             f"{peak / 1e9:.1f} GFLOP/s", "status": "ok", "note": "measured in this run"}]
    recipe = load_recipe(mode.recipe, mode.overrides)
    nc, S, A = recipe.denoiser.num_context, mode.frame_size, 4
    for B in sorted(mode.batches, key=lambda b: (b != 32, b)):  # batch 32 first: the estimate needs it
        if time.perf_counter() - started > budget:
            rows.append({"part": "c speed", "what": f"batch {B}", "value": "-", "status": "skipped", "note": "out of time"})
            continue
        torch.manual_seed(0)
        den, rew_end = build_networks(recipe, A)
        den.to(rt.device, memory_format=torch.channels_last)
        rew_end.to(rt.device, memory_format=torch.channels_last)
        opt = make_optimizer(den, recipe.train_wm, rt)  # fused AdamW on CUDA
        loss_mod = DenoiserLoss(den, 1)
        g = torch.Generator(device=rt.device).manual_seed(0)
        obs = torch.rand(B, nc + 2, 3, S, S, device=rt.device, generator=g) * 2 - 1
        act = torch.randint(0, A, (B, nc + 2), device=rt.device, generator=g)
        mask = torch.ones(B, nc + 2, dtype=torch.bool, device=rt.device)
        draws = {"noise": torch.randn(2, B, 3, S, S, device=rt.device, generator=g),
                 "level": torch.rand(2, B, device=rt.device, generator=g) + 0.1,
                 "offset": torch.randn(2, B, 3, 1, 1, device=rt.device, generator=g)}

        def train_step():
            with rt.autocast():
                loss = loss_mod(obs, act, mask, **draws)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(den.parameters(), recipe.train_wm.grad_clip_denoiser)
            opt.step()

        hidden = None

        def imagine():
            # One imagined step of B envs: 3 Euler steps of the denoiser, then the reward/end model.
            nonlocal hidden
            with torch.no_grad(), rt.autocast():
                nxt = sample_next_obs(den, obs[:, :nc], act[:, :nc], recipe.sampler, g)
                _, _, hidden = rew_end(obs[:, nc - 1:nc], act[:, nc - 1:nc], nxt[:, None].to(obs.dtype), hidden)

        flops_train, flops_imagine = count_flops(train_step), count_flops(imagine)  # eager, before compiling
        if rt.compile:
            den.unet = torch.compile(den.unet, dynamic=False)  # the heavy part: training and sampling go through it
        t_train = time_call(train_step, mode.device, mode.min_time)
        t_imag = time_call(imagine, mode.device, mode.min_time)
        if B == 32 or "t_imagine_32" not in ctx:  # without batch 32 (dry): scaled linearly from the first batch
            ctx["t_imagine_32"] = t_imag * 32 / B
        ctx.setdefault("speed", {})[B] = {"train_s": t_train, "imagine_s": t_imag}
        share_t, share_i = flops_train / t_train / peak, flops_imagine / t_imag / peak
        rows.append({"part": "c speed", "what": f"batch {B}: train steps/s", "value": f"{1 / t_train:.2f}",
                     "status": "ok", "note": f"{B / t_train:,.0f} samples/s; {flops_train / 1e9:,.0f} GFLOP/step; "
                                             f"{100 * share_t:.0f}% of peak"})
        rows.append({"part": "c speed", "what": f"batch {B}: imagined frames/s", "value": f"{B / t_imag:,.0f}",
                     "status": "ok", "note": f"3 Euler steps + reward/end; {flops_imagine / 1e9:,.1f} GFLOP/batch; "
                                             f"{100 * share_i:.0f}% of peak"})
    return rows


# ---- (d) torchrun and wmcli run ----------------------------------------------------------------


def part_scale(mode: Mode, work: Path, store: Store, budget: float) -> list[dict]:
    """`wmcli train-wm` under torchrun with one process (NCCL on CUDA, gloo on the CPU), then
    `wmcli run` for a few shrunken epochs on real Breakout when ale-py and gymnasium are here."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NCCL_DEBUG": "INFO"}
    backend = "nccl" if mode.gpu else "gloo"
    out = work / "wm_ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", free_port(),
           "-m", "wmcli", "train-wm", "--store", str(store.path), "-o", str(out), "--recipe", mode.recipe,
           *sets([*mode.overrides, "train_wm.log_every=5", "train_wm.val_every=1000"]), "--steps", str(mode.ddp_steps),
           "--device", mode.device, "--no-compile", "--overwrite", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env=env, cwd=work)
    (work / "torchrun.log").write_text(p.stdout + p.stderr)
    rows = []
    if p.returncode == 0:
        res = json.loads(p.stdout)
        seen = "NCCL INFO" in p.stderr if mode.gpu else True
        rows.append({"part": "d scale", "what": f"torchrun --nproc-per-node 1 train-wm ({backend})",
                     "value": f"{res['steps']} steps, {res['seconds']:.1f} s", "status": "ok" if seen else "FAILED",
                     "note": ("NCCL initialised" if seen else "no NCCL lines in the log") if mode.gpu else "gloo on the CPU"})
    else:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:150]
        rows.append({"part": "d scale", "what": f"torchrun --nproc-per-node 1 train-wm ({backend})", "value": f"exit {p.returncode}",
                     "status": "FAILED", "note": tail})
    missing = importable("ale_py", "gymnasium")
    if missing:
        rows.append({"part": "d scale", "what": "wmcli run (atari100k schedule, shrunk)", "value": "-", "status": "skipped",
                     "note": f"{', '.join(missing)} missing: carry the wheels {', '.join(WHEELS)} (docs/performance.md)"})
        return rows
    left = budget - (time.perf_counter() - started)
    rcmd = [sys.executable, "-m", "wmcli", "run", str(work / "run"), "--recipe", mode.recipe, "--env", "Breakout",
            *sets(mode.run_sets), "--device", mode.device, "--no-compile", "--json"]  # compile: (b)
    p = subprocess.run(rcmd, capture_output=True, text=True, timeout=max(left, 30), env=env, cwd=work)
    (work / "run.log").write_text(p.stdout + p.stderr)
    note = "" if importable("imageio_ffmpeg") == [] else "imageio-ffmpeg missing: evaluation videos cannot be written"
    if p.returncode == 0:
        res = json.loads(p.stdout)
        rows.append({"part": "d scale", "what": f"wmcli run Breakout ({mode.recipe}, shrunk schedule)",
                     "value": f"{res['epochs_done']} of {res['epochs']} epochs, {res['env_steps']} env steps, {res['seconds']:.0f} s",
                     "status": "ok", "note": note or "collect, train-wm, train-agent, eval"})
    else:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:150]
        rows.append({"part": "d scale", "what": f"wmcli run Breakout ({mode.recipe}, shrunk schedule)",
                     "value": f"exit {p.returncode}", "status": "FAILED", "note": f"{tail} {note}".strip()})
    return rows


# ---- (e) a full Atari 100k run, estimated ------------------------------------------------------

COLLECT_S_PER_STEP = 2e-3
"""Assumed seconds per real env step when collecting: one ALE env (~0.8 ms a step on a CPU core,
docs/performance.md) plus a policy forward on the GPU (~1 ms at batch 1)."""
EVAL_STEPS_PER_EPISODE = 2_000
"""Assumed steps per evaluation episode (Breakout by a trained agent: a few thousand frames / 4)."""


def estimate(ctx: dict) -> tuple[list[dict], dict]:
    """Hours of a full atari100k run: plan()'s step counts times the rates measured above."""
    p = plan(load_recipe("atari100k"), 5_000)
    t_wm = 1 / ctx["wm_steps_per_s"]
    horizon = load_recipe("atari100k").train_agent.horizon
    t_imag = ctx.get("t_imagine_32")
    if ctx.get("agent_steps_per_s"):
        t_agent, how = 1 / ctx["agent_steps_per_s"], "measured train-agent step (b)"
    elif t_imag:
        t_agent, how = horizon * t_imag, f"{horizon} imagined batches of 32 (c), actor-critic not counted: a lower bound"
    else:
        raise RuntimeError("neither an agent rate (b) nor an imagination rate at batch 32 (c) was measured")
    parts = {
        "world model": p["wm_steps"] * t_wm,
        "agent": p["agent_steps"] * t_agent,
        "collection": p["real_steps"] * COLLECT_S_PER_STEP,
        "evaluation": p["eval_episodes"] * EVAL_STEPS_PER_EPISODE * COLLECT_S_PER_STEP / 4,  # 4 envs at once
    }
    total = sum(parts.values())
    rows = [{"part": "e estimate", "what": f"world model: {p['wm_steps']:,} steps x {t_wm * 1e3:.0f} ms",
             "value": f"{parts['world model'] / 3600:.1f} h", "status": "ok", "note": "rate of the burst (b)"},
            {"part": "e estimate", "what": f"agent: {p['agent_steps']:,} steps x {t_agent * 1e3:.0f} ms",
             "value": f"{parts['agent'] / 3600:.1f} h", "status": "ok", "note": how},
            {"part": "e estimate", "what": f"collection: {p['real_steps']:,} real steps",
             "value": f"{parts['collection'] / 3600:.2f} h", "status": "ok", "note": f"assumed {COLLECT_S_PER_STEP * 1e3:.0f} ms/step"},
            {"part": "e estimate", "what": f"evaluation: {p['eval_episodes']:,} episodes",
             "value": f"{parts['evaluation'] / 3600:.2f} h", "status": "ok",
             "note": f"assumed {EVAL_STEPS_PER_EPISODE:,} steps/episode, 4 envs"},
            {"part": "e estimate", "what": f"full Atari 100k run ({p['epochs']} epochs)", "value": f"{total / 3600:.1f} h",
             "status": "ok", "note": "one game, one GPU"}]
    return rows, {"plan": p, "seconds": parts, "total_s": total}


# ---- the whole check ---------------------------------------------------------------------------


def run_part(name: str, fn, rows: list[dict], timings: dict) -> None:
    """Run one part; a failure becomes a FAILED row (with the error) and the next part runs."""
    t = time.perf_counter()
    try:
        rows.extend(fn())
    except Exception as e:  # the table must come back whatever broke
        traceback.print_exc()
        rows.append({"part": name, "what": "(part)", "value": "-", "status": "FAILED", "note": f"{type(e).__name__}: {e}"[:200]})
    timings[name] = time.perf_counter() - t
    print(f"[gpu_check] {name}: {timings[name]:.1f} s", file=sys.stderr, flush=True)


def markdown(rows: list[dict]) -> str:
    headers = ["part", "what", "value", "status", "note"]
    cells = [[str(r.get(h, "")) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny sizes (the default when no CUDA GPU is visible)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here, and the table as Markdown beside it (.md)")
    ap.add_argument("--work", type=Path, help="folder for the store, checkpoints and logs (default: a temporary one)")
    ap.add_argument("--burst-steps", type=int, help="train-wm steps in (b) (default: 150 on a GPU, 8 dry)")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: tests,burst,speed,scale")
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available() and not args.dry
    mode = make_mode(gpu, args.burst_steps)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    work = args.work or Path(tempfile.mkdtemp(prefix="wmcli-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor"))  # children reuse compiled kernels
    os.environ.setdefault("WMCLI_TENSORBOARD", "0")
    info = machine_info()
    info["torch"] = torch.__version__
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    t0 = time.perf_counter()
    if not gpu:  # one CPU thread per process: tiny ops on a busy 2-core machine ran 10x slower with 2
        os.environ.setdefault("WMCLI_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    rt = make_runtime(mode.device, mode.precision, compile=mode.gpu)
    store = synthetic_store(work / "store", mode.frame_size)
    rows: list[dict] = []
    timings: dict[str, float] = {}
    ctx: dict = {}
    if not gpu:
        rows.append({"part": "-", "what": "DRY MODE", "value": "no CUDA GPU" if not args.dry else "--dry", "status": "skipped",
                     "note": "GPU parts skipped: CUDA tests, bf16, fused AdamW, torch.compile, NCCL; tiny CPU sizes, "
                             "rates say nothing about a GPU"})
    if "tests" not in skip:
        run_part("a tests", lambda: part_tests(mode, work, 180), rows, timings)
    if "burst" not in skip:
        run_part("b burst", lambda: part_burst(mode, rt, work, store, ctx), rows, timings)
    if "speed" not in skip:
        run_part("c speed", lambda: part_speed(mode, rt, ctx, 150), rows, timings)
    if "scale" not in skip:
        run_part("d scale", lambda: part_scale(mode, work, store, 180), rows, timings)
    est: dict = {}

    def part_estimate():
        r, e = estimate(ctx)
        est.update(e)
        return r if gpu else [{**x, "note": f"{x['note']} (dry: tiny CPU rates)"} for x in r]

    run_part("e estimate", part_estimate, rows, timings)
    total = time.perf_counter() - t0
    rows.append({"part": "-", "what": "gpu_check wall time", "value": f"{total:.0f} s", "status": "ok" if total < 480 else "slow",
                 "note": "target: under 8 minutes on the GPU"})
    table = markdown(rows)
    print(f"\n# wmcli GPU check ({'GPU: ' + info['gpu'] if gpu else 'DRY MODE: GPU parts skipped'}), {info['date_utc']}")
    print(f"# {info['command']}; torch {torch.__version__}; work folder {work}\n")
    print(table)
    if args.out:
        result = {"mode": "gpu" if gpu else "dry", "machine": info, "rows": rows, "part_seconds": timings,
                  "estimate": est, "speed": {str(k): v for k, v in ctx.get("speed", {}).items()},
                  "peak_flops": ctx.get("peak"), "wall_s": total}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
        args.out.with_suffix(".md").write_text(table + "\n")
        print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    return 1 if any(r["status"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
