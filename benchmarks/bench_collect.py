"""Env steps per second of real Atari collection, 1 env vs 2 envs, with and without the store.

Variants, run side by side in one process:
  raw      the vector env stepped with random actions, nothing kept (the emulator's ceiling)
  collect  wmcli.data.collect.collect() into a fresh temporary store (episode bookkeeping, gzip'd
           HDF5 writes, one fsync per episode) -- what `wmcli collect` does
each with 1 and 2 envs, plus (unless --no-unpinned) both with 2 envs whose ALE worker threads
are left unpinned (ale-py's thread_affinity_offset=-1). wmcli pins worker thread i to core i
when it can (wmcli.data.env._pinning_offset); the unpinned variants swap in a vector env built like
wmcli.data.env's with that one setting changed, to show what pinning buys.

The variants are interleaved (the order rotates every repeat) so that load from other
processes on a shared machine hits all of them alike; the report gives the median over
repeats, the min..max spread, and the ratio to 1 env both as a ratio of medians and as the
median of the per-repeat (paired) ratios. Every run also records how many cores other
processes kept busy meanwhile (from /proc/stat); a second table keeps only the runs during
which the rest of the machine was quiet (--quiet), since on 2 cores a 2-env run cannot scale
while someone else holds one of them.

It also reports what the collected stores cost on disk per frame against raw 64x64x3 bytes.

    .venv/bin/python benchmarks/bench_collect.py                  # ~2.5 min
    .venv/bin/python benchmarks/bench_collect.py --seconds 2 --repeats 3 --json out.json

A script to run by hand, never a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, finish, machine_info, median, print_machine, print_table, spread, wait_for_quiet  # noqa: E402

import wmcli.data.play  # noqa: E402
from wmcli.base.config import EnvConfig  # noqa: E402
from wmcli.data.collect import collect  # noqa: E402
from wmcli.data.env import make_spec, make_vector_env  # noqa: E402
from wmcli.data.store import EpisodeWriter, Store  # noqa: E402


class _TimedWriter(EpisodeWriter):
    """An EpisodeWriter that adds up the wall time spent writing episodes (gzip + fsync)."""

    def __init__(self, store, attrs):
        super().__init__(store, attrs)
        self.seconds = 0.0

    def write(self, ep):
        t = time.perf_counter()
        try:
            return super().write(ep)
        finally:
            self.seconds += time.perf_counter() - t


class _TimedStore(Store):
    """A Store whose writer is timed; collect() asks the store for its writer."""

    last_writer: _TimedWriter | None = None

    def writer(self, attrs=None):
        self.last_writer = _TimedWriter(self, attrs or {})
        return self.last_writer


def _vector_env(spec, num_envs: int, unpinned: bool):
    if unpinned:
        if spec.kind != "ale" or spec.config.mode is not None or spec.config.difficulty is not None:
            raise SystemExit("--unpinned variants need an ALE game without mode/difficulty; pass --no-unpinned")
        return make_vector_env(spec, num_envs, pin_threads=False)
    return make_vector_env(spec, num_envs)


@contextlib.contextmanager
def _collect_with_unpinned_env(unpinned: bool):
    """Run collect() with the unpinned vector env swapped in (runtime only; no file is changed)."""
    if not unpinned:
        yield
        return
    original = wmcli.data.play.make_vector_env
    wmcli.data.play.make_vector_env = lambda spec, n: make_vector_env(spec, n, pin_threads=False)
    try:
        yield
    finally:
        wmcli.data.play.make_vector_env = original


# ---- the runs ------------------------------------------------------------------------------


def run_raw(spec, num_envs: int, seconds: float, seed: int, unpinned: bool = False) -> dict:
    """Step the vector env with uniform random actions for `seconds`; nothing is kept."""
    venv = _vector_env(spec, num_envs, unpinned)
    try:
        rng = np.random.default_rng(seed)
        venv.reset(seed=seed)
        for _ in range(20):  # warm up threads and caches
            venv.step(rng.integers(0, spec.num_actions, size=num_envs))
        steps = 0
        latencies = []  # seconds per vector step: a spread shows steps the envs did not share out
        with CpuMeter() as cpu:
            now = time.perf_counter()
            deadline = now + seconds
            while now < deadline:
                venv.step(rng.integers(0, spec.num_actions, size=num_envs))
                steps += num_envs
                t = time.perf_counter()
                latencies.append(t - now)
                now = t
    finally:
        venv.close()
    ms = 1e3 * np.asarray(latencies)
    return {
        "steps": steps, "seconds": cpu.wall, "steps_per_s": steps / cpu.wall,
        "cores_busy": cpu.own, "others_cores_busy": cpu.others,
        "step_ms_p50": float(np.percentile(ms, 50)), "step_ms_p90": float(np.percentile(ms, 90)),
    }


def _store_bytes(store_path: Path) -> tuple[int, int, int]:
    """(file bytes, bytes of the compressed obs datasets, frames) of every episode in a store."""
    import h5py

    files = obs = frames = 0
    for p in sorted((store_path / "episodes").iterdir()):
        if p.name.startswith("."):
            continue
        files += p.stat().st_size
        with h5py.File(p, "r", locking=False) as f:
            obs += f["obs"].id.get_storage_size()
            frames += f["obs"].shape[0]
    return files, obs, frames


def run_collect(spec, num_envs: int, env_steps: int, seed: int, tmp_root: str | None, unpinned: bool = False) -> dict:
    """collect() `env_steps` steps into a fresh temporary store; time it and measure the store."""
    with tempfile.TemporaryDirectory(prefix="wmcli-bench-collect-", dir=tmp_root) as d:
        store = _TimedStore.create_or_open(Path(d) / "store", spec.to_dict())
        with _collect_with_unpinned_env(unpinned), CpuMeter() as cpu:
            out = collect(spec, store, env_steps, num_envs=num_envs, seed=seed)
        files, obs, frames = _store_bytes(store.path)
    return {
        "steps": out["env_steps"],
        "seconds": out["seconds"],
        # collect()'s own figure: from just before reset to after the last write.
        "steps_per_s": out["env_steps_per_s"],
        "cores_busy": cpu.own,
        "others_cores_busy": cpu.others,
        "write_seconds": store.last_writer.seconds,
        "write_share": store.last_writer.seconds / out["seconds"],
        "episodes": out["episodes_written"],
        "file_bytes": files,
        "obs_bytes": obs,
        "frames": frames,
    }


# ---- summaries -------------------------------------------------------------------------------


def _name(kind: str, k: int, unpinned: bool) -> str:
    return f"{kind}-{k}" + ("-unpinned" if unpinned else "")


def _summarize(results: dict, variants: list, base: int, quiet: float | None) -> dict | None:
    """Medians per variant over all runs, or over the runs during which other processes kept
    fewer than `quiet` cores busy; ratios against `base` envs of the same kind, as a ratio of
    medians and as the median of per-repeat ratios (pairs of runs from the same repeat)."""

    def ok(x):
        return quiet is None or x["others_cores_busy"] < quiet

    out = {}
    for v in variants:
        runs = [x for x in results[_name(*v)] if ok(x)]
        if not runs:
            return None
        rates = [x["steps_per_s"] for x in runs]
        row = {
            "runs": len(runs),
            "median_steps_per_s": median(rates),
            "spread": spread(rates),
            "cores_busy": median(x["cores_busy"] for x in runs),
            "others_cores_busy": median(x["others_cores_busy"] for x in runs),
        }
        if v[0] == "collect":
            row["write_share"] = median(x["write_share"] for x in runs)
        else:
            row["step_ms_p50"] = median(x["step_ms_p50"] for x in runs)
            row["step_ms_p90"] = median(x["step_ms_p90"] for x in runs)
        out[_name(*v)] = row
    for kind, k, unpinned in variants:
        if k == base and not unpinned:
            continue
        row = out[_name(kind, k, unpinned)]
        base_name = _name(kind, base, False)
        row["ratio_of_medians"] = row["median_steps_per_s"] / out[base_name]["median_steps_per_s"]
        pairs = [
            a["steps_per_s"] / b["steps_per_s"]
            for a, b in zip(results[_name(kind, k, unpinned)], results[base_name])
            if ok(a) and ok(b)
        ]
        row["median_paired_ratio"] = median(pairs) if pairs else None
        row["paired_runs"] = len(pairs)
    for _, k, unpinned in variants:
        if _name("collect", k, unpinned) in out and _name("raw", k, unpinned) in out:
            out[_name("collect_vs_raw", k, unpinned)] = (
                out[_name("collect", k, unpinned)]["median_steps_per_s"] / out[_name("raw", k, unpinned)]["median_steps_per_s"]
            )
    return out


def _print_summary(summ: dict, variants: list, base: int, title: str, spec) -> None:
    rows = []
    for kind, k, unpinned in variants:
        row = summ[_name(kind, k, unpinned)]
        is_base = k == base and not unpinned
        paired = row.get("median_paired_ratio")
        rows.append([
            kind, f"{k}" + (" unpinned" if unpinned else ""), row["runs"], f"{row['median_steps_per_s']:,.0f}",
            row["spread"], f"{row['cores_busy']:.2f}", f"{row['others_cores_busy']:.2f}",
            "(base)" if is_base else f"{row['ratio_of_medians']:.2f}x",
            "(base)" if is_base else (f"{paired:.2f}x ({row['paired_runs']})" if paired is not None else "-"),
            f"{100 * row['write_share']:.0f}%" if "write_share" in row else "",
            f"{row['step_ms_p50']:.2f} / {row['step_ms_p90']:.2f}" if "step_ms_p50" in row else "",
        ])
    print(f"# {spec.name}, random policy: env steps/s, {title}")
    print_table(
        ["variant", "envs", "runs", "median steps/s", "min..max", "cores busy (ours)", "cores busy (others)",
         f"vs {base} env (medians)", f"vs {base} env (paired)", "time in writes", "ms/step p50 / p90"],
        rows,
    )
    ratios = [f"{k} env{' unpinned' if p else ''} {summ[_name('collect_vs_raw', k, p)]:.2f}"
              for _, k, p in variants if _name("collect_vs_raw", k, p) in summ]
    print("  collect/raw: " + ", ".join(dict.fromkeys(ratios)))


# ---- main --------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--game", default="Breakout", help="ALE game (default Breakout)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each timed run (default 4)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each variant (default 5)")
    ap.add_argument("--envs", default="1,2", help="env counts to compare; the first is the base (default 1,2)")
    ap.add_argument("--no-unpinned", action="store_true", help="skip the variants with unpinned ALE threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="folder for the temporary stores (default: system tmp)")
    ap.add_argument(
        "--quiet", type=float, default=0.25,
        help="also summarize the runs during which other processes kept fewer cores busy than this (default 0.25)",
    )
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="SECONDS",
        help="before each run, wait up to this long for a 1 s window in which other processes keep "
        "fewer than --quiet cores busy (default 0: don't wait)",
    )
    ap.add_argument("--json", default=None, help="also write all results to this JSON file")
    args = ap.parse_args(argv)

    info = machine_info()
    print_machine(info)
    spec = make_spec(EnvConfig(game=args.game))
    env_counts = [int(x) for x in args.envs.split(",")]
    base = env_counts[0]
    variants = [(kind, k, False) for kind in ("raw", "collect") for k in env_counts]
    if not args.no_unpinned:
        variants += [(kind, k, True) for kind in ("raw", "collect") for k in env_counts if k > 1]
    raw_frame = int(np.prod(spec.frame_shape))

    # Size collect() runs (they take a step budget, not a duration) from a short raw run;
    # the estimate is then updated from the collect runs themselves.
    est = {k: run_raw(spec, k, 1.0, args.seed)["steps_per_s"] for k in env_counts}
    print("calibration (raw steps/s, 1 s): " + ", ".join(f"{k} env: {v:,.0f}" for k, v in est.items()))
    collect_rates: dict[str, list[float]] = {_name("collect", k, p): [] for _, k, p in variants}

    results: dict[str, list[dict]] = {_name(*v): [] for v in variants}
    for r in range(args.repeats):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for kind, k, unpinned in order:
            seed = args.seed + 1000 * r + k
            name = _name(kind, k, unpinned)
            waited = wait_for_quiet(args.quiet, args.wait_quiet) if args.wait_quiet > 0 else 0.0
            if kind == "raw":
                res = run_raw(spec, k, args.seconds, seed, unpinned)
            else:
                rates = collect_rates[name]
                rate = median(rates) if rates else 0.8 * est[k]
                res = run_collect(spec, k, max(200, int(rate * args.seconds)), seed, args.tmp, unpinned)
                rates.append(res["steps_per_s"])
            res["waited_for_quiet_s"] = waited
            results[name].append(res)
            print(
                f"  repeat {r + 1}/{args.repeats} {name:18s} {res['steps_per_s']:8,.0f} steps/s "
                f"over {res['seconds']:.1f} s; cores busy: this process {res['cores_busy']:.2f}, "
                f"others {res['others_cores_busy']:.2f}" + (f" (waited {waited:.0f} s for quiet)" if waited > 1.5 else ""),
                flush=True,
            )
    print()

    summary: dict = {"all_runs": _summarize(results, variants, base, None)}
    _print_summary(summary["all_runs"], variants, base, f"median of all {args.repeats} x {args.seconds:g} s runs", spec)
    quiet = _summarize(results, variants, base, args.quiet)
    summary[f"quiet_runs (others < {args.quiet} cores)"] = quiet
    n_quiet = sum(x["others_cores_busy"] < args.quiet for rr in results.values() for x in rr)
    if quiet is not None and n_quiet == sum(len(rr) for rr in results.values()):
        print(f"  (every run was quiet: other processes kept < {args.quiet} cores busy throughout)")
    elif quiet is not None:
        print()
        _print_summary(quiet, variants, base, f"median of the quiet runs only (others kept < {args.quiet} cores busy)", spec)
    else:
        print(f"\n(some variant never ran while others kept < {args.quiet} cores busy: no quiet-only table)")

    # ---- the stores on disk -------------------------------------------------------------
    all_collect = [x for v in variants if v[0] == "collect" for x in results[_name(*v)]]
    files = sum(x["file_bytes"] for x in all_collect)
    obs = sum(x["obs_bytes"] for x in all_collect)
    frames = sum(x["frames"] for x in all_collect)
    disk = {
        "frames": frames,
        "episodes": sum(x["episodes"] for x in all_collect),
        "raw_bytes_per_frame": raw_frame,
        "file_bytes_per_frame": files / frames,
        "obs_bytes_per_frame": obs / frames,
        "compression_file": raw_frame * frames / files,
        "compression_obs": raw_frame * frames / obs,
    }
    summary["disk"] = disk
    print()
    print(f"# stores on disk ({disk['frames']:,} frames in {disk['episodes']} episodes, gzip level 1)")
    print_table(
        ["measure", "bytes/frame", "compression vs raw"],
        [
            ["raw frame (64x64x3 uint8)", f"{raw_frame:,}", "1x"],
            ["obs dataset (compressed chunks)", f"{disk['obs_bytes_per_frame']:,.0f}", f"{disk['compression_obs']:.1f}x"],
            ["whole episode files", f"{disk['file_bytes_per_frame']:,.0f}", f"{disk['compression_file']:.1f}x"],
        ],
    )
    out = {"machine": info, "args": vars(args), "calibration": est, "runs": results, "summary": summary}
    return finish(out, args.json)


if __name__ == "__main__":
    main()
