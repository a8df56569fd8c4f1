"""Curves of a run folder (or of a training's metrics file) drawn to PNG with matplotlib.

From `wmcli run`'s folder: the real-game evaluation return against env steps (mean, with
min..max shaded), the world model's losses and held-out PSNR against copy-last, and the
agent's losses and dreamed return, against their training steps. matplotlib is an optional
extra (`pip install 'wmcli[plot]'`); nothing else in wmcli needs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from wmcli.base.atomic import atomic_path, check_writable
from wmcli.base.errors import WmcliError


def read_jsonl(path: Path) -> list[dict]:
    """The JSON lines of a metrics file; a line cut short by a kill is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _series(rows: list[dict], key: str, x: str = "step") -> tuple[list, list]:
    pts = [(r[x], r[key]) for r in rows if key in r and x in r and r[key] is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def default_plot_path(path: Path) -> Path:
    """Where `wmcli plot` draws when no -o is given: DIR/curves.png, or beside the metrics file."""
    path = Path(path)
    return path / "curves.png" if path.is_dir() else path.with_suffix(".png")


def plot_run(path: Path, out: Path | None = None) -> dict:
    """Draw the curves of a run folder (or one *.metrics.jsonl file) into `out` (.png; default:
    default_plot_path)."""
    out = default_plot_path(path) if out is None else out
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise WmcliError("wmcli plot needs matplotlib: pip install 'wmcli[plot]' (or pip install matplotlib)") from None
    path = Path(path)
    if path.is_dir():
        files = {"run": path / "metrics.jsonl", "wm": path / "wm.metrics.jsonl", "agent": path / "agent.metrics.jsonl"}
    elif path.is_file():
        files = {"agent" if "losses/actor" in path.read_text()[:4000] else "wm": path}
    else:
        raise WmcliError(f"{path} not found; pass a run folder (wmcli run) or a *.metrics.jsonl file")
    check_writable(out)
    data = {k: read_jsonl(f) for k, f in files.items() if f.exists()}
    if not any(data.values()):
        raise WmcliError(f"no metrics in {path}: expected metrics.jsonl, wm.metrics.jsonl or agent.metrics.jsonl")
    panels = []
    run = data.get("run", [])
    evals = [r for r in run if "eval" in r]
    if evals:
        panels.append(("real-game return (evaluation)", "env steps", [
            ("mean", [r["env_steps"] for r in evals], [r["eval"]["return_mean"] for r in evals]),
        ], [(r["env_steps"], r["eval"]["return_min"], r["eval"]["return_max"]) for r in evals]))
    wm = data.get("wm", [])
    if wm:
        panels.append(("world model: training losses", "step", [
            (k.split("/")[-1], *_series(wm, k)) for k in ("losses/denoiser", "losses/rew_end")], None))
        if any("val/psnr_1step" in r for r in wm):
            panels.append(("world model: held-out next frame (dB)", "step", [
                ("model, 1 step", *_series(wm, "val/psnr_1step")), ("copy last frame", *_series(wm, "val/psnr_copy_last"))],
                None))
    agent = data.get("agent", [])
    if agent:
        panels.append(("agent: losses", "step", [
            (k.split("/")[-1], *_series(agent, k)) for k in ("losses/actor", "losses/value")], None))
        panels.append(("agent: dreamed return (15 steps) and entropy", "step", [
            ("dream return", *_series(agent, "dream/return")), ("entropy", *_series(agent, "charts/entropy"))], None))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (title, xlabel, lines, band) in zip(axes[:, 0], panels):
        for label, xs, ys in lines:
            ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
        if band:
            ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band], alpha=0.2, label="min..max")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return {"plot": str(out), "panels": [p[0] for p in panels], "sources": {k: str(f) for k, f in files.items() if f.exists()}}
