"""Sharing the machine: one training alone against two at once, with OpenMP's waiting policies.

Each workload is a real `wmcli train-wm` process (the settings a user gets: torch's default
threads, one per core) on a MinAtar Breakout store. For each policy it runs the workload alone,
then two copies at the same time, and reports steps/s (from the command's own result) and how
much of the work one process does alone the pair does together (see POLICIES). Rounds
alternate the policies.

    python benchmarks/bench_sharing.py --steps 200 --rounds 2 --policies wmcli,fixed,passive
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info  # noqa: E402

POLICIES = {"wmcli": {}, "fixed": {"WMCLI_THREADS": "0"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE", "WMCLI_THREADS": "0"},
            "spin30k": {"GOMP_SPINCOUNT": "30000", "WMCLI_THREADS": "0"},
            "spin3k": {"GOMP_SPINCOUNT": "3000", "WMCLI_THREADS": "0"}, "1thread": {"WMCLI_THREADS": "1"}}
"""Environments of the workload. "wmcli": what a user gets (threads shared among wmcli processes,
wmcli.base.cores); the others fix each process at one thread per core ("0": the machine's core
count, filled in below), as wmcli did before: "fixed" with OpenMP's default spinning, "passive"
with passive waiting, "spin30k"/"spin3k" with shorter spins; "1thread": one thread each."""


def _env(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                            "WMCLI_THREADS")}  # the settings a user gets
    extra = {k: (str(os.cpu_count()) if (k, v) == ("WMCLI_THREADS", "0") else v) for k, v in POLICIES[policy].items()}
    return {**env, **extra, "WMCLI_TENSORBOARD": "0", "WMCLI_PRECISION": "fp32"}


def _policies(names: str) -> list[str]:
    return [n for n in names.split(",") if n in POLICIES]


def _start(store: Path, out: Path, steps: int, recipe: str, policy: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wmcli", "train-wm", "--store", str(store), "-o", str(out), "--overwrite",
           "--recipe", recipe, "--steps", str(steps), "--set", f"train_wm.log_every={steps}",
           "--set", f"train_wm.val_every={10 * steps}", "--set", f"train_wm.checkpoint_every={10 * steps}", "--json"]
    return subprocess.Popen(cmd, env=_env(policy), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _rate(p: subprocess.Popen) -> float:
    out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"train-wm failed (exit {p.returncode})")
    r = json.loads(out)
    return r["steps"] / r["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="train-wm steps per process")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--recipe", default="minatar")
    ap.add_argument("--policies", default="wmcli,fixed", help=f"comma-separated, of {', '.join(POLICIES)}")
    ap.add_argument("--beside", choices=("wmcli", "spinner"), default="wmcli",
                    help="what runs beside the training: a second one, or a busy non-wmcli process")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wmcli-sharing-"))
    store = work / "store"
    subprocess.run([sys.executable, "-m", "wmcli", "collect", "--env", "minatar:Breakout", "--env-steps", "3000", "--frame-size", "10",
                    "--store", str(store), "--seed", "0", "--json"], check=True, capture_output=True)
    chosen = _policies(args.policies)
    rates: dict[str, dict[str, list[float]]] = {p: {"alone": [], "pair": []} for p in chosen}
    for r in range(args.rounds):
        order = chosen if r % 2 == 0 else list(reversed(chosen))
        for policy in order:
            t = time.perf_counter()
            rates[policy]["alone"].append(_rate(_start(store, work / "a.pt", args.steps, args.recipe, policy)))
            if args.beside == "spinner":
                spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    time.sleep(6)  # past the load average's first look and wmcli's first measurement window
                    got = [_rate(_start(store, work / "p0.pt", args.steps, args.recipe, policy))]
                finally:
                    spin.kill()
                    spin.wait()
            else:
                pair = [_start(store, work / f"p{i}.pt", args.steps, args.recipe, policy) for i in range(2)]
                got = [_rate(p) for p in pair]
            rates[policy]["pair"].append(sum(got))
            print(f"round {r + 1} {policy}: alone {rates[policy]['alone'][-1]:.2f} steps/s, beside {args.beside}: "
                  f"{' + '.join(f'{g:.2f}' for g in got)} steps/s ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    rows = []
    for policy, x in rates.items():
        alone, pair = statistics.median(x["alone"]), statistics.median(x["pair"])
        rows.append({"policy": policy, "alone_steps_per_s": alone, "pair_total_steps_per_s": pair,
                     "pair_share_of_alone": pair / alone, "raw": x})
    result = {**machine_info(), "recipe": args.recipe, "steps": args.steps, "rounds": args.rounds, "beside": args.beside,
              "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['date_utc']}  {result['cpu_model']}  {result['cpu_cores']} cores  {result['command']}")
    beside = "two at once, total" if args.beside == "wmcli" else "beside a spinner"
    print(f"{'policy':<9} {'alone steps/s':>14} {beside:>19} {'share of alone':>15}")
    for r in rows:
        print(f"{r['policy']:<9} {r['alone_steps_per_s']:14.2f} {r['pair_total_steps_per_s']:19.2f} "
              f"{100 * r['pair_share_of_alone']:14.0f}%")


if __name__ == "__main__":
    main()
