"""World-model quality: does a briefly trained model predict held-out frames better than copying?

1. Collect ~20k frames of random-policy play into a store (cached between runs).
2. Train a recipe (default: tiny) for at most --minutes on this machine.
3. On held-out episodes (wmcli.world.measure.evaluate_world_model, as `wmcli eval wm.pt --store`):
   the next frame at 1 step, and 15-step rollouts under the real actions, each against the
   copy-last-frame baseline (PSNR of the MSE pooled over all compared frames: a copied frame
   is often exact, so per-frame PSNR would be infinite); reward and end precision/recall/F1
   over every held-out transition.

    python benchmarks/quality_wm.py --game Breakout --frames 20000 --minutes 20
    python benchmarks/quality_wm.py --steps 600 --minutes 60 --precision bf16 --set train_wm.seed=1 --out /tmp/q/bf16-1.pt
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

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
    ap.add_argument("--precision", default="auto", help="fp32, bf16 or auto (wmcli's choice for this machine)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from wmcli.base.config import EnvConfig
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.data.buffer import EpisodeBuffer
    from wmcli.data.collect import collect
    from wmcli.data.env import make_spec
    from wmcli.data.store import Store, split_episodes
    from wmcli.training.train_wm import train_world_model
    from wmcli.world.measure import evaluate_world_model
    from wmcli.world.world_model import load_world_model

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
        rt = make_runtime("cpu" if not torch.cuda.is_available() else "auto", args.precision)
        t0 = time.time()
        train_summary = train_world_model(
            recipe, store_path, out, rt, resume=args.resume, overwrite=not args.resume,
            max_seconds=args.minutes * 60,
            on_progress=lambda r: print(
                f"step {r.done}: " + " ".join(f"{k}={v:.4g}" for k, v in r.metrics.items() if k != "step" and isinstance(v, (int, float))),
                file=sys.stderr),
        )
        train_summary["wall_minutes"] = (time.time() - t0) / 60

    wm = load_world_model(out)
    held_out = split_episodes(store.episode_paths(), wm.recipe.train_wm.val_fraction)[1]
    ev = evaluate_world_model(wm, EpisodeBuffer(store, episodes=held_out), segments=args.segments, horizon=args.horizon,
                              seed=1234)
    result = {
        "game": args.game, "store": str(store_path), "checkpoint": str(out),
        "recipe": args.recipe, "overrides": args.set, "trained_steps": wm.step, "train": train_summary, **ev,
        "precision": train_summary["precision"] if train_summary else None,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"trained {wm.step} steps; held-out 1-step PSNR {ev['psnr_1step']:.2f} dB "
              f"vs copy-last {ev['psnr_1step_copy_last']:.2f} dB")
        print("rollout step  model  copy-last")
        for t, (m, c) in enumerate(zip(ev["psnr_per_step"], ev["psnr_per_step_copy_last"])):
            print(f"{t + 1:>12}  {m:5.2f}  {c:5.2f}")
        for k in ("reward", "end"):
            print(f"{k}: precision {ev[k]['precision']:.3f} recall {ev[k]['recall']:.3f} "
                  f"F1 {ev[k]['f1']:.3f} over {ev[k]['support']} events")


if __name__ == "__main__":
    main()
