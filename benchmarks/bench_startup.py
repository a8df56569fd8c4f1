"""Start-up: how long the commands a new user types first take, whole, in fresh processes.

Each command runs as a user's shell runs it (`python -m wmcli ...`), `--repeats` times, the
variants interleaved so load from other processes hits them alike; the table gives the median
and the min..max of wall seconds. The work itself is tiny (10 env steps, one episode), so the
time is start-up: Python, the imports a command needs, opening the game. `import torch` alone
is measured beside them, as the floor of every command that runs a network.

With `--ref DIR` (a checkout of another wmcli commit, e.g. `git worktree add /tmp/ref 6d2929c`),
every command also runs against that code (PYTHONPATH=DIR), side by side.

    .venv/bin/python benchmarks/bench_startup.py                       # ~1 min
    .venv/bin/python benchmarks/bench_startup.py --ref /tmp/ref --repeats 7 --json out.json

A script to run by hand, never a timed test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, machine_info, median, print_machine, print_table, spread  # noqa: E402


def commands(tmp: Path) -> list[tuple[str, list[str]]]:
    store = tmp / "store"
    return [
        ("import torch (the floor of network commands)", ["-c", "import torch"]),
        ("wmcli --help", ["-m", "wmcli", "--help"]),
        ("wmcli envs", ["-m", "wmcli", "envs"]),
        ("wmcli recipes", ["-m", "wmcli", "recipes"]),
        ("wmcli store info", ["-m", "wmcli", "store", "info", str(store)]),
        ("wmcli collect minatar:Breakout, 10 steps", ["-m", "wmcli", "collect", "--env", "minatar:Breakout",
                                                      "--env-steps", "10", "--store", str(tmp / "m"), "--seed", "0"]),
        ("wmcli collect Breakout, 10 steps", ["-m", "wmcli", "collect", "--env", "Breakout", "--env-steps", "10",
                                              "--store", str(tmp / "a"), "--seed", "0"]),
        ("wmcli eval random minatar:Breakout, 1 episode", ["-m", "wmcli", "eval", "--policy", "random", "--env",
                                                          "minatar:Breakout", "--episodes", "1", "--seed", "0"]),
    ]


def time_once(args: list[str], pythonpath: str | None, cwd: Path) -> float | None:
    """Wall seconds of one run (None if it failed). It runs in `cwd`, away from any checkout:
    `python -m` puts the current folder first on sys.path, ahead of PYTHONPATH."""
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=cwd)
    took = time.perf_counter() - t0
    return took if r.returncode == 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref", help="another checkout of wmcli, run side by side (PYTHONPATH)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        subprocess.run([sys.executable, "-m", "wmcli", "collect", "--env", "minatar:Breakout", "--env-steps", "200",
                        "--store", str(tmp / "store"), "--seed", "0"], check=True, capture_output=True)
        variants = [("this", None)] + ([("ref", str(Path(args.ref).resolve()))] if args.ref else [])
        cmds = commands(tmp)
        times: dict[tuple[str, str], list[float]] = {}
        for rep in range(args.repeats):
            for name, cmd in cmds:
                for vname, path in variants[rep % len(variants):] + variants[: rep % len(variants)]:
                    t = time_once(cmd, path, tmp)
                    if t is not None:
                        times.setdefault((name, vname), []).append(t)
    rows, results = [], []
    for name, _ in cmds:
        row = [name]
        for vname, _ in variants:
            ts = times.get((name, vname))
            row.append(f"{median(ts):.2f} ({spread(ts, '.2f')})" if ts else "fails")
            results.append({"command": name, "variant": vname, "seconds": ts, "median": median(ts) if ts else None})
        if len(variants) == 2:
            both = times.get((name, "this")) and times.get((name, "ref"))
            row.append(f"{median(times[(name, 'ref')]) / median(times[(name, 'this')]):.2f}x" if both else "-")
        rows.append(row)
    header = ["command", "this: median s (min..max)"] + (["ref: median s (min..max)", "ref / this"] if args.ref else [])
    print_table(header, rows)
    finish({"machine": info, "repeats": args.repeats, "ref": args.ref, "results": results}, args.json)


if __name__ == "__main__":
    main()
