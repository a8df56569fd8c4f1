"""The video world model against DIAMOND's frame-by-frame one, at equal training wall time.

1. Trains, for --minutes each on the 20,000-step Breakout store of docs/results.md (held-in
   episodes; the same hash split as quality_wm.py), one model per variant and seed:
   - frame: tiny.yaml (DIAMOND's next-frame denoiser, 3 Euler steps a frame);
   - video: video-tiny.yaml as it is (growing windows, curriculum, joint loss);
   - video-no-joint-loss: video-tiny with train_wm.video.rew_end_weight=0 and action_weight=0;
   - video-no-stages: video-tiny with train_wm.video.stages=[] (window 4, every segment, throughout).
   video-tiny's stage lengths (500, 500, then the rest) are sized for its 2,000 steps; a time
   budget reaches far fewer. --stage-scale auto (the default) rescales them to the steps the
   budget reaches: video-no-stages trains first, and the staged variants' stages are scaled by
   its step count / 2,000 (the same cost per step at window 4; window 2 is cheaper, so the last
   stage runs on a little longer). --stage-scale none keeps them as written.
2. Evaluates each model on the held-out episodes (evaluate_world_model: 128 segments, seed 1234,
   15-step rollouts under the real actions, copy-last as the floor; every model and sampler
   draws the same segments and noise): the frame model with its 3 Euler steps; each video model
   staggered at 1 evaluation a frame (the recipe's), staggered at 3 (frame by frame), joint
   (the window of 4 through 3 steps: 0.75 a frame) and staggered at 0.5 with num_steps 2 (4
   frames in flight); each with actions_ahead true (the frames in flight see their real
   actions) and false (each action only once taken, as an agent playing the dream gives).
   Staggered 3 keeps one frame in flight, so it has no actions ahead: evaluated once. Every
   rollout costs about as much as the frame model's (3 single-frame passes a frame), so the
   whole sweep runs on the --sweep variants (default: video); the others are evaluated with
   the recipe's sampler (staggered 1), actions ahead and not.
3. Measures each sampler's network evaluations per imagined frame (NextFrame's counters over a
   15-frame rollout, and once the window is full) and imagined frames/s at batch 32 in fp32
   (--speed-repeats repeats, the samplers interleaved, median).

Everything runs on --threads torch threads (default 1): on a 2-core machine that another
process shares, 2 spinning OpenMP threads run several times slower than 1 (wmcli.base.cores).

Models, training summaries and results stay under --dir (DIR/seedS/VARIANT.pt), so --eval-only
re-evaluates them. --smoke: a few seconds of training, 8 segments, 4-step rollouts (a check
that the whole script runs, in about a minute; the numbers mean nothing).

    python benchmarks/compare_video.py --minutes 6 --seeds 1 --json /tmp/wmcli-video/results.json
    python benchmarks/compare_video.py --eval-only --dir /tmp/wmcli-video
    python benchmarks/compare_video.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import CpuMeter, finish, machine_info, median, print_machine, print_table, spread  # noqa: E402

VARIANTS = {  # name -> (recipe, overrides)
    "frame": ("tiny", []),
    "video-no-stages": ("video-tiny", ["train_wm.video.stages=[]"]),  # first: its step count scales the stages
    "video": ("video-tiny", []),
    "video-no-joint-loss": ("video-tiny", ["train_wm.video.rew_end_weight=0", "train_wm.video.action_weight=0"]),
}
SAMPLERS = {  # name -> sampler overrides of a video model (the frame model keeps its own)
    "staggered 1": {"video_schedule": "staggered", "evals_per_frame": 1.0, "num_steps": 3},
    "staggered 3": {"video_schedule": "staggered", "evals_per_frame": 3.0, "num_steps": 3},
    "joint": {"video_schedule": "joint", "num_steps": 3},
    "staggered 0.5, 2 steps": {"video_schedule": "staggered", "evals_per_frame": 0.5, "num_steps": 2},
}
RECIPE_STEPS = 2000  # the step count video-tiny's stages are sized for


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def scaled_stages(stages, factor: float):
    """The stages with their lengths times factor (at least 1 step each)."""
    return tuple(replace(st, steps=max(1, round(st.steps * factor))) for st in stages)


def last_metrics(path: Path) -> dict:
    """The last training-log row (its losses averaged over the last log window)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[-1] if rows else {}


def train(name: str, seed: int, d: Path, args, expected_steps: int | None) -> dict:
    """Train one variant for the time budget; returns (and stores) what the report needs."""
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.training.train_wm import stage_plan, train_world_model

    base, overrides = VARIANTS[name]
    recipe = load_recipe(base, [*overrides, f"train_wm.seed={seed}", "train_wm.steps=100000",
                                f"train_wm.val_every={args.val_every}"])
    scale = None
    if recipe.denoiser.kind == "video" and recipe.train_wm.video.stages and args.stage_scale == "auto":
        scale = expected_steps / RECIPE_STEPS
        video = replace(recipe.train_wm.video, stages=scaled_stages(recipe.train_wm.video.stages, scale))
        recipe = replace(recipe, train_wm=replace(recipe.train_wm, video=video))
    rt = make_runtime("cpu", args.precision, threads=args.threads)
    say(f"seed {seed}: training {name} for {args.minutes} min" + (f" (stages x{scale:.3f})" if scale else ""))
    with CpuMeter() as cpu:
        s = train_world_model(recipe, Path(args.store), d / f"{name}.pt", rt, overwrite=True,
                              max_seconds=args.minutes * 60)
    m = last_metrics(Path(s["metrics"]))
    plan, ended = [], None
    if recipe.denoiser.kind == "video":
        for r, st in stage_plan(recipe.train_wm, recipe.denoiser.video.window):
            plan.append({"steps": [r.start, r.stop if r.stop < recipe.train_wm.steps else None], "window": st.window,
                         "still_fraction": st.still_fraction})
            if s["steps"] - 1 in r:
                ended = len(plan)
    summary = {
        "variant": name, "seed": seed, "steps": s["steps"], "seconds": s["seconds"], "precision": s["precision"],
        "threads": s["threads"], "cores_busy_own": cpu.own, "cores_busy_others": cpu.others,
        "stage_scale": scale, "stage_plan": plan, "ended_in_stage": ended,
        "train_last": {k: v for k, v in m.items() if k.startswith(("losses/", "perf/"))}, "val": s["val"],
    }
    (d / f"{name}.train.json").write_text(json.dumps(summary, indent=2))
    say(f"  {name}: {s['steps']} steps in {s['seconds'] / 60:.1f} min; cores busy: ours {cpu.own:.2f}, "
        f"others {cpu.others:.2f}; val loss {s['val'].get('val/loss_denoiser')}")
    return summary


def with_sampler(wm, overrides: dict):
    return replace(wm, recipe=replace(wm.recipe, sampler=replace(wm.recipe.sampler, **overrides)))


def counted_rollout(wm, obs, act, horizon: int, timed_from: int | None = None):
    """Dream `horizon` frames under the real actions (ahead) through NextFrame, as rollout does.
    Returns the evaluations per frame over all of them and over frames 2.. (once the window is
    full: exact when horizon - 1 is a whole number of the schedule's cycles), and the seconds
    spent on frames from timed_from on."""
    import torch

    from wmcli.world.world_model import NextFrame

    n = wm.num_context
    frames = NextFrame(wm.denoiser, wm.recipe.sampler, obs.shape[0], torch.Generator().manual_seed(0))
    ctx, past, after_first, t0 = obs[:, :n], act[:, : n - 1], 0, None
    with torch.no_grad():
        for t in range(horizon):
            if t == timed_from:
                t0 = time.perf_counter()
            a = torch.cat([past, act[:, n - 1 + t, None]], dim=1)
            ahead = act[:, n + t : n + horizon - 1] if t < horizon - 1 else None
            nxt = frames(ctx, a, future_act=ahead).float()
            if t == 0:
                after_first = frames.evaluations
            ctx, past = torch.cat([ctx[:, 1:], nxt[:, None]], dim=1), a[:, 1:]
    seconds = time.perf_counter() - t0 if t0 is not None else None
    return frames.evaluations / frames.frames, (frames.evaluations - after_first) / (frames.frames - 1), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/wmcli-video", help="models, training summaries and results")
    ap.add_argument("--store", default="/tmp/wmcli-quality/Breakout-20000", help="quality_wm.py's store")
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget of each model (wall clock)")
    ap.add_argument("--seeds", type=int, default=1, help="train_wm.seed 0 .. seeds - 1 for every variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    ap.add_argument("--stage-scale", choices=("auto", "none"), default="auto",
                    help="auto: video-tiny's stage lengths scaled to the steps video-no-stages reached")
    ap.add_argument("--expected-steps", type=int, default=None, help="scale the stages to this step count instead")
    ap.add_argument("--sweep", default="video", help="variants evaluated with every sampler (comma-separated, or all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training and evaluation")
    ap.add_argument("--precision", default="fp32", help="training precision (fp32, bf16, auto)")
    ap.add_argument("--val-every", type=int, default=250, help="train_wm.val_every (the last step validates anyway)")
    ap.add_argument("--segments", type=int, default=128)
    ap.add_argument("--horizon", type=int, default=15)
    ap.add_argument("--speed-repeats", type=int, default=3, help="repeats of the frames/s measurement (median)")
    ap.add_argument("--speed-frames", type=int, default=4, help="timed frames per repeat (after the first; x4 for joint)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the models under --dir as they are")
    ap.add_argument("--retrain", action="store_true", help="train again the models already under --dir (default: reuse them)")
    ap.add_argument("--smoke", action="store_true", help="seconds of training, 8 segments, 4-step rollouts")
    ap.add_argument("--json", default=None, help="write the results here too (DIR/results.json is always written)")
    args = ap.parse_args()
    if args.smoke:
        args.minutes, args.segments, args.horizon, args.speed_repeats, args.val_every = 0.1, 8, 4, 1, 10
        args.dir = args.dir if args.dir != ap.get_default("dir") else "/tmp/wmcli-video-smoke"

    import torch

    from wmcli.base.frames import to_float
    from wmcli.data.buffer import EpisodeBuffer
    from wmcli.data.store import Store, split_episodes
    from wmcli.world.measure import evaluate_world_model
    from wmcli.world.world_model import load_world_model

    torch.set_num_threads(args.threads)
    info = machine_info()
    info["torch_threads"] = args.threads
    print_machine(info)
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    root = Path(args.dir)
    store = Store.open(args.store)
    trained: dict[tuple[str, int], dict] = {}

    # 1. Training, variant by variant (video-no-stages before the staged ones: its steps scale theirs).
    for seed in range(args.seeds):
        d = root / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        for name in variants:
            if not args.eval_only and (args.retrain or not (d / f"{name}.train.json").exists()):
                expected = args.expected_steps
                if expected is None and name in ("video", "video-no-joint-loss") and args.stage_scale == "auto":
                    ref = d / "video-no-stages.train.json"
                    if not ref.exists():
                        sys.exit(f"--stage-scale auto needs video-no-stages trained first ({ref}); "
                                 f"add it to --variants or pass --expected-steps")
                    expected = json.loads(ref.read_text())["steps"]
                train(name, seed, d, args, expected)
            trained[name, seed] = json.loads((d / f"{name}.train.json").read_text())

    # 2. Quality: every model and sampler on the same held-out segments and noise.
    held_out = None
    results = []
    for (name, seed), summary in trained.items():
        wm = load_world_model(root / f"seed{seed}" / f"{name}.pt")
        if held_out is None:
            held_out = EpisodeBuffer(store, episodes=split_episodes(store.episode_paths(), wm.recipe.train_wm.val_fraction)[1])
        if wm.recipe.denoiser.kind == "video" and args.sweep != "all" and name not in args.sweep.split(","):
            cases = [("staggered 1", True), ("staggered 1", False)]
        elif wm.recipe.denoiser.kind == "video":
            cases = [(s, ahead) for s in SAMPLERS for ahead in ((True,) if s == "staggered 3" else (True, False))]
        else:
            cases = [("3 Euler steps", None)]
        for sampler, ahead in cases:
            model = with_sampler(wm, SAMPLERS[sampler]) if sampler in SAMPLERS else wm
            say(f"evaluating {name} seed {seed}, {sampler}" + ("" if ahead is None else f", actions ahead {ahead}"))
            torch.manual_seed(0)
            ev = evaluate_world_model(model, held_out, segments=args.segments, horizon=args.horizon, seed=1234,
                                      actions_ahead=True if ahead is None else ahead)
            results.append({**{k: v for k, v in ev.items() if k not in ("reward", "end", "seed")}, "segment_seed": ev["seed"],
                            "variant": name, "seed": seed, "sampler": sampler, "actions_ahead": ahead,
                            "reward_f1": ev["reward"]["f1"], "end_f1": ev["end"]["f1"]})

    # 3. Evaluations per frame and speed, per sampler (the video variants share one architecture).
    rng = __import__("numpy").random.default_rng(1234)
    some = {kind: next(((n, s) for (n, s) in trained if (n == "frame") == (kind == "frame")), None)
            for kind in ("frame", "video")}
    models = {}
    if some["frame"]:
        models["frame: 3 Euler steps"] = load_world_model(root / f"seed{some['frame'][1]}" / "frame.pt")
    if some["video"]:
        wm = load_world_model(root / f"seed{some['video'][1]}" / f"{some['video'][0]}.pt")
        models.update({f"video: {s}": with_sampler(wm, o) for s, o in SAMPLERS.items()})
    n, timed = next(iter(models.values())).num_context, 1 + args.speed_frames
    L = max(args.horizon, timed)
    seg = held_out.sample(rng, 32, n + L, pad_before=0, pad_after=0)
    obs, act = to_float(torch.from_numpy(seg.obs)), torch.from_numpy(seg.act[:, : n + L - 1])
    speed = {k: {"fps": []} for k in models}
    for k, wm in models.items():  # over the rollouts of the quality table; the window full: over 1 + 4k frames
        speed[k]["evals_per_frame"], _, _ = counted_rollout(wm, obs[:, : n + args.horizon],
                                                                                           act[:, : n + args.horizon - 1],
                                                                                           args.horizon)
    say("timing imagination at batch 32")
    with CpuMeter() as cpu:
        for _ in range(args.speed_repeats):
            for k, wm in models.items():
                _, speed[k]["evals_per_frame_full"], seconds = counted_rollout(wm, obs, act[:, : n + timed - 1], timed,
                                                                               timed_from=1)
                speed[k]["fps"].append(32 * args.speed_frames / seconds)
    for k in speed:
        speed[k]["fps_median"] = median(speed[k]["fps"])

    # Report.
    print(f"\n# training: {args.minutes:g} min each, fp32 unless noted, on {info['cpu_model']} "
          f"({info['cpu_cores']} vCPUs)")
    rows = []
    for (name, seed), s in trained.items():
        plan = s["stage_plan"]
        stage = f"{s['ended_in_stage']} of {len(plan)} (window {plan[s['ended_in_stage'] - 1]['window']})" if plan else ""
        val = s["val"]
        rows.append([name, seed, s["steps"], f"{s['seconds'] / 60:.1f}", f"{s['cores_busy_others']:.2f}", stage,
                     f"{s['train_last'].get('losses/denoiser', float('nan')):.4f}",
                     f"{s['train_last'].get('losses/diffusion', s['train_last'].get('losses/denoiser')):.4f}",
                     f"{val.get('val/loss_denoiser', float('nan')):.4f}", f"{val.get('val/psnr_1step', float('nan')):.2f}"])
    print_table(["variant", "seed", "steps", "min", "cores busy (others)", "ended in stage", "train loss",
                 "train diffusion loss", "val loss", "val 1-step PSNR"], rows)
    for (name, seed), s in trained.items():
        if s["stage_plan"]:
            print(f"{name} seed {seed} stages (x{s['stage_scale'] or 1:.3f}): " + ", ".join(
                f"steps {p['steps'][0]}..{p['steps'][1] or 'end'} window {p['window']} still {p['still_fraction']}"
                for p in s["stage_plan"]))

    H = args.horizon
    marks = sorted({1, *(t for t in (5, 10, 15) if t <= H), H})
    print(f"\n# held-out Breakout ({held_out.num_episodes} episodes), {args.segments} segments (seed 1234), "
          f"{H}-step rollouts under the real actions; PSNR in dB")
    rows = []
    for r in results:
        ahead = "" if r["actions_ahead"] is None else ("yes" if r["actions_ahead"] else "no")
        if r["sampler"] == "staggered 3":
            ahead = "(none in flight)"
        sp = speed.get(f"{'frame' if r['variant'] == 'frame' else 'video'}: {r['sampler']}", {})
        rows.append([r["variant"], r["seed"], r["sampler"], ahead, *(f"{r['psnr_per_step'][t - 1]:.2f}" for t in marks),
                     f"{r['psnr_rollout']:.2f}", f"{sp.get('evals_per_frame', float('nan')):.2f}"])
    copy = results[0]
    rows.append(["copy last frame", "", "", "", *(f"{copy['psnr_per_step_copy_last'][t - 1]:.2f}" for t in marks),
                 f"{copy['psnr_rollout_copy_last']:.2f}", "0"])
    print_table(["variant", "seed", "sampler", "actions ahead", *(f"step {t}" for t in marks), "mean",
                 f"evaluations / frame ({H}-frame rollout)"], rows)

    print(f"\n# imagination at batch 32, fp32, {torch.get_num_threads()} threads: frames/s over {args.speed_frames} "
          f"frames after the first, median of {args.speed_repeats} (interleaved); cores busy meanwhile by others "
          f"{cpu.others:.2f}")
    print_table(["model: sampler", f"evaluations / frame ({H}-frame rollout)", "evaluations / frame (window full)",
                 "imagined frames/s", "range"],
                [[k, f"{v['evals_per_frame']:.3f}", f"{v['evals_per_frame_full']:.3f}", f"{v['fps_median']:.1f}",
                  spread(v["fps"], ".1f")] for k, v in speed.items()])

    if args.seeds > 1:
        print("\n# mean rollout PSNR over seeds (min..max)")
        keys = sorted({(r["variant"], r["sampler"], r["actions_ahead"]) for r in results}, key=str)
        rows = []
        for key in keys:
            xs = [r["psnr_rollout"] for r in results if (r["variant"], r["sampler"], r["actions_ahead"]) == key]
            rows.append([key[0], key[1], "" if key[2] is None else key[2], f"{sum(xs) / len(xs):.2f}", spread(xs, ".2f")])
        print_table(["variant", "sampler", "actions ahead", "mean over seeds", "range"], rows)

    out = {"machine": info, "args": vars(args), "training": list(trained.values()), "quality": results, "speed": speed,
           "speed_cores_busy_others": cpu.others}
    (root / "results.json").write_text(json.dumps(out, indent=2))
    finish(out, args.json)


if __name__ == "__main__":
    main()
