"""An agent trained in a video world model's dreams against one trained in the frame-by-frame
model's: MinAtar Breakout, the same world-model time budget, equal agent steps, the real game as judge.

1. --collect steps of random MinAtar Breakout into DIR/store (the minatar recipe's first epoch).
2. Two world models on that store, each for --wm-minutes of wall clock (train_wm.steps is a cap):
   `frame` (recipes/minatar.yaml, DIAMOND's denoiser, 3 Euler steps a frame) and `video`
   (recipes/video-minatar.yaml: 4 future frames, staggered, 1 network evaluation a frame).
   The video recipe's stage lengths are scaled to the steps the frame model's budget allows
   (--stage-scale, default 1: as written).
3. Two agents, --agent-steps steps each with the same seed and recipe sections, one dreaming in
   each model; their training time and imagined frames/s are measured, and each model's network
   evaluations per imagined frame are counted in the same use (WorldModelEnv, horizon 15).
4. Each agent and the random policy play --episodes whole real games (the same env seeds); the
   returns are compared (Welch's 95% interval of the difference). --seeds repeats 2-3 per seed.

    python benchmarks/learn_video.py --dir /tmp/wmcli-video --wm-minutes 8 --episodes 100
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import CpuMeter, finish, machine_info, print_machine, print_table, return_stats  # noqa: E402

KINDS = {"frame": "minatar", "video": "video-minatar"}



def evals_per_frame(wm_path: Path, store: Path, steps: int = 30) -> float:
    """Network evaluations per imagined frame in an agent's use: 16 dreams, horizon 15, random actions."""
    import torch

    from wmcli.data.buffer import EpisodeBuffer
    from wmcli.data.store import Store
    from wmcli.world.imagination import WorldModelEnv
    from wmcli.world.world_model import load_world_model

    wm = load_world_model(wm_path)
    env = WorldModelEnv(wm, EpisodeBuffer(Store.open(store)).contexts(wm.num_context), 16, 15, seed=0)
    env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        act = torch.randint(0, wm.spec.num_actions, (16,), generator=g)
        _, _, end, trunc, _ = env.step(act)
        if (end | trunc).any():
            env.reset(end | trunc)
    return env.next_frame.evaluations / env.next_frame.frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/wmcli-video")
    ap.add_argument("--collect", type=int, default=20_000)
    ap.add_argument("--wm-minutes", type=float, default=8.0)
    ap.add_argument("--wm-steps", type=int, default=100_000, help="cap on world-model steps (the budget decides)")
    ap.add_argument("--agent-steps", type=int, default=600)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--eval-seed", type=int, default=12345)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="world-model and agent seeds")
    ap.add_argument("--stage-scale", type=float, default=1.0, help="multiply video-minatar's stage lengths")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from wmcli.base.config import VideoStage
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.data.collect import collect
    from wmcli.data.env import make_spec
    from wmcli.data.store import Store
    from wmcli.outputs.evaluate import evaluate_policy
    from wmcli.training.train_agent import train_agent
    from wmcli.training.train_wm import train_world_model
    from wmcli.world.agent import AgentPolicy, load_agent

    info = machine_info()
    print_machine(info)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    rt = make_runtime("cpu")
    spec = make_spec(load_recipe("minatar").env)
    log: dict = {}

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def recipe_of(kind: str, seed: int):
        r = load_recipe(KINDS[kind])
        stages = tuple(VideoStage(max(1, round(s.steps * args.stage_scale)), s.window, s.still_fraction)
                       for s in r.train_wm.video.stages)
        return replace(r, train_wm=replace(r.train_wm, steps=args.wm_steps, seed=seed, val_every=10**9,
                                           checkpoint_every=10**9, video=replace(r.train_wm.video, stages=stages)),
                       train_agent=replace(r.train_agent, steps=args.agent_steps, seed=seed))

    with CpuMeter() as cpu:
        if not Store.exists(d / "store"):
            say(f"collecting {args.collect} random steps")
            collect(spec, Store.create_or_open(d / "store", spec.to_dict()), args.collect, num_envs=2, seed=0)
        for seed in args.seeds:
            for kind in KINDS:
                key = f"{kind}-{seed}"
                wm, agent = d / f"wm-{key}.pt", d / f"agent-{key}.pt"
                entry = log.setdefault(key, {})
                if not wm.exists():
                    say(f"{key}: world model, {args.wm_minutes} minutes")
                    r = train_world_model(recipe_of(kind, seed), d / "store", wm, rt, max_seconds=args.wm_minutes * 60)
                    entry.update(wm_steps=r["steps"], wm_minutes=r["seconds"] / 60)
                entry["evals_per_frame"] = evals_per_frame(wm, d / "store")
                if not agent.exists():
                    say(f"{key}: agent, {args.agent_steps} steps")
                    t = time.perf_counter()
                    r = train_agent(recipe_of(kind, seed), wm, agent, rt, store_path=d / "store")
                    entry.update(agent_minutes=(time.perf_counter() - t) / 60,
                                 imagined_frames_per_s=r.get("imagined_frames_per_s"))

    returns: dict[str, list[float]] = {k: [] for k in (*KINDS, "random")}
    for seed in args.seeds:
        for kind in KINDS:
            say(f"evaluating {kind}-{seed}")
            policy = AgentPolicy(load_agent(d / f"agent-{kind}-{seed}.pt"), np.random.default_rng(args.eval_seed))
            r = evaluate_policy(spec, policy, args.episodes, num_envs=4, seed=args.eval_seed)
            per = [e["return"] for e in r["per_episode"]]
            log[f"{kind}-{seed}"]["return"] = return_stats(per)
            returns[kind] += per
    r = evaluate_policy(spec, None, args.episodes, num_envs=4, seed=args.eval_seed)
    returns["random"] = [e["return"] for e in r["per_episode"]]
    results = {k: return_stats(v) for k, v in returns.items()}

    rows = []
    for key, e in log.items():
        rows.append([key, f"{e.get('wm_steps', '')}", f"{e.get('wm_minutes', 0):.1f}", f"{e['evals_per_frame']:.2f}",
                     f"{e.get('imagined_frames_per_s') or 0:.0f}", f"{e.get('agent_minutes', 0):.1f}",
                     f"{e['return']['mean']:.2f} +- {e['return']['sem']:.2f}"])
    print(f"\n# MinAtar Breakout: world models {args.wm_minutes} min each, agents {args.agent_steps} steps, "
          f"{args.episodes} evaluation episodes (env seeds from {args.eval_seed})")
    print_table(["model-seed", "wm steps", "wm min", "evals/frame", "imagined frames/s", "agent min", "return"], rows)
    print_table(["policy", "mean return", "sem", "std", "episodes"],
                [[k, f"{v['mean']:.2f}", f"{v['sem']:.2f}", f"{v['std']:.2f}", f"{v['episodes']}"] for k, v in results.items()])
    diff = results["video"]["mean"] - results["frame"]["mean"]
    se = math.hypot(results["video"]["sem"], results["frame"]["sem"])
    print(f"video - frame: {diff:+.2f}, 95% interval [{diff - 1.96 * se:+.2f}, {diff + 1.96 * se:+.2f}]")
    print(f"cores busy meanwhile: ours {cpu.own:.2f}, others {cpu.others:.2f}")
    finish({"machine": info, "runs": log, "results": results, "difference": diff,
            "difference_95ci": [diff - 1.96 * se, diff + 1.96 * se], "cores_busy_others": cpu.others,
            "args": vars(args)}, args.json)


if __name__ == "__main__":
    main()
