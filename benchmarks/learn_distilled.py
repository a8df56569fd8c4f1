"""An agent trained in a distilled student's dreams against one trained in its teacher's:
MinAtar Breakout, equal agent steps, the real game as judge.

1. --collect steps of random MinAtar Breakout into DIR/store (the minatar recipe's first epoch).
2. The teacher: the minatar recipe's world model, --wm-steps steps (3 Euler steps a frame).
3. The student: `wmcli distill`'s loop, --distill-steps steps (1 network evaluation a frame).
4. Two agents, --agent-steps steps each with the same seed and recipe, one dreaming with the
   teacher, one with the student; the wall time of each training is measured.
5. Each agent and the random policy play --episodes whole real games (the same env seeds), and
   the returns are compared (Welch's 95% interval of the difference).

    python benchmarks/learn_distilled.py --dir /tmp/wmcli-distill --episodes 100
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import CpuMeter, finish, machine_info, print_machine, print_table, return_stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/wmcli-distill")
    ap.add_argument("--collect", type=int, default=20_000)
    ap.add_argument("--wm-steps", type=int, default=2000)
    ap.add_argument("--distill-steps", type=int, default=1000)
    ap.add_argument("--agent-steps", type=int, default=600)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--eval-seed", type=int, default=12345)
    ap.add_argument("--set", action="append", default=[], help="recipe overrides (minatar recipe)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from dataclasses import replace

    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.data.collect import collect
    from wmcli.data.env import make_spec
    from wmcli.data.store import Store
    from wmcli.outputs.evaluate import evaluate_policy
    from wmcli.training.distill import distill_world_model
    from wmcli.training.train_agent import train_agent
    from wmcli.training.train_wm import train_world_model
    from wmcli.world.agent import AgentPolicy, load_agent

    info = machine_info()
    print_machine(info)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe("minatar", args.set, game="minatar:Breakout")
    spec = make_spec(recipe.env)
    rt = make_runtime("cpu")
    times = {}

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    with CpuMeter() as cpu:
        if not Store.exists(d / "store"):
            say(f"collecting {args.collect} random steps")
            collect(spec, Store.create_or_open(d / "store", spec.to_dict()), args.collect, num_envs=2, seed=0)
        if not (d / "wm.pt").exists():
            say(f"teacher: {args.wm_steps} world-model steps")
            t = time.perf_counter()
            train_world_model(replace(recipe, train_wm=replace(recipe.train_wm, steps=args.wm_steps)), d / "store",
                              d / "wm.pt", rt)
            times["teacher_training_min"] = (time.perf_counter() - t) / 60
        if not (d / "wm1.pt").exists():
            say(f"student: {args.distill_steps} distillation steps")
            t = time.perf_counter()
            r = distill_world_model(d / "wm.pt", d / "wm1.pt", rt, steps=args.distill_steps)
            times["distill_min"] = (time.perf_counter() - t) / 60
            times["distill_val"] = r["val"]
        for name, wm in (("teacher", "wm.pt"), ("student", "wm1.pt")):
            out = d / f"agent-{name}.pt"
            if not out.exists():
                say(f"agent in the {name}'s dreams: {args.agent_steps} steps")
                t = time.perf_counter()
                r = train_agent(replace(recipe, train_agent=replace(recipe.train_agent, steps=args.agent_steps)), d / wm,
                                out, rt, store_path=d / "store")
                times[f"agent_in_{name}_min"] = (time.perf_counter() - t) / 60
    results = {}
    for name in ("teacher", "student", "random"):
        say(f"evaluating: {name}")
        policy = None if name == "random" else AgentPolicy(load_agent(d / f"agent-{name}.pt"),
                                                           np.random.default_rng(args.eval_seed))
        r = evaluate_policy(spec, policy, args.episodes, num_envs=4, seed=args.eval_seed)
        results[name] = return_stats([e["return"] for e in r["per_episode"]])
    diff = results["student"]["mean"] - results["teacher"]["mean"]
    se = math.hypot(results["student"]["sem"], results["teacher"]["sem"])
    rows = [[f"agent in the {k}'s dreams" if k != "random" else "random policy", f"{v['mean']:.2f}", f"{v['sem']:.2f}",
             f"{v['std']:.2f}", f"{v['episodes']}",
             f"{times[f'agent_in_{k}_min']:.1f}" if f"agent_in_{k}_min" in times else ""] for k, v in results.items()]
    print(f"\n# MinAtar Breakout, {args.agent_steps} agent steps each, {args.episodes} evaluation episodes each "
          f"(env seeds from {args.eval_seed})")
    print_table(["policy", "mean return", "sem", "std", "episodes", "agent training (min)"], rows)
    print(f"student - teacher: {diff:+.2f}, 95% interval [{diff - 1.96 * se:+.2f}, {diff + 1.96 * se:+.2f}]")
    print(f"times: {times}; cores busy meanwhile: ours {cpu.own:.2f}, others {cpu.others:.2f}")
    finish({"machine": info, "results": results, "difference": diff, "difference_95ci": [diff - 1.96 * se, diff + 1.96 * se],
            "times": times, "cores_busy_others": cpu.others, "args": vars(args)}, args.json)


if __name__ == "__main__":
    main()
