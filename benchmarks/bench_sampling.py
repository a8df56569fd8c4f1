"""Sampled frames per second from EpisodeBuffer on one core, against plain memcpy bandwidth.

1. Builds a store of ~100k real 64x64 Breakout frames (random policy, 2 envs) at --store, or
   reuses the one already there (default /tmp/wmcli-bench-store, so reruns skip this).
2. Pins itself to one core (numpy's gathers and copies are single-threaded anyway; the BLAS/OMP
   thread counts are set to 1 before numpy loads) and times loading the store into an
   EpisodeBuffer, in MB/s of decoded frames, side by side with the HDF5/gzip decode alone and
   with a sketch of a presized load (to show what the buffer's regrowth costs).
3. Times `EpisodeBuffer.sample` for several (batch, seq_len, pad_before, pad_after) shapes, and
   a 1 GiB `np.copyto` as the memory-bandwidth yardstick, interleaved within every repeat.
   GB/s counts the bytes of the batch produced (each byte is read once and written once, as in
   memcpy), so the two figures compare directly.
4. Splits one sample() call into its steps (index arithmetic, frame gather, zeroing the padding,
   step arrays) to show where the time goes, and times the frame gather into a preallocated
   array as the ceiling of a no-allocation design.

    .venv/bin/python benchmarks/bench_sampling.py                 # ~2 min with a cached store
    .venv/bin/python benchmarks/bench_sampling.py --store /tmp/s --repeats 9 --json out.json

A script to run by hand, never a timed test.
"""

from __future__ import annotations

import os

# Before numpy loads: one thread for every math library, so the numbers are one core's.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, finish, machine_info, median, print_machine, print_table, spread  # noqa: E402

from wmcli.base.config import EnvConfig  # noqa: E402
from wmcli.data.buffer import EpisodeBuffer  # noqa: E402
from wmcli.data.collect import collect  # noqa: E402
from wmcli.data.env import make_spec  # noqa: E402
from wmcli.data.store import Store  # noqa: E402
from wmcli.data.store_summary import summarize  # noqa: E402

# (batch, seq_len, pad_before, pad_after): denoiser segments with 3 frames of padding allowed
# before an episode's start; DIAMOND's 4 conditioning + 1 target + 1 frames; reward/end model
# sequences.
DEFAULT_SHAPES = "32x5:3:0,32x6:3:0,32x19:0:0"
GiB = 2**30


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    shapes = []
    for item in text.split(","):
        bl, *pads = item.split(":")
        b, seq = (int(x) for x in bl.split("x"))
        before = int(pads[0]) if len(pads) > 0 else 0
        after = int(pads[1]) if len(pads) > 1 else 0
        shapes.append((b, seq, before, after))
    return shapes


def shape_name(shape) -> str:
    b, seq, before, after = shape
    return f"{b}x{seq} (pad {before}/{after})"


# ---- the store ---------------------------------------------------------------------------


def ensure_store(path: Path, game: str, frames: int, num_envs: int, seed: int) -> dict:
    """Open the store at `path`, collecting random-policy steps until it holds `frames` frames."""
    spec = make_spec(EnvConfig(game=game))
    store = Store.create_or_open(path, spec.to_dict())
    have = summarize(store)["frames"]
    built = None
    if have < frames:
        todo = frames - have
        print(f"building the store: {todo:,} {spec.name} steps with {num_envs} envs into {path} ...", flush=True)
        out = collect(spec, store, todo, num_envs=num_envs, seed=seed + have)
        built = {"env_steps": out["env_steps"], "seconds": out["seconds"], "env_steps_per_s": out["env_steps_per_s"]}
        print(f"  {out['env_steps']:,} steps in {out['seconds']:.0f} s ({out['env_steps_per_s']:,.0f} steps/s)")
    else:
        print(f"reusing the store at {path} ({have:,} frames; delete it to rebuild)")
    s = summarize(store)
    return {
        "path": str(path),
        "game": s["game"],
        "episodes": s["episodes"],
        "frames": s["frames"],
        "disk_bytes": s["disk_bytes"],
        "built_now": built,
    }


def load_buffer(path: Path):
    """What training does: EpisodeBuffer(Store.open(path))."""
    buf = EpisodeBuffer(Store.open(path))
    return buf, buf.num_frames


def load_decode_only(path: Path):
    """Store.read_episode for every episode, results dropped: the HDF5/gzip part of a load."""
    store = Store.open(path)
    frames = 0
    for p in store.episode_paths():
        frames += len(store.read_episode(p).obs)
    return None, frames


def load_presized(path: Path):
    """A sketch of a faster load (not wmcli code): size the frame array once from the files'
    headers, then let HDF5 decode each episode straight into its slice (no temporary array,
    no regrowth). Step arrays are read too; episode checks are skipped."""
    import h5py

    store = Store.open(path)
    paths = store.episode_paths()
    lengths = []
    for p in paths:
        with h5py.File(p, "r", locking=False) as f:
            lengths.append(f["obs"].shape[0])
    total = sum(lengths)
    obs = np.empty((total, *store.spec.frame_shape), dtype=np.uint8)
    steps = {k: np.zeros(total, dtype=np.int64 if k == "act" else np.float32) for k in ("act", "rew")}
    s = 0
    for p, n in zip(paths, lengths):
        with h5py.File(p, "r", locking=False) as f:
            f["obs"].read_direct(obs, dest_sel=np.s_[s : s + n])
            for k, a in steps.items():
                a[s : s + n - 1] = f[k][()]
        s += n
    return obs, total


LOADERS = {
    "EpisodeBuffer(Store.open(path))": load_buffer,
    "decode only (read_episode, dropped)": load_decode_only,
    "presized, read_direct (sketch)": load_presized,
}


def time_load(name: str, path: Path, frame_bytes: int) -> tuple[object, dict]:
    gc.collect()
    with CpuMeter() as cpu:
        result, frames = LOADERS[name](path)
    return result, {
        "seconds": cpu.wall,
        "frames": frames,
        "decoded_MB_per_s": frames * frame_bytes / cpu.wall / 1e6,
        "frames_per_s": frames / cpu.wall,
        "cores_busy": cpu.own,
    }


# ---- timed variants ----------------------------------------------------------------------


def _batch_bytes(seg) -> int:
    """Bytes of every array in a Segments batch (frames, step arrays, mask)."""
    return sum(a.nbytes for a in vars(seg).values() if isinstance(a, np.ndarray))


def time_sample(buf: EpisodeBuffer, shape, seconds: float, rng: np.random.Generator) -> dict:
    """Call buf.sample repeatedly for about `seconds`; frames/s and batch GB/s."""
    b, seq, before, after = shape
    for _ in range(3):  # warm up the allocator and caches
        seg = buf.sample(rng, b, seq, pad_before=before, pad_after=after)
    nbytes = _batch_bytes(seg)
    calls = 0
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with CpuMeter() as cpu:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            seg = buf.sample(rng, b, seq, pad_before=before, pad_after=after)
            calls += 1
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0
    return {
        "calls": calls,
        "frames_per_s": calls * b * seq / cpu.wall,
        "us_per_batch": 1e6 * cpu.wall / calls,
        "batch_bytes": nbytes,
        "GB_per_s": calls * nbytes / cpu.wall / 1e9,
        "page_faults_per_batch": faults / calls,
        "cores_busy": cpu.own,
        "others_cores_busy": cpu.others,
    }


def time_memcpy(src: np.ndarray, dst: np.ndarray) -> dict:
    with CpuMeter() as cpu:
        np.copyto(dst, src)
    return {"seconds": cpu.wall, "GB_per_s": src.nbytes / cpu.wall / 1e9, "cores_busy": cpu.own}


# ---- where one sample() call spends its time -----------------------------------------------


def _timeit(fn, seconds: float) -> float:
    """Median microseconds per call of fn over ~`seconds`, in 5 slices."""
    per = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            t = time.perf_counter() - t0
            if t >= seconds / 5:
                break
        per.append(1e6 * t / n)
    return median(per)


def profile_sample(buf: EpisodeBuffer, shape, seconds: float) -> dict:
    """Time each step of EpisodeBuffer.sample apart, restated here on the buffer's arrays.

    The steps mirror buffer.py's sample() and read the buffer's private arrays (_obs, _steps,
    starts, lengths); update this if buffer.py changes. `gather_into_preallocated` is not in
    sample() and shows what the frame copy costs when the output array is reused.
    """
    b, seq, before, after = shape
    obs_all, steps_all = buf._obs, buf._steps
    starts, lengths = buf.starts, buf.lengths
    rng = np.random.default_rng(1)

    def index():
        counts = np.maximum(lengths + before + after - seq + 1, 0)
        cum = np.cumsum(counts)
        u = rng.integers(0, int(counts.sum()), size=b)
        ep = np.searchsorted(cum, u, side="right")
        s = u - (cum[ep] - counts[ep]) - before
        pos = s[:, None] + np.arange(seq)[None, :]
        mask = (pos >= 0) & (pos < lengths[ep][:, None])
        idx = starts[ep][:, None] + np.clip(pos, 0, lengths[ep][:, None] - 1)
        return idx, mask

    # Fresh random indices on every call, as in sample(): reusing one index set would time
    # frames that already sit in the cache.
    draws = [index() for _ in range(256)]
    turn = iter(range(10**12))

    def draw():
        return draws[next(turn) % len(draws)]

    out = np.empty((b, seq, *buf.frame_shape), dtype=np.uint8)
    obs = obs_all[draws[0][0]]
    frame_bytes = int(np.prod(buf.frame_shape))

    def gather_new():
        return obs_all[draw()[0]]

    def zero_padding():
        obs[~draw()[1]] = 0

    def step_arrays():
        idx, mask = draw()
        return {k: np.where(mask, a[idx], 0).astype(a.dtype) for k, a in steps_all.items()}

    def gather_prealloc():
        # mode="clip" because take() with the default mode="raise" copies through a buffer
        # when given `out`; the indices are in range either way.
        return np.take(obs_all, draw()[0], axis=0, out=out, mode="clip")

    parts = {
        "index arithmetic": _timeit(index, seconds),
        "frame gather obs[idx] (new array)": _timeit(gather_new, seconds),
        "zero the padding obs[~mask] = 0": _timeit(zero_padding, seconds),
        "step arrays (gather + where + astype each)": _timeit(step_arrays, seconds),
    }
    whole = _timeit(lambda: buf.sample(rng, b, seq, pad_before=before, pad_after=after), seconds)
    prealloc = _timeit(gather_prealloc, seconds)
    frames = b * seq
    return {
        "parts_us": parts,
        "sum_of_parts_us": sum(parts.values()),
        "whole_sample_us": whole,
        "gather_into_preallocated_us": prealloc,
        "gather_new_GB_per_s": frames * frame_bytes / parts["frame gather obs[idx] (new array)"] / 1e3,
        "gather_prealloc_GB_per_s": frames * frame_bytes / prealloc / 1e3,
        "gather_prealloc_frames_per_s": frames / prealloc * 1e6,
        "padded_share": float(np.mean([(~m).mean() for _, m in draws])),
    }


# ---- main --------------------------------------------------------------------------------


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="/tmp/wmcli-bench-store", help="store to build or reuse")
    ap.add_argument("--game", default="Breakout")
    ap.add_argument("--frames", type=int, default=100_000, help="frames the store should hold (default 100k)")
    ap.add_argument("--build-envs", type=int, default=2, help="envs used to build the store (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"BxL:pad_before:pad_after,... (default {DEFAULT_SHAPES})")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats of every variant (default 7)")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each sampling run (default 1)")
    ap.add_argument("--load-repeats", type=int, default=3, help="times the store is loaded (default 3)")
    ap.add_argument("--memcpy-gib", type=float, default=1.0, help="size of the memcpy yardstick (default 1 GiB)")
    ap.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last allowed; -1: no pinning)")
    ap.add_argument("--target", type=float, default=200_000, help="sampled frames/s target (default 200k)")
    ap.add_argument("--json", default=None, help="also write all results to this JSON file")
    args = ap.parse_args(argv)

    info = machine_info()
    print_machine(info)
    shapes = parse_shapes(args.shapes)
    store_info = ensure_store(Path(args.store), args.game, args.frames, args.build_envs, args.seed)
    print(
        f"store: {store_info['frames']:,} frames in {store_info['episodes']} episodes, "
        f"{store_info['disk_bytes'] / 1e6:.1f} MB on disk"
    )

    # Everything from here runs on one core.
    if args.cpu != -1 and hasattr(os, "sched_setaffinity"):
        core = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        info["pinned_to_core"] = core
        print(f"pinned to core {core}; OMP/MKL/OpenBLAS threads = 1\n")
    else:
        info["pinned_to_core"] = None

    # ---- load, three ways, interleaved ---------------------------------------------------
    frame_bytes = int(np.prod(make_spec(EnvConfig(game=args.game)).frame_shape))
    loads: dict[str, list[dict]] = {name: [] for name in LOADERS}
    names = list(LOADERS)
    buf = None
    for r in range(args.load_repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            buf = None  # free the previous copy first
            result, res = time_load(name, Path(args.store), frame_bytes)
            if isinstance(result, EpisodeBuffer):
                buf = result
            del result
            loads[name].append(res)
            print(
                f"  load {r + 1}/{args.load_repeats} {name}: {res['frames']:,} frames in {res['seconds']:.2f} s = "
                f"{res['decoded_MB_per_s']:,.0f} MB/s decoded",
                flush=True,
            )
    if buf is None:
        buf, _ = load_buffer(Path(args.store))
    load_summary = {
        name: {
            "median_seconds": median(x["seconds"] for x in rr),
            "median_decoded_MB_per_s": median(x["decoded_MB_per_s"] for x in rr),
            "median_frames_per_s": median(x["frames_per_s"] for x in rr),
            "spread_seconds": spread((x["seconds"] for x in rr), ".2f"),
        }
        for name, rr in loads.items()
    }
    load_summary["buffer_GB"] = buf._obs.nbytes / 1e9
    load_summary["frames_GB"] = buf.num_frames * frame_bytes / 1e9

    # ---- sampling vs memcpy, interleaved -------------------------------------------------
    n = int(args.memcpy_gib * GiB)
    src = np.ones(n, dtype=np.uint8)  # written, so its pages are real before timing
    dst = np.zeros(n, dtype=np.uint8)
    np.copyto(dst, src)  # fault dst in
    rng = np.random.default_rng(args.seed)
    variants = [("sample", s) for s in shapes] + [("memcpy", None)]
    runs: dict[str, list[dict]] = {("memcpy" if k == "memcpy" else shape_name(s)): [] for k, s in variants}
    for r in range(args.repeats):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for kind, s in order:
            if kind == "memcpy":
                res = time_memcpy(src, dst)
                runs["memcpy"].append(res)
                line = f"memcpy {args.memcpy_gib:g} GiB: {res['GB_per_s']:.2f} GB/s"
            else:
                res = time_sample(buf, s, args.seconds, rng)
                runs[shape_name(s)].append(res)
                line = (
                    f"sample {shape_name(s)}: {res['frames_per_s']:,.0f} frames/s, {res['GB_per_s']:.2f} GB/s, "
                    f"{res['page_faults_per_batch']:.0f} page faults/batch, core busy {res['cores_busy']:.2f}"
                )
            print(f"  repeat {r + 1}/{args.repeats} {line}", flush=True)
    del src, dst
    print()

    memcpy_gbs = median(x["GB_per_s"] for x in runs["memcpy"])
    summary = {"memcpy_GB_per_s": memcpy_gbs, "memcpy_spread": spread((x["GB_per_s"] for x in runs["memcpy"]), ".2f")}
    rows = []
    for s in shapes:
        rr = runs[shape_name(s)]
        fps = [x["frames_per_s"] for x in rr]
        gbs = median(x["GB_per_s"] for x in rr)
        row = {
            "median_frames_per_s": median(fps),
            "spread": spread(fps),
            "median_us_per_batch": median(x["us_per_batch"] for x in rr),
            "batch_MB": rr[0]["batch_bytes"] / 1e6,
            "median_GB_per_s": gbs,
            "share_of_memcpy": gbs / memcpy_gbs,
            "page_faults_per_batch": median(x["page_faults_per_batch"] for x in rr),
            "core_busy": median(x["cores_busy"] for x in rr),
            "vs_target": median(fps) / args.target,
        }
        summary[shape_name(s)] = row
        rows.append([
            shape_name(s), f"{row['median_frames_per_s']:,.0f}", row["spread"], f"{row['median_us_per_batch']:,.0f}",
            f"{row['batch_MB']:.2f}", f"{gbs:.2f}", f"{100 * row['share_of_memcpy']:.0f}%",
            f"{row['page_faults_per_batch']:.0f}", f"{row['vs_target']:.2f}x",
        ])
    rows.append([
        f"memcpy (np.copyto, {args.memcpy_gib:g} GiB)", "", summary["memcpy_spread"] + " GB/s", "",
        f"{n / 1e6:,.0f}", f"{memcpy_gbs:.2f}", "100%", "", "",
    ])

    print(f"# EpisodeBuffer.sample on one core, median of {args.repeats} x {args.seconds:g} s "
          f"({buf.num_frames:,} frames, {load_summary['buffer_GB']:.2f} GB buffer)")
    print_table(
        ["shape", "frames/s", "min..max", "us/batch", "batch MB", "GB/s", "of memcpy", "page faults/batch",
         f"vs {args.target / 1e3:g}k target"],
        rows,
    )
    print()
    print(
        f"# loading the store ({buf.num_frames:,} frames = {load_summary['frames_GB']:.2f} GB decoded; "
        f"the buffer's array is {load_summary['buffer_GB']:.2f} GB), median of {args.load_repeats}, page cache warm"
    )
    print_table(
        ["loader", "seconds", "min..max s", "decoded MB/s", "frames/s"],
        [
            [name, f"{v['median_seconds']:.2f}", v["spread_seconds"], f"{v['median_decoded_MB_per_s']:,.0f}",
             f"{v['median_frames_per_s']:,.0f}"]
            for name, v in load_summary.items() if name in LOADERS
        ],
    )

    # ---- profile ---------------------------------------------------------------------------
    profiles = {}
    print()
    print("# where one sample() call goes (median us per call; parts timed apart)")
    prow = []
    for s in shapes:
        p = profile_sample(buf, s, max(0.5, args.seconds))
        profiles[shape_name(s)] = p
        for part, us in p["parts_us"].items():
            prow.append([shape_name(s), part, f"{us:,.0f}", f"{100 * us / p['whole_sample_us']:.0f}% of the call"])
        rest = p["whole_sample_us"] - p["sum_of_parts_us"]
        prow.append([shape_name(s), "rest (Python calls, Segments, timing noise)", f"{rest:,.0f}", ""])
        prow.append([shape_name(s), "whole sample() call", f"{p['whole_sample_us']:,.0f}", ""])
        prow.append([
            shape_name(s), "(not in sample) gather into preallocated out",
            f"{p['gather_into_preallocated_us']:,.0f}",
            f"{p['gather_prealloc_GB_per_s']:.2f} GB/s, {p['gather_prealloc_frames_per_s']:,.0f} frames/s",
        ])
    print_table(["shape", "step", "us", "share / note"], prow)

    out = {
        "machine": info, "args": vars(args), "store": store_info, "load": {"runs": loads, "summary": load_summary},
        "runs": runs, "summary": summary, "profile": profiles,
    }
    return finish(out, args.json)


if __name__ == "__main__":
    main()
