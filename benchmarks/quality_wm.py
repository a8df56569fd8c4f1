"""World-model quality: does a briefly trained model predict held-out frames better than copying?

1. Collect ~20k frames of random-policy play into a store (cached between runs).
2. Train a recipe (default: tiny) for at most --minutes on this machine.
3. On held-out episodes: the next frame at 1 step, and 15-step rollouts under the real actions,
   each against the copy-last-frame baseline. PSNR is computed from the mean squared error over
   all compared frames (a copied frame is often exact, so per-frame PSNR would be infinite).

    python benchmarks/quality_wm.py --game Breakout --frames 20000 --minutes 20
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", default="Breakout")
    ap.add_argument("--frames", type=int, default=20_000, help="steps of random play to collect")
    ap.add_argument("--store", default=None, help="store path (default /tmp/wmcli-quality/<game>-<frames>)")
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--set", action="append", default=[], help="recipe overrides")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget")
    ap.add_argument("--steps", type=int, default=100_000, help="step cap (the time budget usually ends first)")
    ap.add_argument("--out", default="/tmp/wmcli-quality/wm.pt")
    ap.add_argument("--segments", type=int, default=128, help="held-out segments to evaluate")
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--resume", action="store_true", help="continue training the --out checkpoint")
    ap.add_argument("--eval-only", action="store_true", help="skip collection and training")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from wmcli.buffer import EpisodeBuffer
    from wmcli.collect import collect
    from wmcli.env import EnvConfig, make_spec
    from wmcli.frames import to_float
    from wmcli.metrics import psnr_of_mse
    from wmcli.recipe import load_recipe
    from wmcli.store import Store
    from wmcli.train_wm import make_runtime, split_episodes, train_world_model
    from wmcli.world_model import load_world_model, rollout

    store_path = Path(args.store or f"/tmp/wmcli-quality/{args.game}-{args.frames}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(args.recipe, [*args.set, f"train_wm.steps={args.steps}"])
    spec = make_spec(EnvConfig(game=args.game, frame_size=recipe.env.frame_size))
    if not (store_path / "wmcli-store.json").exists():
        print(f"collecting {args.frames} steps of {args.game} into {store_path}", file=sys.stderr)
        store = Store.create_or_open(store_path, spec.to_dict())
        collect(spec, store, args.frames, num_envs=2, seed=0)
    store = Store.open(store_path)

    train_summary = None
    if not args.eval_only:
        rt = make_runtime("cpu" if not torch.cuda.is_available() else "auto")
        t0 = time.time()
        train_summary = train_world_model(
            recipe, store_path, out, rt, resume=args.resume, overwrite=not args.resume,
            max_seconds=args.minutes * 60,
            on_progress=lambda r: print(
                f"step {r.step}: " + " ".join(f"{k}={v:.4g}" for k, v in r.metrics.items() if k != "step"),
                file=sys.stderr),
        )
        train_summary["wall_minutes"] = (time.time() - t0) / 60

    wm = load_world_model(out)
    n, H = wm.num_context, args.horizon
    _, val_paths = split_episodes(store.episode_paths(), wm.recipe.train_wm.val_fraction)
    buf = EpisodeBuffer(store, episodes=val_paths)
    rng = np.random.default_rng(1234)
    seg = buf.sample(rng, args.segments, n + H, pad_before=0, pad_after=0)
    obs = to_float(torch.from_numpy(seg.obs))  # (B, n+H, 3, h, w)
    act = torch.from_numpy(seg.act)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    dream = rollout(wm.denoiser, obs[:, :n], act[:, : n + H - 1], wm.recipe.sampler, g)  # (B, H, 3, h, w)
    dream_s = time.perf_counter() - t0
    real = obs[:, n:]
    copy = obs[:, n - 1 : n].expand_as(real)
    mse_model = (dream - real).pow(2).mean(dim=(0, 2, 3, 4))  # (H,)
    mse_copy = (copy - real).pow(2).mean(dim=(0, 2, 3, 4))
    per_step = [
        {"step": t + 1, "psnr_model": psnr_of_mse(mse_model[t].item()), "psnr_copy_last": psnr_of_mse(mse_copy[t].item())}
        for t in range(H)
    ]
    result = {
        "game": args.game, "store": str(store_path), "store_frames": buf.num_frames, "checkpoint": str(out),
        "recipe": args.recipe, "overrides": args.set, "trained_steps": wm.step,
        "train": train_summary, "held_out_episodes": buf.num_episodes, "segments": args.segments,
        "psnr_1step_model": per_step[0]["psnr_model"], "psnr_1step_copy_last": per_step[0]["psnr_copy_last"],
        "psnr_rollout_mean_model": psnr_of_mse(mse_model.mean().item()),
        "psnr_rollout_mean_copy_last": psnr_of_mse(mse_copy.mean().item()),
        "per_step": per_step,
        "imagined_frames_per_s": args.segments * H / dream_s,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"trained {wm.step} steps; held-out 1-step PSNR {result['psnr_1step_model']:.2f} dB "
              f"vs copy-last {result['psnr_1step_copy_last']:.2f} dB")
        print("rollout step  model  copy-last")
        for r in per_step:
            print(f"{r['step']:>12}  {r['psnr_model']:5.2f}  {r['psnr_copy_last']:5.2f}")


if __name__ == "__main__":
    main()
