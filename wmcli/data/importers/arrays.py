"""Plain arrays, one file per episode: `.npz` (numpy) or `.h5`/`.hdf5` with the keys of `ARRAYS`.

    SRC/
      ep_000.npz     obs (T+1, H, W, 3) uint8, act (T,), rew (T,), end (T,) [, trunc, life_loss]
      ep_001.h5      the same keys as HDF5 datasets
      ...

The files are read in name order; a file's key is its path relative to SRC. `.npz` files are
opened with `allow_pickle=False`, so an object array (which would need pickle) is refused, never
run. Actions are indices 0..N-1; the action set is the largest action seen + 1 unless --game,
--num-actions or the store says otherwise.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.data.importers.source import ARRAYS, Source, SourceEpisode, bad_file, episode_from_arrays

SUFFIXES = (".npz", ".h5", ".hdf5")


class ArraySource(Source):
    format = "arrays"

    def __init__(self, path: Path):
        super().__init__(path)
        if self.path.is_file():
            self.files = [self.path]
            self.root = self.path.parent
        else:
            self.files = sorted(p for p in self.path.rglob("*") if p.suffix in SUFFIXES and not p.name.startswith("."))
            self.root = self.path
        if not self.files:
            raise WmcliError(f"{path} holds no .npz, .h5 or .hdf5 episode files; each file is one episode with {ARRAYS}")

    def keys(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.files]

    def read(self, key: str) -> SourceEpisode:
        path = self.root / key
        return episode_from_arrays(path, _load(path), key)

    def num_actions(self) -> int:
        most = -1
        for key in self.keys():
            path = self.root / key
            arrays = _load(path, only="act")
            if "act" not in arrays:
                raise bad_file(path, "key 'act' is missing", ARRAYS)
            act = np.asarray(arrays["act"])
            if act.size:
                most = max(most, int(act.max()))
        return most + 1


def _load(path: Path, only: str | None = None) -> dict:
    """A file's arrays by name (`only`: just that one, for a cheap scan), or one clear error."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                names = [only] if only is not None and only in f.files else ([] if only else f.files)
                return {k: f[k] for k in names}
        with h5py.File(path, "r", locking=False) as f:
            names = [only] if only is not None and only in f else ([] if only else list(f.keys()))
            return {k: f[k][()] for k in names if isinstance(f[k], h5py.Dataset)}
    except ValueError as e:  # numpy: an object array needs pickle
        raise bad_file(path, f"unreadable array ({str(e).splitlines()[0][:120]})", ARRAYS) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise bad_file(path, f"not a readable {path.suffix} file ({str(e).splitlines()[0][:120]})", ARRAYS) from None
