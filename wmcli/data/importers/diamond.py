"""DIAMOND's dataset folders: one `torch.save` file per episode, as its `Dataset` writes them.

    dataset/train/info.pt                 the dataset's counters (not read: it holds numpy objects)
    dataset/train/000/00/0/0.pt           episode 0; episode 123 is 100/20/3/123.pt
    dataset/test/...                      the test collection, the same layout

An episode file holds a dict: `obs` (T, 3, H, W) uint8 (DIAMOND stores its [-1, 1] frames as
bytes, truncating), `act` (T,) int64, `rew` (T,) float32, `end` (T,) uint8, `trunc` (T,) uint8 and
`info`, which holds `final_observation` (3, H, W), float in [-1, 1], when the episode ended or was
cut: the frame the last action led to. An episode still under way when DIAMOND saved it has no
such frame, so its last step is dropped and it is marked cut. DIAMOND collects for training with
a life loss counted as an end (`done_on_life_loss`), so its episodes are lives: each lands as an
episode whose `end` is set, and `life_loss` stays unset (the files do not tell the two apart).

Every `.pt` file under SRC but `info.pt` is an episode; its key is its path relative to SRC, so a
run folder's `dataset/` (train and test) imports whole. Files are loaded with
`torch.load(weights_only=True)`: a file that would run code when unpickled is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wmcli.base.checkpoint import load_safely
from wmcli.base.errors import WmcliError
from wmcli.data.importers.source import Source, SourceEpisode, bad_file, episode_from_arrays

EXPECTED = ("a DIAMOND episode file (a dict of obs (T, 3, H, W) uint8, act, rew, end, trunc (T,) and info, "
            "as DIAMOND's Dataset saves it)")


class DiamondSource(Source):
    format = "diamond"

    def __init__(self, path: Path):
        super().__init__(path)
        self.root = self.path.parent if self.path.is_file() else self.path
        files = [self.path] if self.path.is_file() else [p for p in self.path.rglob("*.pt") if p.name != "info.pt"]
        if not files:
            raise WmcliError(f"{path} holds no DIAMOND episode files (<id>.pt under its dataset folder); pass "
                             f"DIAMOND's dataset/train (or dataset/) folder")
        # by folder, then episode number: DIAMOND's ids, not the text order of the names
        self.files = sorted(files, key=lambda p: (p.relative_to(self.root).parts[:1], _number(p)))

    def keys(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.files]

    def _load(self, key: str, mmap: bool = False) -> dict:
        path = self.root / key
        d = load_safely(path, "DIAMOND episode file", f"pass DIAMOND's dataset folder ({EXPECTED})", mmap=mmap)
        if not isinstance(d, dict):
            raise bad_file(path, f"holds a {type(d).__name__}, not a dict", EXPECTED)
        for k in ("obs", "act", "rew", "end", "trunc"):
            if not isinstance(d.get(k), torch.Tensor):
                raise bad_file(path, f"key '{k}' is missing" if k not in d else f"'{k}' is not a tensor", EXPECTED)
        return d

    def read(self, key: str) -> SourceEpisode:
        path = self.root / key
        d = self._load(key)
        obs = d["obs"]
        if obs.dtype != torch.uint8 or obs.ndim != 4 or obs.shape[1] != 3:
            raise bad_file(path, f"'obs' is {obs.dtype} of shape {tuple(obs.shape)}", EXPECTED)
        frames = obs.permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
        final = (d.get("info") or {}).get("final_observation") if isinstance(d.get("info"), dict) else None
        if isinstance(final, torch.Tensor):
            final = final.reshape(-1, *obs.shape[1:])[-1]
            if final.shape != obs.shape[1:]:
                raise bad_file(path, f"info['final_observation'] has shape {tuple(final.shape)}", EXPECTED)
            # as DIAMOND turns [-1, 1] frames into bytes: (x + 1) / 2 * 255, truncated
            last = final.float().add(1).div(2).mul(255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            frames = np.concatenate([frames, last[None]])
        arrays = {"obs": frames, **{k: d[k].numpy() for k in ("act", "rew", "end", "trunc")}}
        ep = episode_from_arrays(path, arrays, key, EXPECTED)
        ep.attrs["diamond_episode"] = _number(path)
        return ep

    def num_actions(self) -> int:
        most = -1
        for key in self.keys():
            act = self._load(key, mmap=True)["act"]  # mapped: only the actions are read
            if act.numel():
                most = max(most, int(act.max()))
        return most + 1

    def default_name(self) -> str:
        # dataset/train -> the run folder's name, where the folder layout is DIAMOND's
        parts = [p for p in self.root.resolve().parts if p not in ("train", "test", "dataset")]
        return parts[-1] if parts else "diamond"


def _number(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return -1
