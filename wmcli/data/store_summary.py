"""What a store holds, summed up without reading a frame: counts, returns, actions, sources.

`summarize` is what `wmcli store info`, `collect` and `store import` report (`--json` as is);
`summary_rows` lays it out as a table; `episode_source` names where an episode came from (an
import source, or wmcli's own collection), so the counts can be given per source.
"""

from __future__ import annotations

import numpy as np

from wmcli.base.progress import count
from wmcli.data.store import Store


def summarize(store: Store, skip_bad: bool = False) -> dict:
    """Counts, returns and action histogram of the finished episodes; reads no frames. Return and
    length statistics are of the complete episodes (ended by the game), as a cut episode's are
    partial. Episodes still under way (partial/) are counted apart: `unfinished_episodes/_steps`."""
    n_act = store.env["num_actions"]
    hist = np.zeros(n_act, dtype=np.int64)
    lengths, complete_returns, complete_lengths = [], [], []
    cut, life_losses, nonzero_rew = 0, 0, 0
    sources: dict[str, dict] = {}
    for _, ep in store.iter_episodes(frames=False, skip_bad=skip_bad):
        lengths.append(len(ep))
        per = sources.setdefault(episode_source(ep.attrs), {"episodes": 0, "steps": 0})
        per["episodes"] += 1
        per["steps"] += len(ep)
        hist += np.bincount(ep.act, minlength=n_act)[:n_act]
        life_losses += int(ep.life_loss.sum())
        nonzero_rew += int(np.count_nonzero(ep.rew))
        if ep.complete:  # returns and lengths of whole games only: a cut episode's are partial
            complete_returns.append(ep.ret)
            complete_lengths.append(len(ep))
        else:
            cut += 1
    partial = store.partial_paths()
    unfinished_steps = sum(store.episode_length(p) for p in partial)
    disk = sum(p.stat().st_size for p in store.episode_paths() + partial)
    r = np.array(complete_returns) if complete_returns else None
    return {
        "store": str(store.path),
        "game": store.env["name"],
        "episodes": len(lengths),
        "complete_episodes": len(complete_returns),
        "cut_episodes": cut,
        "steps": int(sum(lengths)),
        "frames": int(sum(lengths) + len(lengths)),
        "unfinished_episodes": len(partial),
        "unfinished_steps": int(unfinished_steps),
        "return_mean": float(r.mean()) if r is not None else None,
        "return_min": float(r.min()) if r is not None else None,
        "return_max": float(r.max()) if r is not None else None,
        "length_mean": float(np.mean(complete_lengths)) if complete_lengths else None,
        "nonzero_rewards": nonzero_rew,
        "life_losses": life_losses,
        "action_histogram": dict(zip(store.env["action_meanings"], hist.tolist())),
        "sources": sources,
        "frame_shape": store.env["frame_shape"],
        "protocol": store.env["protocol"],
        "disk_bytes": disk,
    }


def summary_rows(s: dict) -> list[tuple[str, str]]:
    """`summarize`'s result as (label, value) rows for a table."""

    def fmt(x) -> str:
        return "-" if x is None else (f"{x:.2f}" if isinstance(x, float) else str(x))

    return [
        ("game", s["game"]),
        ("episodes", f"{s['episodes']} ({s['complete_episodes']} complete, {s['cut_episodes']} cut)"),
        ("steps / frames", f"{s['steps']} / {s['frames']}"),
        *([("unfinished (under way)", f"{count(s['unfinished_episodes'], 'episode')}, {s['unfinished_steps']} steps "
                                         f"(not in the counts above)")]
          if s.get("unfinished_episodes") else []),
        ("return (complete)", f"mean {fmt(s['return_mean'])}  min {fmt(s['return_min'])}  max {fmt(s['return_max'])}"),
        ("episode length (complete)", f"mean {fmt(s['length_mean'])} steps"),
        ("nonzero rewards / life losses", f"{s['nonzero_rewards']} / {s['life_losses']}"),
        ("actions", "  ".join(f"{k}:{v}" for k, v in s["action_histogram"].items() if v or len(s["action_histogram"]) <= 18)),
        *[(f"from {label}", f"{count(v['episodes'], 'episode')}, {count(v['steps'], 'step')}")
          for label, v in s.get("sources", {}).items()],
        ("frames", "x".join(map(str, s["frame_shape"])) + " uint8"),
        ("protocol", ", ".join(f"{k}={v}" for k, v in shown_protocol(s["game"], s["protocol"]).items())),
        ("on disk", f"{s['disk_bytes'] / 1e6:.1f} MB"),
    ]


def episode_source(attrs: dict) -> str:
    """Where an episode came from, as `store info` counts them: the import source it records
    (`diamond:/path/to/dataset`), or `collect (<policy>)` for episodes played by wmcli."""
    if "source" in attrs:
        return str(attrs["source"])
    return f"collect ({attrs.get('policy', 'unknown policy')})"


MINATAR_PROTOCOL = ("frame_size", "sticky_prob", "max_episode_frames", "frame_skip")
"""The protocol fields that mean something for a MinAtar game (the others describe ALE's screen)."""


def shown_protocol(game: str, protocol: dict) -> dict:
    """The protocol as shown to a user: for MinAtar, its own fields and how frames are drawn."""
    if not game.startswith("minatar:"):
        return protocol
    shown = {k: protocol[k] for k in MINATAR_PROTOCOL if k in protocol}
    shown["frames"] = "10x10 cells, one colour per object, nearest upscaling"
    return shown
