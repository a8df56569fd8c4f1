"""What every import format hands the importer: episodes as arrays, one at a time, by key.

A `Source` lists its episodes by a key that stays the same when the import runs again (a file's
path relative to the source, or an index), so a second run skips what the first one landed. Each
format checks its own files and says, in one line, the first key or shape that is not what the
format promises (`bad_file`); `episode_from_arrays` is the one check of the plain-array layout
(obs, act, rew, end, optional trunc and life_loss) that every format ends in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmcli.base.errors import WmcliError

ARRAYS = "obs (T+1, H, W, 3) uint8, act (T,) int, rew (T,), end (T,) [, trunc (T,), life_loss (T,)]"
"""The plain-array layout, as the error messages state it."""


@dataclass
class SourceEpisode:
    """One episode as a source gives it. obs holds T + 1 RGB frames (the first and the last)."""

    key: str  # stable within the source: what a second import run compares to skip it
    obs: np.ndarray  # (T+1, H, W, 3) uint8 RGB
    act: np.ndarray  # (T,) int64, indices into the source's action set
    rew: np.ndarray  # (T,) float32
    end: np.ndarray  # (T,) bool: the game ended after this step
    trunc: np.ndarray  # (T,) bool: the episode was cut after this step
    life_loss: np.ndarray  # (T,) bool
    attrs: dict = field(default_factory=dict)  # what the source says about it, kept in the store

    def __len__(self) -> int:
        return len(self.act)


class Source:
    """A folder (or file) of recorded episodes in one format. Subclasses set `format` and implement
    `keys`, `read` and `num_actions`; `action_meanings` when the format fixes its action set."""

    format: str = ""
    action_meanings: tuple[str, ...] | None = None

    def __init__(self, path: Path):
        self.path = Path(path)

    def keys(self) -> list[str]:
        """Every episode's key, in the source's order."""
        raise NotImplementedError

    def read(self, key: str) -> SourceEpisode:
        """One episode, checked (a `bad_file` error for anything not as the format says)."""
        raise NotImplementedError

    def num_actions(self) -> int:
        """The size of the action set: fixed by the format, or the largest action seen + 1."""
        raise NotImplementedError

    def default_name(self) -> str:
        """The game name of a store made from this source without --game or --name."""
        return self.path.stem if self.path.is_file() else self.path.name


def bad_file(path: Path | str, why: str, expected: str) -> WmcliError:
    """The one message for a source file that is not what its format says: where, what, and what
    the format expects."""
    return WmcliError(f"{path}: {why}; expected {expected}")


def episode_from_arrays(where: Path | str, arrays: Mapping, key: str, expected: str = ARRAYS) -> SourceEpisode:
    """Check the plain-array layout and build the episode. obs may hold T + 1 frames (the frame
    each action led to included) or T (the last frame is missing: the last step is dropped and
    the episode marked cut there, as nothing shows where its last action led)."""
    for k in ("obs", "act", "rew", "end"):
        if k not in arrays:
            raise bad_file(where, f"key '{k}' is missing", expected)
    obs, act = np.asarray(arrays["obs"]), np.asarray(arrays["act"])
    if act.ndim != 1:
        raise bad_file(where, f"'act' has shape {act.shape}", expected)
    if act.size and not (np.issubdtype(act.dtype, np.integer) or np.all(np.equal(np.mod(act, 1), 0))):
        raise bad_file(where, f"'act' holds non-integer values ({act.dtype})", expected)
    T = len(act)
    steps = {}
    for k in ("rew", "end", "trunc", "life_loss"):
        if k in arrays:
            v = np.asarray(arrays[k])
            if v.shape != (T,):
                raise bad_file(where, f"'{k}' has shape {v.shape}, but 'act' has {T} steps", expected)
            steps[k] = v
    if obs.ndim != 4 or obs.shape[-1] != 3 or obs.dtype != np.uint8:
        raise bad_file(where, f"'obs' is {obs.dtype} of shape {obs.shape}", expected)
    if len(obs) not in (T, T + 1) or len(obs) < 2:
        raise bad_file(where, f"'obs' has {len(obs)} frames for {T} steps (T+1 or T frames)", expected)
    if np.any(act < 0):
        raise bad_file(where, f"'act' holds a negative action ({int(act.min())})", expected)
    ep = SourceEpisode(
        key=key, obs=obs, act=act.astype(np.int64), rew=steps["rew"].astype(np.float32),
        end=steps["end"].astype(bool), trunc=steps.get("trunc", np.zeros(T, bool)).astype(bool),
        life_loss=steps.get("life_loss", np.zeros(T, bool)).astype(bool),
    )
    if len(obs) == T:  # no frame after the last action: drop that step, the episode is cut there
        ep = SourceEpisode(key, obs, ep.act[:-1], ep.rew[:-1], ep.end[:-1], ep.trunc[:-1], ep.life_loss[:-1])
        if len(ep):
            ep.trunc[-1] = True
            ep.attrs["last_step_dropped"] = True
    elif len(ep) and not ep.end[-1]:
        ep.trunc[-1] = True  # neither ended nor marked cut: it was cut
    return ep
