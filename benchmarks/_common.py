"""Shared bits of the benchmark scripts: machine description, medians, table printing.

Not a test helper: the benchmarks are plain scripts (`python benchmarks/bench_*.py`), never run
by pytest, and never assert on timings.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def machine_info() -> dict:
    """What a reader needs to put the numbers in context."""
    import numpy as np

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv]),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_gib": round(mem_gib, 1),
        "loadavg_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ale-py": _version("ale-py"),
        "h5py": _version("h5py"),
        "platform": platform.platform(),
    }


def print_machine(info: dict) -> None:
    print("# machine")
    for k, v in info.items():
        print(f"  {k:18s} {v}")
    print()


def _machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores kept busy during a block: by this process (all its threads) and by everyone else.

    `others` is the noise indicator on a shared machine: on 2 cores, a run during which other
    processes kept 0.9 cores busy could not have used both cores, whatever the code does.
    /proc/stat counts in clock ticks (10 ms), so short blocks give coarse figures.
    """

    def __enter__(self):
        self._t = time.perf_counter()
        self._own = time.process_time()
        self._all = _machine_busy_seconds()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        own = time.process_time() - self._own
        everyone = _machine_busy_seconds() - self._all
        self.wall = wall
        self.own = own / wall
        self.others = max(0.0, everyone - own) / wall
        return False


def wait_for_quiet(max_cores: float, timeout: float) -> float:
    """Wait (up to `timeout` s) for a 1 s window in which the machine kept fewer than
    `max_cores` cores busy -- other processes, since this one sleeps meanwhile. Returns the
    seconds waited. On a shared machine this lines runs up with the gaps in others' work."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        before = _machine_busy_seconds()
        time.sleep(1.0)
        if _machine_busy_seconds() - before < max_cores:
            break
    return time.perf_counter() - t0


def peak_gflops(n: int = 2048, reps: int = 10, dtype: str = "fp32") -> float:
    """The machine's matmul rate in this process (a 2048x2048 torch.mm, median of reps), in fp32
    or bf16 (the precision bf16 autocast runs matmuls and convolutions in)."""
    import torch

    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def count_flops(fn) -> int:
    """FLOPs of one call of fn, as torch.utils.flop_counter counts them (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def return_stats(returns) -> dict:
    """Mean, standard deviation, standard error and count of episode returns."""
    import numpy as np

    r = np.array(returns, dtype=float)
    return {"mean": float(r.mean()), "std": float(r.std(ddof=1)), "sem": float(r.std(ddof=1) / len(r) ** 0.5),
            "episodes": len(r)}


def median(xs) -> float:
    return float(statistics.median(xs))


def spread(xs, fmt: str = ",.0f") -> str:
    """min..max, to show how noisy the repeats were."""
    xs = list(xs)
    return f"{min(xs):{fmt}}..{max(xs):{fmt}}"


def print_table(headers: list[str], rows: list[list]) -> None:
    """A Markdown table, so the output can be pasted into docs/performance.md as is."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")


def finish(out: dict, json_path: str | None) -> dict:
    """Record the load average at the end in out["machine"], print it, and write out as JSON."""
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at end: {out['machine']['loadavg_at_end']}")
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
        print(f"wrote {json_path}")
    return out
