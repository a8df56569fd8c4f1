"""Play speed: frames per second of `wmcli play` at DIAMOND's size, one game (batch 1).

A world model of the atari100k recipe (DIAMOND's networks: the 4.4M-parameter denoiser and the
5.9M reward/end model) with random weights is saved as a normal checkpoint, loaded back with
`open_session` as `wmcli play` loads it, and played: each frame is one `PlaySession.step` (the
denoiser's network evaluations, the reward/end model's step, the frame to uint8), as the headless
player runs it without drawing. Variants: sampler steps 1 and 3 x precision fp32 and bf16
autocast (bf16 only where `cpu_bf16_units` finds bf16 units) x torch threads (--threads, default
1 and every core), interleaved over --repeats rounds of --frames frames each, the order rotating
every round; medians and min..max. Then the window: the same loop through `PlayWindow.tick`
(the frame upscaled and drawn, the text lines rendered) on SDL's dummy video driver, with 1
step, in the fastest precision and thread count found, against the loop without drawing.

A dreamed end does not restart here (restart_on_end=False): restarts reset the real game, which
is not what is measured (with random weights the reward/end model samples ends often).

    .venv/bin/python benchmarks/bench_play.py                      # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_play.py --profile            # + where one 1-step frame's time goes
    .venv/bin/python benchmarks/bench_play.py --ablation           # + each speed-up of the library left out
    .venv/bin/python benchmarks/bench_play.py --wait-quiet 60 --json play.json

A script to run by hand, never a timed test. Needs pygame-ce for the window rows (else skipped).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, finish, machine_info, print_machine, print_table, wait_for_quiet  # noqa: E402

from wmcli.base.checkpoint import save_checkpoint  # noqa: E402
from wmcli.base.config import EnvConfig  # noqa: E402
from wmcli.base.recipe import load_recipe  # noqa: E402
from wmcli.base.runtime import cpu_bf16_units, make_runtime  # noqa: E402
from wmcli.data.env import make_spec  # noqa: E402
from wmcli.outputs.play import PlayConfig, PlaySession, open_session  # noqa: E402
from wmcli.outputs.play_window import PlayWindow  # noqa: E402
from wmcli.world.world_model import build_networks  # noqa: E402

HELD = ["RIGHT", "FIRE"]  # the keys held while measuring (Breakout: the nearest action, FIRE or RIGHT)


def save_diamond_size_wm(path: Path, game: str = "Breakout") -> Path:
    """A world model of DIAMOND's sizes (the atari100k recipe), random weights, in the normal format."""
    recipe = load_recipe("atari100k", [f"env.game={game}"])
    spec = make_spec(EnvConfig(game=game))
    torch.manual_seed(0)
    den, rew_end = build_networks(recipe, spec.num_actions)
    save_checkpoint(path, {"kind": "world_model", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                           "models": {"denoiser": den.state_dict(), "rew_end": rew_end.state_dict()}, "resume": {}})
    return path


def make_session(wm_path: Path, steps: int, precision: str) -> PlaySession:
    session = open_session(wm_path, PlayConfig(denoising_steps=steps, device="cpu", precision=precision), seed=0)
    session.restart_on_end = False
    return session


RETAKES = 5  # with --wait-quiet: a measurement during which others kept > 0.2 cores busy is taken again


def time_frames(fn, frames: int, wait_quiet: float = 0.0) -> tuple[float, float]:
    """Frames per second of `frames` calls of fn, and the cores other processes kept busy meanwhile.
    With wait_quiet: first wait (up to that many seconds) for a quiet second, and take the
    measurement again (up to RETAKES times) when other processes kept > 0.2 cores busy during it."""
    for _ in range(RETAKES + 1 if wait_quiet else 1):
        if wait_quiet:
            wait_for_quiet(0.3, wait_quiet)
        with CpuMeter() as m:
            for _ in range(frames):
                fn()
        if m.others <= 0.2:
            break
    return frames / m.wall, m.others


def profile(session: PlaySession, frames: int = 10) -> None:
    """torch.profiler's table of one frame's operators (self time), averaged over `frames` frames."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(3):
        session.step_keys(HELD)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(frames):
            session.step_keys(HELD)
    print(f"# profile: {frames} frames, {session.denoising_steps} step(s), {torch.get_num_threads()} threads")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


ABLATIONS = ("all three", "without the weight cast", "without channels_last", "with oneDNN's LSTM", "none of them")


def ablate(session: PlaySession, what: str) -> PlaySession:
    """Undo the library's batch-1 speed-ups in a session: the weights cast once for autocast
    (Runtime.cast_for_inference), channels_last (PlaySession), the LSTM cell for one step
    (RewEndModel._lstm_step). Results are the same either way; only the time differs."""
    nets = (session.wm.denoiser, session.wm.rew_end)
    if what in ("without the weight cast", "none of them"):
        for net in nets:
            net.float()  # the bf16-rounded weights back in fp32: autocast casts them on every call again
    if what in ("without channels_last", "none of them"):
        for net in nets:
            net.to(memory_format=torch.contiguous_format)
    if what in ("with oneDNN's LSTM", "none of them"):
        rew_end = session.wm.rew_end
        rew_end._lstm_step = lambda x, hidden: rew_end.lstm(x, hidden)
    return session


def measure_ablation(wm_path: Path, precisions: list[str], threads: int, args) -> list[dict]:
    """1 step, `threads` threads: each speed-up left out in turn, interleaved."""
    torch.set_num_threads(threads)
    variants = [(p, a) for p in precisions for a in ABLATIONS]
    sessions = {v: ablate(make_session(wm_path, 1, v[0]), v[1]) for v in variants}
    for s in sessions.values():
        for _ in range(2):
            s.step_keys(HELD)
    res = {v: [] for v in variants}
    for r in range(args.repeats):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            res[v].append(time_frames(lambda: sessions[v].step_keys(HELD), args.frames, args.wait_quiet))
    rows = []
    for (p, a), xs in res.items():
        fps = [x[0] for x in xs]
        rows.append({"precision": p, "speed-ups": a, "median": statistics.median(fps), "frames_per_s": fps,
                     "others_cores": statistics.median(x[1] for x in xs)})
    print(f"\n# play, the library's batch-1 speed-ups left out: 1 step, {threads} thread{'s' * (threads != 1)}")
    print_table(["precision", "speed-ups", "frames/s", "min..max", "ms/frame", "others' cores"],
                [[r["precision"], r["speed-ups"], f"{r['median']:.1f}",
                  f"{min(r['frames_per_s']):.1f}..{max(r['frames_per_s']):.1f}", f"{1000 / r['median']:.0f}",
                  f"{r['others_cores']:.2f}"] for r in rows])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=20, help="frames per measurement")
    ap.add_argument("--steps", default="1,3", help="sampler steps to measure (comma-separated)")
    ap.add_argument("--threads", default=None, help="torch thread counts (default: 1 and every core)")
    ap.add_argument("--precisions", default=None, help="fp32,bf16 (default: bf16 only where the CPU has bf16 units)")
    ap.add_argument("--no-window", action="store_true", help="skip the window rows")
    ap.add_argument("--profile", action="store_true", help="print where a 1-step frame's time goes (torch.profiler)")
    ap.add_argument("--ablation", action="store_true",
                    help="also measure 1 step with each of the library's batch-1 speed-ups left out")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each measurement, wait up to S seconds for other processes to keep < 0.3 cores "
                         "busy, and take it again (up to 5 times) when they kept > 0.2 busy during it")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()

    info = machine_info()
    info["torch"] = torch.__version__
    info["cpu_bf16_units"] = cpu_bf16_units()
    print_machine(info)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})
    precisions = args.precisions.split(",") if args.precisions else ["fp32"] + (["bf16"] if cpu_bf16_units() else [])
    steps = [int(s) for s in args.steps.split(",")]
    make_runtime("cpu", "fp32", False, 1)  # wmcli's CPU allocator setting, as `wmcli play` has it

    tmp = Path(tempfile.mkdtemp(prefix="bench_play_"))
    wm_path = save_diamond_size_wm(tmp / "wm.pt")
    sessions = {(s, p): make_session(wm_path, s, p) for s in steps for p in precisions}
    variants = [(s, p, t) for s in steps for p in precisions for t in threads]
    results = {v: [] for v in variants}
    for (s, p, t) in variants:  # warm-up
        torch.set_num_threads(t)
        for _ in range(2):
            sessions[(s, p)].step_keys(HELD)
    for r in range(args.repeats):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            s, p, t = v
            torch.set_num_threads(t)
            results[v].append(time_frames(lambda: sessions[(s, p)].step_keys(HELD), args.frames, args.wait_quiet))
        print(f"round {r + 1}/{args.repeats} done", file=sys.stderr)

    rows, out_rows = [], []
    for v in variants:
        s, p, t = v
        fps = [x[0] for x in results[v]]
        others = statistics.median(x[1] for x in results[v])
        med = statistics.median(fps)
        rows.append([f"{s} step{'s' * (s != 1)}, {p}, {t} thread{'s' * (t != 1)}", f"{med:.1f}",
                     f"{min(fps):.1f}..{max(fps):.1f}", f"{1000 / med:.0f}", f"{others:.2f}"])
        out_rows.append({"steps": s, "precision": p, "threads": t, "frames_per_s": fps, "median": med,
                         "others_cores": others})
    print(f"\n# play, headless loop: {args.repeats} rounds x {args.frames} frames, batch 1, atari100k (DIAMOND) sizes")
    print_table(["variant", "frames/s", "min..max", "ms/frame", "others' cores"], rows)

    window_rows = []
    if not args.no_window:
        best = max((r for r in out_rows if r["steps"] == 1), key=lambda r: r["median"])
        window_rows = measure_window(wm_path, best["precision"], best["threads"], args)
    ablation_rows = measure_ablation(wm_path, precisions, max(threads), args) if args.ablation else []
    if args.profile:
        best = max((r for r in out_rows if r["steps"] == 1), key=lambda r: r["median"])
        torch.set_num_threads(best["threads"])
        profile(sessions[(1, best["precision"])] if (1, best["precision"]) in sessions
                else make_session(wm_path, 1, best["precision"]))
    finish({"machine": info, "rows": out_rows, "window": window_rows, "ablation": ablation_rows}, args.json)


def measure_window(wm_path: Path, precision: str, threads: int, args) -> list[dict]:
    """The loop with and without the window's drawing, interleaved: 1 step, `precision`, `threads`."""
    try:
        import pygame  # noqa: F401
    except ImportError:
        print("\n(no pygame-ce: window rows skipped)")
        return []
    torch.set_num_threads(threads)
    session = make_session(wm_path, 1, precision)
    window = PlayWindow(session, scale=8, fps=0)
    window.handle_key("right", True)
    loops = {"headless (PlaySession.step)": lambda: session.step_keys(HELD),
             "window (PlayWindow.tick: step + draw)": window.tick}
    draw_only = []
    res = {k: [] for k in loops}
    for fn in loops.values():
        fn()
    for r in range(args.repeats):
        names = list(loops) if r % 2 == 0 else list(loops)[::-1]
        for name in names:
            res[name].append(time_frames(loops[name], args.frames, args.wait_quiet))
        t0 = time.perf_counter()
        for _ in range(args.frames):
            window.draw(session.frame)
        draw_only.append(1000 * (time.perf_counter() - t0) / args.frames)
    rows = []
    for name, xs in res.items():
        fps = [x[0] for x in xs]
        rows.append({"loop": name, "median": statistics.median(fps), "frames_per_s": fps,
                     "others_cores": statistics.median(x[1] for x in xs)})
    print(f"\n# play, window loop vs headless: 1 step, {precision}, {threads} thread{'s' * (threads != 1)}, "
          f"SDL dummy driver, 64x64 shown 8x (512x512) with the text lines")
    print_table(["loop", "frames/s", "min..max", "others' cores"],
                [[r["loop"], f"{r['median']:.1f}", f"{min(r['frames_per_s']):.1f}..{max(r['frames_per_s']):.1f}",
                  f"{r['others_cores']:.2f}"] for r in rows])
    print(f"drawing alone (PlayWindow.draw): {statistics.median(draw_only):.2f} ms a frame")
    return rows + [{"loop": "draw only", "ms_per_frame": statistics.median(draw_only)}]


if __name__ == "__main__":
    main()
