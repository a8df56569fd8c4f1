"""Import speed: frames per second of `wmcli store import` for every format, into a new store.

A sample of each format is written first (outside the timing): DIAMOND's episode files
(torch.save of obs (T, 3, 64, 64) uint8 ...), the CS:GO dataset's HDF5 layout at its 150 x 280
(frames resized to 64 x 64 on import), a Minari dataset written by minari itself (its default
JPEG-encoded images), .npz and .h5 array files, and mp4 videos with an actions.csv. Frames are
smooth moving ramps with noise (compressible like game frames, not like pure noise). Each format
is imported --repeats times into a fresh store, interleaved round by round; medians, min..max.
The import writes every episode with gzip level 1 and an fsync, as collection does; the source
side decodes (torch.load, h5py, numpy, JPEG, H.264).

    .venv/bin/python benchmarks/bench_import.py                # ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_import.py --episodes 20 --steps 500 --json import.json

A script to run by hand, never a timed test. Needs the minari extra for its row (else skipped).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, machine_info, print_machine, print_table  # noqa: E402

from wmcli.data.importers import import_episodes  # noqa: E402


def frames(T: int, H: int, W: int, rng) -> np.ndarray:
    ramp = np.linspace(0, 150, W)[None, :, None] + np.linspace(0, 60, H)[:, None, None]
    out = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        noise = rng.integers(0, 12, (H, W, 3))
        out[t] = np.clip(ramp + 2 * (t % 40) + noise, 0, 255)
    return out


def write_samples(root: Path, episodes: int, steps: int) -> dict[str, tuple[Path, dict]]:
    rng = np.random.default_rng(0)
    samples = {}
    eps = [(frames(steps + 1, 64, 64, rng), rng.integers(0, 4, steps)) for _ in range(episodes)]

    d = root / "diamond" / "train"
    for i, (obs, act) in enumerate(eps):
        p = d / f"{i // 100 % 10 * 100:03d}" / f"{i // 10 % 10 * 10:02d}" / f"{i % 10}" / f"{i}.pt"
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"obs": torch.from_numpy(obs[:-1]).permute(0, 3, 1, 2).contiguous(), "act": torch.from_numpy(act),
                    "rew": torch.zeros(steps), "end": torch.from_numpy(np.eye(1, steps, steps - 1, dtype=np.uint8)[0]),
                    "trunc": torch.zeros(steps, dtype=torch.uint8),
                    "info": {"final_observation": torch.from_numpy(obs[-1]).permute(2, 0, 1).float() / 127.5 - 1}}, p)
    samples["diamond"] = (d, {})

    (root / "npz").mkdir()
    (root / "h5").mkdir()
    for i, (obs, act) in enumerate(eps):
        arrays = {"obs": obs, "act": act, "rew": np.zeros(steps, np.float32), "end": np.eye(1, steps, steps - 1, dtype=bool)[0]}
        np.savez(root / "npz" / f"ep{i:04d}.npz", **arrays)
        with h5py.File(root / "h5" / f"ep{i:04d}.h5", "w") as f:
            for k, v in arrays.items():
                f[k] = v
    samples["arrays (.npz)"] = (root / "npz", {})
    samples["arrays (.h5)"] = (root / "h5", {})

    (root / "videos").mkdir()
    rows = [["video", "step", "act"]]
    for i, (obs, act) in enumerate(eps):
        name = f"take{i:04d}.mp4"
        iio.imwrite(root / "videos" / name, obs, fps=15)
        n = len(iio.imread(root / "videos" / name, index=None))
        rows += [[name, s, int(act[s % steps])] for s in range(n - 1)]
    with open(root / "videos" / "actions.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    samples["videos (mp4)"] = (root / "videos", {})

    (root / "csgo").mkdir()
    cs_files = max(1, episodes * steps // 1000)
    for n in range(cs_files):
        obs = frames(1000, 150, 280, rng)
        with h5py.File(root / "csgo" / f"hdf5_dm_july2021_{n + 1}.hdf5", "w") as f:
            for i in range(1000):
                y = np.zeros(51, np.float32)
                y[rng.integers(0, 4)] = 1
                y[13 + 11] = 1
                y[36 + 7] = 1
                f[f"frame_{i}_x"] = obs[i][..., ::-1]
                f[f"frame_{i}_y"] = y
                f[f"frame_{i}_helperarr"] = np.zeros(2, np.float32)
    samples["csgo (150x280 -> 64)"] = (root / "csgo", {"frame_size": 64})

    try:
        import gymnasium as gym
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer

        os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
        buffers = [EpisodeBuffer(observations=obs, actions=act, rewards=np.zeros(steps), terminations=np.eye(1, steps, steps - 1,
                                 dtype=bool)[0], truncations=np.zeros(steps, bool)) for obs, act in eps]
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers("bench/ramps/random-v0", buffers, observation_space=gym.spaces.Box(
                0, 255, (64, 64, 3), np.uint8), action_space=gym.spaces.Discrete(4), algorithm_name="random")
        samples["minari (JPEG)"] = (root / "minari" / "bench" / "ramps" / "random-v0", {})
    except ImportError:
        print("minari is not installed: its row is skipped (pip install -e .[minari])", file=sys.stderr)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    info = machine_info()
    print_machine(info)
    root = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        samples = write_samples(root, args.episodes, args.steps)
        times: dict[str, list[float]] = {k: [] for k in samples}
        frames_of: dict[str, int] = {}
        for r in range(args.repeats):
            names = list(samples)
            names = names[r % len(names):] + names[: r % len(names)]  # rotate the order every round
            for name in names:
                src, kw = samples[name]
                store = root / f"store-{r}-{len(times[name])}-{name.split()[0]}"
                t0 = time.perf_counter()
                res = import_episodes(src, store, **kw)
                times[name].append(time.perf_counter() - t0)
                frames_of[name] = res["frames_imported"]
                shutil.rmtree(store)
        rows, out = [], {"machine": info, "args": vars(args), "formats": {}}
        for name, ts in times.items():
            rates = [frames_of[name] / t for t in ts]
            out["formats"][name] = {"frames": frames_of[name], "seconds": ts, "frames_per_s": rates}
            rows.append([name, f"{frames_of[name]:,}", f"{statistics.median(rates):,.0f}",
                         f"{min(rates):,.0f}..{max(rates):,.0f}"])
        print_table(["format", "frames", "frames/s (median)", "min..max"], rows)
        finish(out, args.json)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
