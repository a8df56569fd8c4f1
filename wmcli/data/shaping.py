"""Shaping stores: picking episodes by index, merging stores into a new one, recording a held-out split.

`pick_episodes` reads `--episodes 0,3,5-8,-1` against a store's order (oldest first, negative
from the newest). `merge_stores` builds a new store from several of one game and protocol in a
hidden sibling folder and renames it into place at the end, so a kill leaves no half store; the
episode files are hard-linked (they are never changed in place: only replaced by a rename or
removed) or copied, names and attributes kept, the sources untouched. `record_split` draws the
held-out episodes once, with a seed, and writes them to STORE/held-out.json; from then on
`Store.split` (what train-wm, distill and eval use) returns exactly that list. docs/data.md.
"""

from __future__ import annotations

import errno
import filecmp
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from wmcli import __version__
from wmcli.base.atomic import atomic_dir, fsync_dir, fsync_file, write_text_atomic
from wmcli.base.errors import WmcliError
from wmcli.data.store import (
    EPISODES_DIR,
    FORMAT,
    HELD_OUT_FORMAT,
    HELD_OUT_NAME,
    META_NAME,
    Store,
    env_differences,
)

# ---- picking episodes by index --------------------------------------------------------------

_ITEM = re.compile(r"^(-?\d+)(?:-(-?\d+))?$")


def pick_episodes(spec: str, count: int, what: str = "--episodes") -> list[int]:
    """Indices (0 = oldest, -1 = newest) and ranges (`5-8`, both ends included; `-3--1`: the three
    newest) separated by commas, as indices 0..count-1 in the order given, each once."""
    picked: list[int] = []
    for item in spec.replace(" ", "").split(","):
        m = _ITEM.match(item)
        if not m:
            raise WmcliError(f"{what} {spec!r}: cannot read {item!r}; give indices and ranges such as 0,3,5-8 "
                             f"(0 is the oldest episode, -1 the newest)")
        first = _index(int(m[1]), count, what)
        last = first if m[2] is None else _index(int(m[2]), count, what)
        if last < first:
            raise WmcliError(f"{what} {spec!r}: the range {item} runs backwards (episodes {first} to {last}); "
                             f"write it lowest first")
        picked += [i for i in range(first, last + 1) if i not in picked]
    return picked


def _index(i: int, count: int, what: str) -> int:
    if not -count <= i < count:
        span = f"0..{count - 1}, or -{count}..-1 from the newest" if count else "none: it is empty"
        raise WmcliError(f"{what}: there is no episode {i}; the store has {count} (indices {span})")
    return i % count


# ---- merging --------------------------------------------------------------------------------


def merge_stores(sources: list[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False,
                 copy: bool = False) -> dict:
    """Build the store `out` from the finished episodes of `sources` (one game, protocol, frame shape
    and action set), in one step: a kill leaves no `out` (at most a hidden `.tmp-merge-*` folder
    beside it). Episode files keep their names (so their order by landing time) and attributes;
    they are hard-links of the sources' (copies with `copy`, or across file systems). Episodes under
    way (partial/) are not merged. The same file in two sources is taken once. Held-out records of
    the sources carry over: their held-out episodes stay held out in `out`, and the episodes of a
    source without one train (as episodes landed after a split do)."""
    if len(sources) < 1:
        raise WmcliError("name the stores to merge: wmcli store merge A B ... -o C")
    out = Path(out)
    stores = [Store.open(s) for s in sources]
    for i, st in enumerate(stores):
        if _same_folder(st.path, out):
            raise WmcliError(f"-o {out} is one of the stores to merge; merge into a new store (the sources are never "
                             f"changed)")
        for other in stores[:i]:
            if _same_folder(other.path, st.path):
                raise WmcliError(f"{st.path} is given twice (as {other.path}); name each store to merge once")
            diff = env_differences(other.env, st.env)
            if diff:
                shown = "; ".join(f"{k} {_short(other.env.get(k))} vs {_short(st.env.get(k))}" for k in diff)
                raise WmcliError(f"cannot merge {other.path} and {st.path}: their episodes differ in {', '.join(diff)} "
                                 f"({shown}); merge only stores of one game, protocol, frame shape and action set")

    # Every finished episode, by file name: the same name twice must be the same episode.
    chosen: dict[str, Path] = {}
    duplicates, unfinished = 0, 0
    held: set[str] = set()
    recorded_in = []
    for st in stores:
        for path in st.episode_paths():
            if path.name in chosen:
                if not _same_content(chosen[path.name], path):
                    raise WmcliError(f"{chosen[path.name]} and {path} share a name but not their contents; move one "
                                     f"out of its store (or rename it) before merging")
                duplicates += 1
                continue
            chosen[path.name] = path
        unfinished += len(st.partial_paths())
        names = st.held_out()
        if names is not None:
            held |= set(names)
            recorded_in.append(str(st.path))
    held &= set(chosen)

    if out.exists() or out.is_symlink():
        _check_replaceable(out, set(chosen), overwrite)
    if not out.parent.is_dir():
        raise WmcliError(f"cannot write {out}: the folder {out.parent} does not exist; create it "
                         f"(mkdir -p {out.parent}) or choose another place")

    t0 = time.perf_counter()
    linked, copied, size = 0, 0, 0
    try:
        with atomic_dir(out, "merge") as tmp:  # --overwrite: the old store steps aside, then goes
            (tmp / EPISODES_DIR).mkdir()
            meta = {"format": FORMAT, "created": time.time(), "wmcli_version": __version__, "env": stores[0].env,
                    "merged_from": [str(st.path) for st in stores]}
            write_text_atomic(tmp / META_NAME, json.dumps(meta, indent=2))
            for name, src in sorted(chosen.items()):
                dst = tmp / EPISODES_DIR / name
                if not copy and _link(src, dst):
                    linked += 1
                else:
                    shutil.copyfile(src, dst)
                    fsync_file(dst)
                    copied += 1
                size += dst.stat().st_size
            if recorded_in:
                record = {"format": HELD_OUT_FORMAT, "created": time.time(), "fraction": None, "seed": None,
                          "merged_from": recorded_in, "episodes_at_split": len(chosen), "held_out": sorted(held)}
                write_text_atomic(tmp / HELD_OUT_NAME, json.dumps(record, indent=2))
            fsync_dir(tmp / EPISODES_DIR)
    except OSError as e:
        raise WmcliError(f"cannot write {out} ({e.strerror or type(e).__name__}); choose a writable place "
                         f"(or free some space); nothing was written") from None
    return {"output": str(out), "sources": [str(st.path) for st in stores], "game": stores[0].env["name"],
            "episodes": len(chosen), "per_source": [len(st.episode_paths()) for st in stores],
            "duplicates": duplicates, "unfinished_not_merged": unfinished, "linked": linked, "copied": copied,
            "bytes": size, "held_out": len(held) if recorded_in else None, "held_out_from": recorded_in,
            "seconds": time.perf_counter() - t0}


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _short(value) -> str:
    return json.dumps(value) if not isinstance(value, dict) else "{" + ", ".join(
        f"{k}: {json.dumps(v)}" for k, v in value.items()) + "}"


def _same_content(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _link(src: Path, dst: Path) -> bool:
    """Hard-link src as dst; False where links cannot be made (another file system, no support)."""
    try:
        os.link(src, dst)
        return True
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            return False
        raise


def _check_replaceable(out: Path, merged: set[str], overwrite: bool) -> None:
    """Refuse to replace `out` unless asked, and even then unless it is a store (or an empty folder)
    all of whose episodes are among those merged: replacing it must lose nothing."""
    if out.is_dir() and not any(out.iterdir()):
        return
    if not overwrite:
        raise WmcliError(f"{out} already exists; pass --overwrite to replace it, or choose another -o")
    if out.is_symlink() or not Store.exists(out):
        raise WmcliError(f"{out} exists and is not a wmcli store; not replacing it: choose another -o")
    st = Store.open(out)
    lost = [p.name for p in st.episode_paths() if p.name not in merged] + [p.name for p in st.partial_paths()]
    if lost:
        raise WmcliError(f"{out} holds {len(lost)} episode(s) found in none of the stores merged (e.g. {lost[0]}); "
                         f"replacing it would lose them: add {out} to the stores to merge, or choose another -o")


# ---- the recorded held-out split ------------------------------------------------------------


def record_split(store: Store, fraction: float, seed: int = 0, overwrite: bool = False) -> dict:
    """Draw round(fraction x episodes) finished episodes (at least one when the store has 2 or more
    and fraction > 0; never all) uniformly with `seed`, and record them in STORE/held-out.json.
    Whole episodes only; the same store and seed draw the same list."""
    if not 0.0 <= fraction < 1.0:
        raise WmcliError(f"--held-out {fraction}: give the fraction of episodes to hold out, in [0, 1) (e.g. 0.1)")
    if not overwrite:
        before = store.held_out_record()  # an unreadable one is an error that names --overwrite and --clear
        if before is not None:
            raise WmcliError(f"{store.path} already records {len(before['held_out'])} held-out episodes "
                             f"({_drawn(before)}); pass --overwrite to draw again (a model trained on this split "
                             f"may then be validated on its training episodes), or --clear to drop it")
    paths = store.episode_paths()
    n = len(paths)
    k = min(max(round(fraction * n), 1 if fraction > 0 and n >= 2 else 0), max(n - 1, 0))
    rng = np.random.default_rng(seed)
    held = sorted(paths[i].name for i in rng.choice(n, size=k, replace=False)) if k else []
    record = {"format": HELD_OUT_FORMAT, "created": time.time(), "fraction": fraction, "seed": seed,
              "episodes_at_split": n, "held_out": held}
    write_text_atomic(store.path / HELD_OUT_NAME, json.dumps(record, indent=2))
    return split_summary(store)


def clear_split(store: Store) -> bool:
    """Remove the recorded split (training goes back to the hash split); whether there was one."""
    path = store.path / HELD_OUT_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise WmcliError(f"cannot remove {path} ({e.strerror}); remove it by hand") from None
    fsync_dir(store.path)
    return True


def split_summary(store: Store) -> dict:
    """The recorded split as it applies now: held out, training, landed since, gone since."""
    record = store.held_out_record()
    if record is None:
        return {"store": str(store.path), "recorded": False}
    names = {p.name for p in store.episode_paths()}
    held = [n for n in record["held_out"] if n in names]
    return {"store": str(store.path), "recorded": True, "file": str(store.path / HELD_OUT_NAME),
            "fraction": record.get("fraction"), "seed": record.get("seed"), "created": record.get("created"),
            "merged_from": record.get("merged_from"), "episodes_at_split": record.get("episodes_at_split"),
            "held_out": len(held), "training": len(names) - len(held),
            "missing": len(record["held_out"]) - len(held), "held_out_episodes": held}


def _drawn(record: dict) -> str:
    if record.get("merged_from"):
        return "carried over by a merge"
    return f"fraction {record.get('fraction')}, seed {record.get('seed')}"
