"""Denoiser speed at DIAMOND's size: training steps and imagined frames per second, and how
much of the machine's matmul peak they reach.

For each variant (memory format, torch.compile, precision), interleaved over --repeats rounds:
- train: one DIAMOND training step of the atari100k denoiser at batch 32 (two loss terms with
  the autoregressive step, backward, gradient clip, AdamW step);
- imagine: one next frame for a batch of 32 with 3 Euler steps (3 network evaluations), no grad.
FLOPs are counted by torch.utils.flop_counter on the same calls; the peaks are 2048x2048
torch.mm in fp32 and (with --bf16) in bf16, measured in the same run, interleaved with the
variants; each variant's share is of the peak of its own precision. Medians are reported.

    python benchmarks/bench_wm_speed.py                       # fp32 and channels_last
    python benchmarks/bench_wm_speed.py --compile --bf16      # add torch.compile and bf16 autocast
    python benchmarks/bench_wm_speed.py --compare-malloc      # glibc's default allocator vs wmcli's heap setting

The process uses wmcli's CPU allocator setting (wmcli.base.runtime.keep_large_allocations_on_heap),
as `wmcli train-wm` does, unless WMCLI_MALLOC=default. --compare-malloc runs the channels_last
variant in fresh child processes, alternating the two settings, since an allocator cannot be
switched back and forth inside one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import count_flops, cpu_model, peak_gflops  # noqa: E402

from wmcli.base.runtime import cpu_bf16_units  # noqa: E402


def make_variant(name: str, channels_last: bool, compiled: bool, precision: str, batch: int, num_actions: int = 4,
                 recipe_name: str = "atari100k"):
    from wmcli.base.recipe import load_recipe
    from wmcli.models.denoiser import Denoiser
    from wmcli.models.sampler import sample_next_obs
    from wmcli.world.batches import DenoiserLoss

    recipe = load_recipe(recipe_name)
    torch.manual_seed(0)
    den = Denoiser(recipe.denoiser, num_actions)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    den.to(memory_format=fmt)
    if compiled:
        den.unet = torch.compile(den.unet)  # the heavy part; training and sampling both go through it
    loss_mod = DenoiserLoss(den, 1)
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4)
    n = recipe.denoiser.num_context
    S = recipe.env.frame_size
    obs = torch.rand(batch, n + 2, 3, S, S) * 2 - 1
    act = torch.randint(0, num_actions, (batch, n + 2))
    mask = torch.ones(batch, n + 2, dtype=torch.bool)
    draws = {"noise": torch.randn(2, batch, 3, S, S), "level": torch.rand(2, batch) + 0.1,
             "offset": torch.randn(2, batch, 3, 1, 1)}
    ac = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False))

    def train_step():
        with ac:
            loss = loss_mod(obs, act, mask, **draws)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()

    def imagine():
        with torch.no_grad(), ac:
            sample_next_obs(den, obs[:, :n], act[:, :n], recipe.sampler, torch.Generator().manual_seed(0))

    return {"name": name, "train": train_step, "imagine": imagine, "den": den, "precision": precision}


def child(args, heap: bool) -> None:
    """One warm-up and --repeats timed train steps and imagined batches of fp32 channels_last."""
    v = make_variant("fp32 channels_last", True, False, "fp32", args.batch)
    v["train"]()
    v["imagine"]()
    out = {"heap": heap, "train_s": [], "imagine_s": [], "peak": peak_gflops()}
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.repeats):
        t = time.perf_counter()
        v["train"]()
        out["train_s"].append(time.perf_counter() - t)
        t = time.perf_counter()
        v["imagine"]()
        out["imagine_s"].append(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["sys_s_per_round"] = (r1.ru_stime - r0.ru_stime) / args.repeats
    out["user_s_per_round"] = (r1.ru_utime - r0.ru_utime) / args.repeats
    out["minor_faults_per_round"] = (r1.ru_minflt - r0.ru_minflt) / args.repeats
    out["max_rss_mb"] = r1.ru_maxrss / 1024
    out["flops_train"] = count_flops(v["train"])
    out["flops_imagine"] = count_flops(v["imagine"])
    print(json.dumps(out))


def compare_malloc(args) -> None:
    """Alternate child processes with WMCLI_MALLOC=default and =heap; medians over all rounds."""
    settings = ["default", "heap"]
    runs = {m: [] for m in settings}
    for r in range(args.repeats):
        for m in settings[r % 2:] + settings[:r % 2]:
            env = {**os.environ, "WMCLI_MALLOC": m}
            cmd = [sys.executable, __file__, "--child", "--repeats", "2", "--batch", str(args.batch)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[m].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {m}: train {runs[m][-1]['train_s']} imagine {runs[m][-1]['imagine_s']}", file=sys.stderr)
    peak = statistics.median(x["peak"] for m in settings for x in runs[m])
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {' '.join(['python', *sys.argv])}  "
          f"torch {torch.__version__}  peak mm {peak:.1f} GFLOP/s (median of children)")
    print(f"{'malloc':<8} {'train s':>8} {'%peak':>6} {'imagine s':>10} {'%peak':>6} {'sys s/round':>12} "
          f"{'faults/round':>13} {'max RSS MB':>11}")
    base = None
    for m in settings:
        tt = statistics.median(t for x in runs[m] for t in x["train_s"])
        ti = statistics.median(t for x in runs[m] for t in x["imagine_s"])
        ft, fi = runs[m][0]["flops_train"], runs[m][0]["flops_imagine"]
        sys_s = statistics.median(x["sys_s_per_round"] for x in runs[m])
        faults = statistics.median(x["minor_faults_per_round"] for x in runs[m])
        rss = statistics.median(x["max_rss_mb"] for x in runs[m])
        print(f"{m:<8} {tt:8.2f} {100 * ft / tt / 1e9 / peak:5.0f}% {ti:10.2f} {100 * fi / ti / 1e9 / peak:5.0f}% "
              f"{sys_s:12.1f} {faults:13,.0f} {rss:11,.0f}")
        base = base or (tt, ti)
    print(f"heap vs default: train {base[0] / tt:.2f}x, imagine {base[1] / ti:.2f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--recipe", default="atari100k", help="the recipe whose denoiser is measured (default atari100k)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="add torch.compile variants (cold compile: minutes)")
    ap.add_argument("--bf16", action="store_true", help="add a bf16 autocast variant")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--compare-malloc", action="store_true", help="glibc default vs heap setting, in child processes")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare_malloc:
        compare_malloc(args)
        return
    from wmcli.base.runtime import keep_large_allocations_on_heap

    heap = keep_large_allocations_on_heap()
    if args.child:
        child(args, heap)
        return

    r = args.recipe
    variants = [make_variant("fp32", False, False, "fp32", args.batch, recipe_name=r),
                make_variant("fp32 channels_last", True, False, "fp32", args.batch, recipe_name=r)]
    if args.compile:
        variants.append(make_variant("fp32 channels_last compile", True, True, "fp32", args.batch, recipe_name=r))
    if args.bf16:
        variants.append(make_variant("bf16 autocast channels_last", True, False, "bf16", args.batch, recipe_name=r))

    base = variants[0]
    flops_train = count_flops(base["train"])
    flops_imagine = count_flops(base["imagine"])
    params = sum(p.numel() for p in base["den"].parameters())
    for v in variants:  # warm up (and compile)
        t = time.perf_counter()
        v["train"]()
        v["imagine"]()
        v["warmup_s"] = time.perf_counter() - t
        v["t_train"], v["t_imagine"] = [], []
    precisions = sorted({v["precision"] for v in variants}, key=["fp32", "bf16"].index)
    peaks = {p: [] for p in precisions}
    for _ in range(args.repeats):
        for p in precisions:
            peaks[p].append(peak_gflops(dtype=p))
        for v in variants:
            t = time.perf_counter()
            v["train"]()
            v["t_train"].append(time.perf_counter() - t)
            t = time.perf_counter()
            v["imagine"]()
            v["t_imagine"].append(time.perf_counter() - t)
    peak_of = {p: statistics.median(x) for p, x in peaks.items()}
    rows = []
    for v in variants:
        tt, ti = statistics.median(v["t_train"]), statistics.median(v["t_imagine"])
        own = peak_of[v["precision"]]
        rows.append({
            "variant": v["name"], "warmup_s": v["warmup_s"], "precision": v["precision"], "peak_gflops": own,
            "train_steps_per_s": 1 / tt, "train_samples_per_s": args.batch / tt,
            "train_gflops": flops_train / tt / 1e9, "train_fraction_of_peak": flops_train / tt / 1e9 / own,
            "imagined_frames_per_s": args.batch / ti, "imagine_gflops": flops_imagine / ti / 1e9,
            "imagine_fraction_of_peak": flops_imagine / ti / 1e9 / own,
        })
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(["python", *sys.argv]),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch": args.batch, "denoiser_params": params,
        "gflop_per_train_step": flops_train / 1e9, "gflop_per_imagined_batch": flops_imagine / 1e9,
        "cpu_model": cpu_model(), "cpu_bf16_units": cpu_bf16_units(),
        "peak_mm_gflops": peak_of, "peaks": peaks, "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    peaks_text = ", ".join(f"{p} {x:.1f}" for p, x in peak_of.items())
    print(f"{result['date']}  {result['cpu_model']} (bf16 units: {result['cpu_bf16_units']})  torch {result['torch']}  "
          f"{result['threads']} threads  peak mm GFLOP/s: {peaks_text}")
    print(f"{args.recipe} denoiser {params:,} params; {flops_train / 1e9:.1f} GFLOP per train step, "
          f"{flops_imagine / 1e9:.1f} GFLOP per imagined batch of {args.batch} (3 Euler steps)")
    print(f"{'variant':<30} {'steps/s':>8} {'samples/s':>10} {'GFLOP/s':>8} {'%peak':>6} | {'frames/s':>9} {'GFLOP/s':>8} {'%peak':>6}"
          "   (%peak: of the matmul peak of the variant's own precision)")
    for r in rows:
        print(f"{r['variant']:<30} {r['train_steps_per_s']:8.3f} {r['train_samples_per_s']:10.1f} {r['train_gflops']:8.1f} "
              f"{100 * r['train_fraction_of_peak']:5.0f}% | {r['imagined_frames_per_s']:9.1f} {r['imagine_gflops']:8.1f} "
              f"{100 * r['imagine_fraction_of_peak']:5.0f}%")


if __name__ == "__main__":
    main()
