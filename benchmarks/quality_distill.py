"""Distillation quality: a 1-step student against its 3-step teacher on held-out Breakout.

1. Distils `--teacher` (a world model trained by benchmarks/quality_wm.py on the store below)
   into a student (`wmcli.training.distill`, as `wmcli distill` does) for --steps steps on the
   teacher's held-in episodes (--eval-only: skip, evaluate --out as it is).
2. On the held-out episodes of docs/results.md (the same hash split, 128 segments, seed 1234,
   as quality_wm.py), through `evaluate_world_model`: the next frame and 15-step rollouts under
   the real actions, for the teacher with its own sampler, the teacher sampled in the student's
   number of steps (what distillation starts from), and the student; with copy-last as the floor.
   Every model draws the same segments and the same noise.

    python benchmarks/quality_distill.py --teacher /tmp/q/fp32-0.pt --steps 1000 --out /tmp/q/student.pt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import finish, machine_info, print_machine, print_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="world model (e.g. quality_wm.py --out)")
    ap.add_argument("--store", default="/tmp/wmcli-quality/Breakout-20000", help="the teacher's store (quality_wm.py's)")
    ap.add_argument("--out", default="/tmp/wmcli-quality/student.pt")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], help="distill.* overrides")
    ap.add_argument("--minutes", type=float, default=None, help="distillation time budget")
    ap.add_argument("--segments", type=int, default=128)
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()

    import torch

    from wmcli.base.runtime import make_runtime
    from wmcli.data.buffer import EpisodeBuffer
    from wmcli.data.store import Store, split_episodes
    from wmcli.training.distill import distill_world_model
    from wmcli.world.measure import evaluate_world_model
    from wmcli.world.world_model import load_world_model

    info = machine_info()
    print_machine(info)
    out = Path(args.out)
    summary = None
    if not args.eval_only:
        rt = make_runtime("cpu" if not torch.cuda.is_available() else "auto", args.precision)
        summary = distill_world_model(
            Path(args.teacher), out, rt, store_path=Path(args.store), overrides=args.set, steps=args.steps, overwrite=True,
            max_seconds=args.minutes * 60 if args.minutes else None,
            on_progress=lambda p: print(f"step {p.done}: " + " ".join(
                f"{k}={v:.4g}" for k, v in p.metrics.items() if isinstance(v, float)), file=sys.stderr))
        print(f"# distilled {summary['steps']} steps in {summary['seconds'] / 60:.1f} min ({summary['runtime']})")

    teacher, student = load_world_model(args.teacher), load_world_model(out)
    store = Store.open(args.store)
    held_out = split_episodes(store.episode_paths(), teacher.recipe.train_wm.val_fraction)[1]
    buf = EpisodeBuffer(store, episodes=held_out)
    k = student.recipe.sampler.num_steps
    short = replace(teacher, recipe=replace(teacher.recipe, sampler=replace(teacher.recipe.sampler, num_steps=k)))
    models = [(f"teacher ({teacher.recipe.sampler.num_steps} steps)", teacher),
              (f"teacher in {k} step{'s' if k > 1 else ''}", short), (f"student ({k} step{'s' if k > 1 else ''})", student)]
    rows, results = [], {}
    copy = None
    for name, wm in models:
        torch.manual_seed(0)
        ev = evaluate_world_model(wm, buf, segments=args.segments, horizon=args.horizon, seed=1234)
        results[name] = ev
        copy = ev
        rows.append([name, f"{wm.recipe.sampler.num_steps}", f"{ev['psnr_1step']:.2f}", f"{ev['psnr_rollout']:.2f}",
                     f"{ev['psnr_per_step'][-1]:.2f}", f"{ev['imagined_frames_per_s']:.1f}"])
    rows.append(["copy last frame", "0", f"{copy['psnr_1step_copy_last']:.2f}", f"{copy['psnr_rollout_copy_last']:.2f}",
                 f"{copy['psnr_per_step_copy_last'][-1]:.2f}", ""])
    print(f"\n# held-out Breakout ({buf.num_episodes} episodes), {args.segments} segments, {args.horizon}-step rollouts "
          f"under the real actions; PSNR in dB; frames/s at batch 32 on this machine, fp32")
    print_table(["model", "network evaluations / frame", "1-step PSNR", f"{args.horizon}-step mean", f"step {args.horizon}",
                 "imagined frames/s"], rows)
    for name, ev in results.items():
        print(f"{name}: per step " + ", ".join(f"{v:.1f}" for v in ev["psnr_per_step"]))
    print("copy last frame: per step " + ", ".join(f"{v:.1f}" for v in copy["psnr_per_step_copy_last"]))
    finish({"machine": info, "teacher": args.teacher, "student": str(out), "distill": summary,
            "results": {name: {k: v for k, v in ev.items() if k not in ("reward", "end")} for name, ev in results.items()},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, args.json)


if __name__ == "__main__":
    main()
