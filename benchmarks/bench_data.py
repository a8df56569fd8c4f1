"""Training segments from RAM against straight from the store's files (issue 13 §4).

1. Writes a synthetic store with the real Store API (Atari-like frames: a flat background and
   a few moving blocks, so gzip shrinks them as it does real games; --episodes x --length steps).
2. Segments/s of one training step's draws (the denoiser's and the reward/end model's requests,
   shaped as in the tiny and atari100k recipes) from: RAM (EpisodeBuffer); disk with a cold page
   cache (every file dropped from the cache before each repeat, by drop_caches when permitted,
   else posix_fadvise(DONTNEED) per file; a fresh buffer, so no open file or HDF5 chunk cache
   either); disk with a warm page cache; and disk through the Prefetcher's worker processes
   asked for one step after another (its throughput).
3. A training step's time (denoiser + reward/end, forward, backward, AdamW, as train_wm does),
   tiny and atari100k models at their recipes' batch sizes, with the segments from RAM, from
   disk in the training process, and from disk prefetched by one worker; and the time the step
   waits for its segments (inside `get`), which a shared machine's noise does not blur as it
   blurs the step's total. One untimed training step first, so workers are as far ahead as in
   any later step (the steady state of a long run).
4. The same wait for a GPU-like step: atari100k's segments, then a fixed pause (--pauses, in ms,
   the CPU idle as while a GPU computes), warm page cache: where a step is shorter than a worker
   needs for a step's segments, the wait is what the workers' throughput leaves.

Variants are interleaved within each repeat; medians are reported.

    python benchmarks/bench_data.py                     # about 20 minutes on 2 CPU cores
    python benchmarks/bench_data.py --atari-steps 0     # skip the atari100k model (slow on CPU)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import finish, machine_info, median, print_machine, print_table  # noqa: E402

from wmcli.base.recipe import load_recipe  # noqa: E402
from wmcli.data.buffer import EpisodeBuffer  # noqa: E402
from wmcli.data.disk_buffer import DiskEpisodeBuffer  # noqa: E402
from wmcli.data.prefetch import Inline, Prefetcher, step_segments  # noqa: E402
from wmcli.data.store import Episode, Store  # noqa: E402
from wmcli.world.batches import denoiser_request, rew_end_request  # noqa: E402


def atari_like_episode(T: int, seed: int) -> Episode:
    """Frames that compress like a game's: a background colour and four blocks moving about."""
    rng = np.random.default_rng(seed)
    obs = np.empty((T + 1, 64, 64, 3), np.uint8)
    obs[:] = rng.integers(0, 80, 3, dtype=np.uint8)
    pos = rng.integers(0, 56, (4, 2))
    vel = rng.integers(-2, 3, (4, 2))
    colours = rng.integers(80, 256, (4, 3), dtype=np.uint8)
    for t in range(T + 1):
        pos = np.clip(pos + vel, 0, 56)
        for (y, x), c in zip(pos, colours):
            obs[t, y : y + 8, x : x + 8] = c
    return Episode(obs=obs, act=rng.integers(0, 4, T), rew=(rng.random(T) < 0.05).astype(np.float32),
                   end=np.eye(1, T, T - 1, dtype=bool)[0], life_loss=rng.random(T) < 0.01, trunc=np.zeros(T, bool))


def make_store(path: Path, episodes: int, length: int) -> Store:
    env = {"kind": "ale", "name": "Synthetic", "num_actions": 4, "frame_shape": [64, 64, 3], "protocol": {}}
    store = Store.create_or_open(path, env)
    w = store.writer()
    for i in range(episodes):
        w.write(atari_like_episode(length + (i * 37) % 50, seed=i))
    return store


def drop_cache(paths: list[Path]) -> str:
    """Drop the files from the page cache; returns the method that worked."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "posix_fadvise(DONTNEED)"


def requests_of(name: str):
    recipe = load_recipe(name)
    cfg, n = recipe.train_wm, recipe.denoiser.num_context
    return recipe, [denoiser_request(cfg, n, cfg.batch_size, cfg.sample_weights),
                    rew_end_request(cfg, cfg.rew_end_batch_size, cfg.sample_weights)]


def time_draws(get, steps: range) -> float:
    """Seconds per step of get(step) over `steps`."""
    t = time.perf_counter()
    for k in steps:
        get(k)
    return (time.perf_counter() - t) / len(steps)


def bench_segments(store: Store, paths: list[Path], names: list[str], repeats: int, steps: int) -> tuple[list, str]:
    ram = EpisodeBuffer(store, episodes=paths)
    rows, method = [], ""
    for name in names:
        _, reqs = requests_of(name)
        per_step = sum(r.batch_size for r in reqs)
        res: dict[str, list[float]] = {k: [] for k in ("ram", "disk cold", "disk warm", "disk, 2 workers")}
        for rep in range(repeats):
            base = 1000 * rep
            res["ram"].append(time_draws(lambda k: step_segments(ram, 0, 0, k, reqs), range(base, base + steps)))
            method = drop_cache(paths)
            cold = DiskEpisodeBuffer(store, episodes=paths)  # fresh: no open file, no HDF5 chunk cache
            res["disk cold"].append(time_draws(lambda k: step_segments(cold, 0, 0, k, reqs), range(base, base + steps)))
            for f in paths:  # warm the page cache
                f.read_bytes()
            warm = DiskEpisodeBuffer(store, episodes=paths)
            res["disk warm"].append(time_draws(lambda k: step_segments(warm, 0, 0, k, reqs), range(base, base + steps)))
            with Prefetcher(warm, 0, 0, reqs, range(base, base + steps + 1), workers=2) as pre:
                pre.get(base)  # workers started
                res["disk, 2 workers"].append(time_draws(pre.get, range(base + 1, base + steps + 1)))
        r0 = median(res["ram"])
        for k, v in res.items():
            rows.append([name, k, f"{per_step}", f"{per_step / median(v):,.0f}", f"{median(v) * 1e3:.2f}", f"{median(v) / r0:.1f}x"])
    return rows, method


def bench_training(store: Store, paths: list[Path], name: str, repeats: int, steps: int) -> list:
    import torch
    from torch import nn

    from wmcli.base.runtime import make_runtime, step_generators
    from wmcli.world.batches import DenoiserLoss, RewEndLoss, denoiser_inputs, denoiser_noise, rew_end_inputs
    from wmcli.world.world_model import build_networks

    recipe, reqs = requests_of(name)
    cfg = recipe.train_wm
    rt = make_runtime("cpu", "fp32")
    torch.manual_seed(0)
    den, rew = build_networks(recipe, 4)
    den.to(memory_format=torch.channels_last)
    rew.to(memory_format=torch.channels_last)
    den_loss, rew_loss = DenoiserLoss(den, cfg.autoregressive_steps), RewEndLoss(rew)
    opt_d, opt_r = torch.optim.AdamW(den.parameters(), lr=1e-4), torch.optim.AdamW(rew.parameters(), lr=1e-4)
    B = cfg.batch_size

    waited = [0.0]  # seconds spent in batches.get: the step waiting for its segments

    def train_step(step: int, batches) -> None:
        _, g = step_generators(cfg.seed, 0, step, rt.device)
        t = time.perf_counter()
        ds, rs = batches.get(step)
        waited[0] += time.perf_counter() - t
        b = denoiser_inputs(ds, rt)
        draws = denoiser_noise(den, B, (3, 64, 64), g, rt, cfg.autoregressive_steps)
        loss = den_loss(b["obs"], b["act"], b["mask"], **draws)
        opt_d.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt_d.step()
        rb = rew_end_inputs(rs, cfg, rt)
        loss = rew_loss(rb["obs"], rb["act"], rb["next_obs"], rb["rew"], rb["end"], rb["mask"])
        opt_r.zero_grad()
        loss.backward()
        opt_r.step()

    ram = EpisodeBuffer(store, episodes=paths)
    disk = DiskEpisodeBuffer(store, episodes=paths)
    res: dict[str, list[float]] = {"ram": [], "disk, in process": [], "disk, 1 worker prefetching": []}
    wait: dict[str, list[float]] = {k: [] for k in res}
    train_step(0, Inline(ram, 0, 0, reqs))  # warm-up (allocations)
    for rep in range(repeats):
        base = 1000 * (rep + 1)
        for k in res:
            drop_cache(paths)  # each variant starts from a cold page cache
            rng = range(base, base + steps + 1)
            src = (Inline(ram, 0, 0, reqs) if k == "ram" else Inline(disk, 0, 0, reqs) if k.endswith("process")
                   else Prefetcher(disk, 0, 0, reqs, rng, workers=1))
            with src:
                train_step(base, src)  # not timed: the worker started and a step's time ahead, as later
                t, waited[0] = time.perf_counter(), 0.0
                for s in range(base + 1, base + steps + 1):
                    train_step(s, src)
                res[k].append((time.perf_counter() - t) / steps)
                wait[k].append(waited[0] / steps)
    r0 = median(res["ram"])
    return [[name, k, f"{B}", f"{median(v):.3f}", f"{median(v) / r0:.2f}x", f"{1000 * median(wait[k]):.2f}",
             f"{100 * median(wait[k]) / median(v):.2f}%"] for k, v in res.items()]


def bench_paced(store: Store, paths: list[Path], name: str, pauses_ms: list[float], repeats: int, steps: int) -> list:
    """Per step: get the segments, then sleep `pause` (a GPU-like step, the CPU idle). Returns rows
    of ms waiting in get and ms per step, medians over repeats, per pause and source."""
    _, reqs = requests_of(name)
    for f in paths:  # warm page cache: a long run's steady state when the store fits in it
        f.read_bytes()
    ram, disk = EpisodeBuffer(store, episodes=paths), DiskEpisodeBuffer(store, episodes=paths)
    sources = {"ram": lambda r: Inline(ram, 0, 0, reqs), "disk, in process": lambda r: Inline(disk, 0, 0, reqs),
               "disk, 1 worker": lambda r: Prefetcher(disk, 0, 0, reqs, r, workers=1),
               "disk, 2 workers": lambda r: Prefetcher(disk, 0, 0, reqs, r, workers=2)}
    wait: dict[tuple, list[float]] = {}
    total: dict[tuple, list[float]] = {}
    for rep in range(repeats):
        for pause in pauses_ms:
            for k, make in sources.items():
                base = 1000 * (rep + 1)
                with make(range(base, base + steps + 1)) as src:
                    src.get(base)  # not timed: workers started and a step's time ahead, as later
                    time.sleep(pause / 1e3)
                    waited, t = 0.0, time.perf_counter()
                    for s in range(base + 1, base + steps + 1):
                        t0 = time.perf_counter()
                        src.get(s)
                        waited += time.perf_counter() - t0
                        time.sleep(pause / 1e3)
                    total.setdefault((pause, k), []).append((time.perf_counter() - t) / steps)
                    wait.setdefault((pause, k), []).append(waited / steps)
    return [[name, f"{pause:g}", k, f"{1e3 * median(wait[pause, k]):.2f}", f"{1e3 * median(total[pause, k]):.1f}"]
            for pause in pauses_ms for k in sources]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--length", type=int, default=150, help="steps per episode (plus 0..49)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--draw-steps", type=int, default=40, help="training steps' draws timed per repeat")
    ap.add_argument("--tiny-steps", type=int, default=10)
    ap.add_argument("--atari-steps", type=int, default=2)
    ap.add_argument("--train-repeats", type=int, default=3)
    ap.add_argument("--pauses", default="10,30,100", help="GPU-like steps: ms of pause after each get, comma-separated")
    ap.add_argument("--paced-steps", type=int, default=30, help="steps timed per pause, source and repeat")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    info = machine_info()
    print_machine(info)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        t = time.perf_counter()
        store = make_store(Path(tmp) / "store", args.episodes, args.length)
        paths = store.episode_paths()
        frames = sum(store.episode_length(p) + 1 for p in paths)
        disk = sum(p.stat().st_size for p in paths)
        print(f"# store: {len(paths)} episodes, {frames} frames 64x64x3 ({frames * 12288 / 1e6:.0f} MB of frames, "
              f"{disk / 1e6:.1f} MB on disk), written in {time.perf_counter() - t:.1f} s\n")
        rows, method = bench_segments(store, paths, ["tiny", "atari100k"], args.repeats, args.draw_steps)
        print(f"# segments of one training step (denoiser + reward/end), medians of {args.repeats}; cold cache by {method}")
        headers = ["recipe", "source", "segments/step", "segments/s", "ms/step", "vs RAM"]
        print_table(headers, rows)
        train_rows = []
        for name, steps in (("tiny", args.tiny_steps), ("atari100k", args.atari_steps)):
            if steps:
                train_rows += bench_training(store, paths, name, args.train_repeats, steps)
        if train_rows:
            print(f"\n# a training step (denoiser + reward/end), medians of {args.train_repeats}, {torch.get_num_threads()} "
                  f"torch threads")
            print_table(["recipe", "segments", "batch", "s/step", "vs RAM", "ms waiting for segments", "of the step"],
                        train_rows)
        pauses = [float(x) for x in args.pauses.split(",") if x]
        paced_rows = bench_paced(store, paths, "atari100k", pauses, args.repeats, args.paced_steps) if pauses else []
        if paced_rows:
            print(f"\n# a GPU-like step: the segments, then a pause; warm page cache, {args.paced_steps} steps, "
                  f"medians of {args.repeats}")
            print_table(["recipe", "pause ms", "segments", "ms waiting for segments", "ms/step"], paced_rows)
    finish({"machine": info, "store": {"episodes": len(paths), "frames": frames, "disk_bytes": disk},
            "segments": rows, "cold_method": method, "training": train_rows, "paced": paced_rows}, args.json)


if __name__ == "__main__":
    main()
