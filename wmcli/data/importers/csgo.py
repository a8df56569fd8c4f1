"""The CS:GO deathmatch dataset (Pearce and Zhu 2022) that DIAMOND's CS:GO world model trains on.

    SRC/hdf5_dm_july2021_1.hdf5    one file per 1000 recorded frames (about a minute of play)
    SRC/hdf5_dm_july2021_2.hdf5    ...

A file holds, for every frame i: `frame_i_x` (H, W, 3) uint8 in BGR order (150 x 280 in the
dataset), `frame_i_y` the action as 51 numbers (11 keys w, a, s, d, space, ctrl, shift, 1, 2, 3,
r; left click; right click; a one-hot of 23 mouse-x bins; a one-hot of 15 mouse-y bins) and
`frame_i_helperarr` [kill, death] flags. Files are read in the order of their trailing number, as
DIAMOND does; each file lands as one episode, cut at its end (the game goes on between files).

wmcli's models take one discrete action per step, so each action vector becomes one of 54
(`ACTION_MEANINGS`): movement (none, W, S, A, D, W+A, W+D, S+A, S+D; opposite keys cancel) x
fire (left click) x turn (mouse x of 10 or more bin units left or right, else none). Jump,
crouch, walk, weapon keys, reload, right click and mouse y are dropped. The reward of a step is 1
when the next frame records a kill; a death (next frame) is marked as a life loss; no step ends
the game. See docs/data.md.
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import h5py
import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.data.importers.source import Source, SourceEpisode, bad_file, episode_from_arrays

N_KEYS = 11  # w, a, s, d, space, ctrl, shift, 1, 2, 3, r
MOUSE_X_BINS = (-1000, -500, -300, -200, -100, -60, -30, -20, -10, -4, -2, 0,
                2, 4, 10, 20, 30, 60, 100, 200, 300, 500, 1000)
MOUSE_Y_BINS = 15
ACTION_SIZE = N_KEYS + 2 + len(MOUSE_X_BINS) + MOUSE_Y_BINS  # 51
TURN_AT = 10
"""Mouse-x movement (in the dataset's bin units) from which a step counts as turning."""
MOVES = ("", "W", "S", "A", "D", "W+A", "W+D", "S+A", "S+D")
FIRE = ("", "FIRE")
TURNS = ("", "LEFT", "RIGHT")
ACTION_MEANINGS = tuple(" ".join(p for p in parts if p) or "NOOP" for parts in product(MOVES, FIRE, TURNS))
EXPECTED = ("a CS:GO dataset file: frame_<i>_x (H, W, 3) uint8 BGR, frame_<i>_y (51,) and frame_<i>_helperarr "
            "(2,) for i = 0..N-1")


def discrete_actions(y: np.ndarray) -> np.ndarray:
    """(T, 51) action vectors -> (T,) indices into ACTION_MEANINGS."""
    keys = y[:, :N_KEYS] > 0.5
    w, a, s, d = keys[:, 0], keys[:, 1], keys[:, 2], keys[:, 3]
    fwd = w & ~s
    back = s & ~w
    left = a & ~d
    right = d & ~a
    move = np.zeros(len(y), np.int64)
    move[fwd], move[back], move[left], move[right] = 1, 2, 3, 4
    move[fwd & left], move[fwd & right], move[back & left], move[back & right] = 5, 6, 7, 8
    fire = (y[:, N_KEYS] > 0.5).astype(np.int64)
    mouse_x = np.asarray(MOUSE_X_BINS)[y[:, N_KEYS + 2 : N_KEYS + 2 + len(MOUSE_X_BINS)].argmax(axis=1)]
    turn = np.where(mouse_x <= -TURN_AT, 1, np.where(mouse_x >= TURN_AT, 2, 0))
    return move * (len(FIRE) * len(TURNS)) + fire * len(TURNS) + turn


def _number(path: Path) -> int:
    m = re.search(r"(\d+)$", path.stem)
    return int(m.group(1)) if m else -1


class CsgoSource(Source):
    format = "csgo"
    action_meanings = ACTION_MEANINGS

    def __init__(self, path: Path):
        super().__init__(path)
        self.root = self.path.parent if self.path.is_file() else self.path
        files = [self.path] if self.path.is_file() else [*self.path.rglob("*.hdf5"), *self.path.rglob("*.h5")]
        files = [p for p in files if not p.name.startswith(".")]
        if not files:
            raise WmcliError(f"{path} holds no CS:GO dataset files (hdf5_dm_*.hdf5); pass the folder of the dataset's files")
        self.files = sorted(files, key=lambda p: (_number(p), p.name))

    def keys(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.files]

    def num_actions(self) -> int:
        return len(ACTION_MEANINGS)

    def default_name(self) -> str:
        return "csgo"

    def read(self, key: str) -> SourceEpisode:
        path = self.root / key
        try:
            with h5py.File(path, "r", locking=False) as f:
                n = sum(1 for k in f.keys() if re.fullmatch(r"frame_\d+_x", k))
                if n < 2:
                    raise bad_file(path, f"{n} frame_<i>_x datasets (a file needs 2 or more frames)", EXPECTED)
                obs, ys, helpers = None, [], []
                for i in range(n):
                    names = (f"frame_{i}_x", f"frame_{i}_y", f"frame_{i}_helperarr")
                    try:
                        frame, y_i, helper_i = (f[k] for k in names)
                    except KeyError:
                        raise bad_file(path, f"key '{next(k for k in names if k not in f)}' is missing", EXPECTED) from None
                    if obs is None:
                        if len(frame.shape) != 3 or frame.shape[-1] != 3:
                            raise bad_file(path, f"frame_0_x has shape {frame.shape}", EXPECTED)
                        obs = np.empty((n, *frame.shape), np.uint8)
                    if frame.shape != obs.shape[1:]:
                        raise bad_file(path, f"frame_{i}_x has shape {frame.shape}, frame_0_x {obs.shape[1:]}", EXPECTED)
                    obs[i] = frame[()][..., ::-1]  # BGR -> RGB
                    ys.append(y_i[()])
                    helpers.append(helper_i[()])
        except OSError as e:
            raise bad_file(path, f"not a readable HDF5 file ({str(e).splitlines()[0][:120]})", EXPECTED) from None
        y = np.asarray(ys, dtype=np.float32)
        if y.shape != (n, ACTION_SIZE):
            raise bad_file(path, f"the frame_<i>_y actions have shape {y.shape[1:]}, not ({ACTION_SIZE},)", EXPECTED)
        helper = np.asarray(helpers, dtype=np.float32).reshape(n, -1)
        if helper.shape[1] < 2:
            raise bad_file(path, f"frame_<i>_helperarr holds {helper.shape[1]} values, not [kill, death]", EXPECTED)
        act = discrete_actions(y)[:-1]  # the action at frame i leads to frame i + 1
        kill, death = helper[1:, 0] > 0.5, helper[1:, 1] > 0.5
        T = n - 1
        arrays = {"obs": obs, "act": act, "rew": kill.astype(np.float32), "end": np.zeros(T, bool),
                  "trunc": np.r_[np.zeros(T - 1, bool), True], "life_loss": death}
        return episode_from_arrays(path, arrays, key, EXPECTED)
