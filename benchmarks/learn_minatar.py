"""Does the agent learn? The whole DIAMOND loop on MinAtar Breakout on this machine, timed,
then the agent against the random policy in the real game.

1. `wmcli run --recipe minatar` (recipes/minatar.yaml): random collection, then epochs of world-model
   training, agent training purely in imagination, collection with the agent. Wall clock is
   measured from the first collected step to the last agent update.
2. The final agent and the uniformly random policy each play --episodes whole games of the
   real game (the same env seeds for both), under the test protocol (docs/eval.md).
3. Reports both returns (mean, std, standard error), their difference with a 95% interval
   (Welch), and the run's curves (`wmcli plot`).

    python benchmarks/learn_minatar.py --run-dir /tmp/wmcli-learn --episodes 100
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default="/tmp/wmcli-learn")
    ap.add_argument("--game", default="minatar:Breakout")
    ap.add_argument("--recipe", default="minatar")
    ap.add_argument("--set", action="append", default=[], help="recipe overrides")
    ap.add_argument("--episodes", type=int, default=100, help="evaluation episodes per policy (>= 30)")
    ap.add_argument("--eval-seed", type=int, default=12345)
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --run-dir")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.data.env import make_spec
    from wmcli.outputs.evaluate import evaluate_policy
    from wmcli.outputs.plot import plot_run
    from wmcli.run import run_loop
    from wmcli.world.agent import AgentPolicy, load_agent

    run_dir = Path(args.run_dir)
    recipe = None if args.resume else load_recipe(args.recipe, args.set, game=args.game)
    rt = make_runtime("cpu")
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import CpuMeter

    t0 = time.perf_counter()
    with CpuMeter() as cpu:  # how many cores other processes kept busy meanwhile (a shared machine)
        summary = run_loop(recipe, run_dir, rt, resume=args.resume,
                           on_event=lambda e: print(f"[{time.perf_counter() - t0:7.0f}s] epoch {e.epoch} {e.phase}: {e.text}",
                                                    file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    spec = make_spec(recipe.env)
    agent = load_agent(run_dir / "agent.pt")
    res = {}
    for name, policy in (("agent", AgentPolicy(agent, np.random.default_rng(args.eval_seed))), ("random", None)):
        r = evaluate_policy(spec, policy, args.episodes, num_envs=4, seed=args.eval_seed)
        rets = np.array([e["return"] for e in r["per_episode"]])
        res[name] = {"mean": float(rets.mean()), "std": float(rets.std(ddof=1)), "sem": float(rets.std(ddof=1) / math.sqrt(len(rets))),
                     "min": float(rets.min()), "max": float(rets.max()), "episodes": len(rets),
                     "mean_length": float(np.mean([e["length"] for e in r["per_episode"]]))}
    diff = res["agent"]["mean"] - res["random"]["mean"]
    se = math.hypot(res["agent"]["sem"], res["random"]["sem"])
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [{"epoch": x["epoch"], "env_steps": x["env_steps"], "seconds": round(x["seconds"]),
              **({"eval_return_mean": x["eval"]["return_mean"]} if "eval" in x else {})} for x in lines]
    plot = plot_run(run_dir, run_dir / "curves.png")
    result = {
        "game": args.game, "recipe": args.recipe, "overrides": args.set, "run_dir": str(run_dir),
        "run_wall_minutes": wall / 60, "cores_busy_own": cpu.own, "cores_busy_others": cpu.others, "run_seconds_in_metrics": lines[-1]["seconds"], "env_steps": summary["env_steps"],
        "wm_steps": lines[-1].get("wm_steps"), "agent_steps": lines[-1].get("agent_steps"),
        "eval_seed": args.eval_seed, "agent": res["agent"], "random": res["random"],
        "difference": diff, "difference_95ci": [diff - 1.96 * se, diff + 1.96 * se],
        "ratio": res["agent"]["mean"] / res["random"]["mean"] if res["random"]["mean"] else None,
        "curve": curve, "plot": plot["plot"],
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(["python", *sys.argv]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        a, r = res["agent"], res["random"]
        print(f"run: {wall / 60:.1f} min, {summary['env_steps']} env steps; cores busy: ours {cpu.own:.2f}, "
              f"others {cpu.others:.2f}")
        print(f"agent  {a['mean']:.2f} +- {a['sem']:.2f} (std {a['std']:.2f}, {a['episodes']} episodes)")
        print(f"random {r['mean']:.2f} +- {r['sem']:.2f} (std {r['std']:.2f}, {r['episodes']} episodes)")
        print(f"difference {diff:.2f}, 95% interval [{diff - 1.96 * se:.2f}, {diff + 1.96 * se:.2f}]")


if __name__ == "__main__":
    main()
