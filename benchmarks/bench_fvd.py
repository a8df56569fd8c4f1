"""What `wmcli fvd` costs: I3D clips per second, FLOPs per clip, and the share of the machine's
matmul peak, side by side for a few ways of running the detector.

One clip is 16 frames at 224x224 (the FVD convention). Variants, interleaved over --repeats
rounds on the same random-init I3D (weights do not change the cost):
- contiguous NCDHW (PyTorch's default) at batch 1, 4 and 8 (`wmcli fvd --batch-size`);
- channels_last_3d (NDHWC) at batch 1 and 8: what `wmcli fvd` uses on the CPU (wmcli.outputs.i3d.Detector).
Also timed: `prepare_clips`, the bilinear resize of 16 Atari frames (64x64 -> 224x224) and the
scaling to [-1, 1], per clip; and the Fréchet distance itself for 2,048 clips of 400 features.
FLOPs are counted by torch.utils.flop_counter; the peak is a 2048x2048 fp32 matmul in the same
run. Medians are reported; nothing is asserted.

    python benchmarks/bench_fvd.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import count_flops, finish, machine_info, median, peak_gflops, print_machine, print_table, spread  # noqa: E402

from wmcli.base.runtime import keep_large_allocations_on_heap  # noqa: E402
from wmcli.outputs.frechet import frechet_distance_of_features  # noqa: E402
from wmcli.outputs.fvd import prepare_clips  # noqa: E402
from wmcli.outputs.i3d import InceptionI3d  # noqa: E402

VARIANTS = [("contiguous", 1), ("contiguous", 4), ("contiguous", 8), ("channels_last_3d", 1), ("channels_last_3d", 8)]
DEFAULT = ("channels_last_3d", 8)  # wmcli fvd on the CPU


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if os.environ.get("WMCLI_MALLOC") != "default":
        keep_large_allocations_on_heap()  # as every wmcli CPU runtime does
    info = machine_info()
    info["torch"] = torch.__version__
    info["threads"] = args.threads
    print_machine(info)

    net = InceptionI3d().eval()
    gen = torch.Generator().manual_seed(0)
    clips = {b: torch.rand(b, 3, 16, 224, 224, generator=gen) * 2 - 1 for b in (1, 4, 8)}
    with torch.no_grad():
        flops_clip = count_flops(lambda: net(clips[1]))
    print(f"I3D: {sum(p.numel() for p in net.parameters()):,} parameters, {flops_clip / 1e9:.1f} GFLOP per 16x224x224 clip")

    def run(layout: str, batch: int) -> float:
        x = clips[batch]
        m = net.to(memory_format=torch.channels_last_3d) if layout == "channels_last_3d" else net.to(
            memory_format=torch.contiguous_format)
        if layout == "channels_last_3d":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.no_grad():
            t = time.perf_counter()
            m(x)
            return (time.perf_counter() - t) / batch  # seconds per clip

    with torch.no_grad():  # warm-up: first calls allocate and pick kernels
        for layout, batch in VARIANTS:
            run(layout, batch)
    per_clip = {v: [] for v in VARIANTS}
    peaks = []
    for r in range(args.repeats):
        peaks.append(peak_gflops())
        for v in VARIANTS:
            per_clip[v].append(run(*v))
        print(f"round {r + 1}/{args.repeats} done", file=sys.stderr)
    peak = median(peaks)

    frames = [np.random.default_rng(i).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8) for i in range(8)]
    prep = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        prepare_clips(frames, 224)
        prep.append((time.perf_counter() - t) / len(frames))
    feats = [np.random.default_rng(s).normal(size=(2048, 400)) for s in (1, 2)]
    t = time.perf_counter()
    frechet_distance_of_features(*feats)
    frechet_s = time.perf_counter() - t

    rows, out = [], {"machine": info, "gflop_per_clip": flops_clip / 1e9, "peak_gflops": peak, "variants": []}
    base = median(per_clip[("contiguous", 8)])
    for (layout, batch), secs in per_clip.items():
        s = median(secs)
        gflops = flops_clip / s / 1e9
        rows.append([layout, batch, f"{s:.2f}", spread(secs, ".2f"), f"{1 / s:.2f}", f"{gflops:.0f}",
                     f"{100 * gflops / peak:.0f}%", f"{base / s:.2f}x"])
        out["variants"].append({"layout": layout, "batch": batch, "s_per_clip": secs, "gflops": gflops})
    print(f"\npeak (2048x2048 fp32 matmul, median of {len(peaks)}): {peak:.1f} GFLOP/s\n")
    print_table(["layout", "batch", "s/clip", "spread", "clips/s", "GFLOP/s", "% of peak", "vs contiguous b8"], rows)
    print(f"\nprepare_clips (16 frames 64x64 -> 224x224, [-1, 1]): {1e3 * median(prep):.1f} ms per clip")
    print(f"Fréchet distance, 2,048 clips x 400 features each side: {frechet_s:.2f} s")
    s = median(per_clip[DEFAULT])
    print(f"FVD of 2 x 256 clips as wmcli fvd runs (channels_last_3d, batch 8): about {512 * s / 60:.1f} min of I3D on this machine")
    out.update(prepare_s_per_clip=prep, frechet_s=frechet_s)
    finish(out, args.json)


if __name__ == "__main__":
    main()
