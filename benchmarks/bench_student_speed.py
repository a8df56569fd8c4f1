"""Imagined frames per second of a distilled student (1 network evaluation a frame) against its
teacher (DIAMOND's 3 Euler steps), at DIAMOND's size.

The atari100k denoiser (4.4M parameters, 64x64 frames, 4 context frames; random weights: the
speed does not depend on them), channels_last, no grad, sampling next frames with
`sample_next_obs` at batch 1 (playing) and 32 (training an agent), in fp32 and, on a CPU with
bf16 units (or a GPU), bf16 autocast. The student's sampler is the one `wmcli distill` records
(`student_sampler`). Variants are interleaved within each repeat; medians are reported.

    python benchmarks/bench_student_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import finish, machine_info, median, print_machine, print_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="atari100k")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per variant per repeat")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from wmcli.base.config import DistillConfig
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import cpu_bf16_units
    from wmcli.models.denoiser import Denoiser
    from wmcli.models.sampler import sample_next_obs
    from wmcli.world.batches import student_sampler

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    info = machine_info()
    print_machine(info)
    recipe = load_recipe(args.recipe)
    torch.manual_seed(0)
    den = Denoiser(recipe.denoiser, 18).to(device, memory_format=torch.channels_last).eval()
    teacher_cfg = recipe.sampler
    samplers = {f"teacher ({teacher_cfg.num_steps} steps)": teacher_cfg,
                "student (1 step)": student_sampler(teacher_cfg, DistillConfig(student_steps=1))}
    bf16 = device.type == "cuda" or bool(cpu_bf16_units())
    precisions = ["fp32", *(["bf16"] if bf16 else [])]
    n, size = recipe.denoiser.num_context, recipe.env.frame_size

    def autocast(p: str):
        return torch.autocast(device.type, dtype=torch.bfloat16) if p == "bf16" else contextlib.nullcontext()

    times: dict[tuple, list[float]] = {}
    inputs = {}
    for B in map(int, args.batches.split(",")):
        inputs[B] = (torch.rand(B, n, 3, size, size, device=device) * 2 - 1, torch.randint(0, 18, (B, n), device=device))
    with torch.no_grad():
        for rep in range(args.repeats + 1):  # the first round warms up and is not counted
            for B, (obs, act) in inputs.items():
                for p in precisions:
                    for name, cfg in samplers.items():
                        frames, t0 = 0, time.perf_counter()
                        while time.perf_counter() - t0 < (args.seconds if rep else 0.5):
                            with autocast(p):
                                sample_next_obs(den, obs, act, cfg)
                            if device.type == "cuda":
                                torch.cuda.synchronize()
                            frames += B
                        if rep:
                            times.setdefault((B, p, name), []).append(frames / (time.perf_counter() - t0))
    rows = []
    for (B, p, name), v in times.items():
        base = median(times[(B, p, next(iter(samplers)))])
        rows.append([f"{B}", p, name, f"{median(v):.1f}", f"{median(v) / base:.2f}x"])
    print(f"\n# imagined frames/s, {args.recipe} denoiser, {torch.get_num_threads()} threads on {device}, medians of "
          f"{args.repeats}")
    print_table(["batch", "precision", "sampler", "frames/s", "vs teacher"], rows)
    finish({"machine": info, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
