"""Minari datasets (the Farama Foundation's format for offline RL data), read with `minari` itself.

SRC is a local dataset: its id (`atari/breakout/expert-v0`, looked up under minari's local root,
`MINARI_DATASETS_PATH` or `~/.minari/datasets`), or the path of its folder (the one holding
`data/`, or `data/` itself). wmcli never downloads: fetch a remote dataset first with minari's own
CLI (`minari download ID`). The dataset must have image observations (a Box of uint8 shaped
(H, W, 3), (3, H, W), (H, W, 1) or (H, W): grey frames are repeated on the three channels) and a
Discrete action space; its episodes keep minari's terminations (as `end`) and truncations.
`minari` is an optional extra: `pip install -e .[minari]`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.data.importers.source import Source, SourceEpisode, bad_file, episode_from_arrays

EXPECTED = "a Minari dataset with image observations (a uint8 Box of shape (H, W, 3)) and a Discrete action space"


def _minari():
    try:
        import minari
    except ImportError:
        raise WmcliError("importing a Minari dataset needs the minari package: pip install -e .[minari] "
                         "(or pip install minari)") from None
    return minari


def data_path(src: Path | str) -> Path | None:
    """The `data/` folder of a local Minari dataset given by path or id, or None when there is none."""
    path = Path(src)
    for candidate in (path, path / "data"):
        if (candidate / "metadata.json").is_file():
            return candidate
    if not path.exists() and "/" in str(src) and not str(src).startswith((".", "/")):
        root = Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
        candidate = root / str(src) / "data"
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


class MinariSource(Source):
    format = "minari"

    def __init__(self, path: Path | str):
        self.src = str(path)
        found = data_path(path)
        if found is None:
            raise WmcliError(f"{path} is not a local Minari dataset (no metadata.json in it or its data/ folder, and no "
                             f"such dataset id under minari's local root); download it first with `minari download ID` "
                             f"or pass the dataset's folder")
        super().__init__(found)
        minari = _minari()
        try:
            self.dataset = minari.MinariDataset(found)
        except Exception as e:  # noqa: BLE001 - minari raises many kinds for a damaged dataset
            raise bad_file(found, f"minari cannot open it ({str(e).splitlines()[0][:120]})", EXPECTED) from None
        space, acts = self.dataset.observation_space, self.dataset.action_space
        shape = getattr(space, "shape", None)
        if shape is None or getattr(space, "dtype", None) != np.uint8 or not _image_shape(shape):
            raise bad_file(found, f"observations are {space}, not images", EXPECTED)
        if type(acts).__name__ != "Discrete":
            raise bad_file(found, f"actions are {acts}, not Discrete", EXPECTED)
        self.n_actions = int(acts.n)
        self.ids = [int(i) for i in (self.dataset.episode_indices if self.dataset.episode_indices is not None
                                     else range(self.dataset.total_episodes))]

    def keys(self) -> list[str]:
        return [f"episode_{i}" for i in self.ids]

    def num_actions(self) -> int:
        return self.n_actions

    def default_name(self) -> str:
        return self.dataset.spec.dataset_id if hasattr(self.dataset, "spec") else self.path.parent.name

    def read(self, key: str) -> SourceEpisode:
        index = int(key.rsplit("_", 1)[1])
        e = next(iter(self.dataset.iterate_episodes([index])))
        arrays = {"obs": _rgb(np.asarray(e.observations)), "act": np.asarray(e.actions), "rew": np.asarray(e.rewards),
                  "end": np.asarray(e.terminations), "trunc": np.asarray(e.truncations)}
        return episode_from_arrays(f"{self.path} ({key})", arrays, key, EXPECTED)


def _image_shape(shape: tuple) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and (shape[-1] in (1, 3) or shape[0] == 3))


def _rgb(obs: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) from the image layouts minari datasets use."""
    if obs.ndim == 3:
        obs = obs[..., None]
    if obs.ndim == 4 and obs.shape[1] == 3 and obs.shape[-1] != 3:
        obs = obs.transpose(0, 2, 3, 1)
    if obs.ndim == 4 and obs.shape[-1] == 1:
        obs = obs.repeat(3, axis=-1)
    return np.ascontiguousarray(obs)
