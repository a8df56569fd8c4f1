"""Episodes held in RAM for training, and random segments sampled from them.

All frames of all episodes sit in one growing uint8 array, so a batch of segments is one
numpy gather (h5py random reads cost ~0.1 ms each; fancy indexing into HDF5 is far slower).
A segment is `seq_len` consecutive frames of one episode with the matching actions, rewards
and flags; it may start up to `pad_before` frames before the episode and end up to `pad_after`
frames after it, and `mask` marks the real frames (padding is zeros).
`refresh()` picks up episodes that landed in the store since the last look. `contexts()` is the
small sampler of real starting frames that the imagination env draws from.

Sampling is two steps: `draw_segments` draws which episode and start (every random number of a
batch), then the buffer gathers the frames. The disk-backed buffer (wmcli.data.disk_buffer)
shares the first step and the step arrays, and reads only the frames from the HDF5 files, so
the same generator gives the same batch from either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from wmcli.data.store import STEP_DTYPES, Episode, Store


@dataclass
class Segments:
    """A batch of B segments of L frames. Index i pairs frame i with the action taken there and
    what followed it; the last frame of an episode has act 0 (no action was taken)."""

    obs: np.ndarray  # (B, L, H, W, 3) uint8
    act: np.ndarray  # (B, L) int64
    rew: np.ndarray  # (B, L) float32
    end: np.ndarray  # (B, L) bool, game over after this step
    life_loss: np.ndarray  # (B, L) bool
    trunc: np.ndarray  # (B, L) bool, the episode was cut after this step
    mask: np.ndarray  # (B, L) bool, the frame is real (not padding)


class SegmentRequest(NamedTuple):
    """The arguments of one `sample` call after the generator: `buf.sample(rng, *request)`."""

    batch_size: int
    seq_len: int
    pad_before: int = 0
    pad_after: int = 0
    weights: tuple[float, ...] | None = None


class EpisodeBuffer:
    """Every episode of a store, in RAM, in landing order."""

    kind = "ram"
    """Where the frames are: "ram" here, "disk" in DiskEpisodeBuffer (recorded by training)."""
    frames_in_ram = True

    def __init__(self, store: Store, skip_bad: bool = False, episodes: list[Path] | None = None):
        """episodes: load only these files (e.g. a train/validation split); default all."""
        self.store = store
        self.skip_bad = skip_bad
        self.frame_shape = tuple(store.spec.frame_shape)
        self.paths: list[Path] = []
        self.starts = np.zeros(0, dtype=np.int64)  # first frame of each episode in the arrays
        self.lengths = np.zeros(0, dtype=np.int64)  # frames per episode (steps + 1)
        self.size = 0
        self._obs = np.zeros((0, *self.frame_shape), dtype=np.uint8)
        self._steps = {k: np.zeros(0, dtype=d) for k, d in STEP_DTYPES.items()}
        self.refresh(episodes)

    @property
    def num_episodes(self) -> int:
        return len(self.paths)

    @property
    def num_frames(self) -> int:
        return self.size

    def refresh(self, episodes: list[Path] | None = None) -> int:
        """Load episodes not loaded yet (all new ones in the store, or those listed); return how many."""
        known = set(self.paths)
        todo = [p for p in (episodes if episodes is not None else self.store.episode_paths()) if p not in known]
        # Size the arrays once for everything new (regrowing per episode dominated load time).
        if self.frames_in_ram:
            self._grow(self.size + sum(self.store.episode_length(p) + 1 for p in todo))
        added = 0
        for path in todo:
            try:
                ep = self.store.read_episode(path, frames=self.frames_in_ram)
            except Exception:
                if not self.skip_bad:
                    raise
                continue
            self.add(path, ep)
            added += 1
        return added

    def add(self, path: Path, ep: Episode) -> None:
        n = len(ep) + 1
        self._grow(self.size + n)
        s = self.size
        if self.frames_in_ram:
            self._obs[s : s + n] = ep.obs
        for k in STEP_DTYPES:
            a = self._steps[k]
            a[s : s + n - 1] = getattr(ep, k)
            a[s + n - 1] = 0  # the last frame: no action taken, nothing followed
        self.paths.append(path)
        self.starts = np.append(self.starts, s)
        self.lengths = np.append(self.lengths, n)
        self.size += n

    def _grow(self, need: int) -> None:
        cap = len(self._steps["act"])
        if need <= cap:
            return
        cap = max(need, int(cap * 1.5), 1024)
        if self.frames_in_ram:
            obs = np.zeros((cap, *self.frame_shape), dtype=np.uint8)
            obs[: self.size] = self._obs[: self.size]
            self._obs = obs
        for k, a in self._steps.items():
            b = np.zeros(cap, dtype=a.dtype)
            b[: self.size] = a[: self.size]
            self._steps[k] = b

    def episode(self, i: int) -> Episode:
        """Episode i as stored (views into the buffer)."""
        s, n = self.starts[i], self.lengths[i]
        steps = {k: self._steps[k][s : s + n - 1] for k in STEP_DTYPES}
        return Episode(obs=self._obs[s : s + n], **steps)

    def contexts(self, num_context: int, weights: Sequence[float] | None = None) -> Contexts:
        """A sampler of real starting contexts of `num_context` frames (see `Contexts`)."""
        return Contexts(self, num_context, weights)

    def sample(
        self,
        rng: np.random.Generator,
        batch_size: int,
        seq_len: int,
        pad_before: int = 0,
        pad_after: int = 0,
        weights: Sequence[float] | None = None,
    ) -> Segments:
        """B segments. A start is valid when the segment lies within [-pad_before, length + pad_after)
        of its episode; episodes too short for any valid start are never drawn.

        weights None: uniformly over all valid starts of all episodes. weights (w_1..w_k): DIAMOND's
        recency weighting: the episodes, in landing order, are cut into k chunks of equal count
        (the last takes the remainder); a chunk is drawn with probability w_i, an episode uniformly
        among its episodes long enough, then a valid start uniformly. With fewer than k episodes,
        uniformly as above.
        """
        ep, start = draw_segments(rng, self.lengths, batch_size, seq_len, pad_before, pad_after, weights)
        return self.gather(ep, start, seq_len)

    def gather(self, ep: np.ndarray, start: np.ndarray, seq_len: int) -> Segments:
        """The segments of `seq_len` frames from frame `start[b]` (may be negative) of episode `ep[b]`."""
        pos = start[:, None] + np.arange(seq_len)[None, :]  # (B, L) frame index within the episode
        mask = (pos >= 0) & (pos < self.lengths[ep][:, None])
        idx = self.starts[ep][:, None] + np.clip(pos, 0, self.lengths[ep][:, None] - 1)  # (B, L)
        steps = {k: np.where(mask, self._steps[k][idx], 0).astype(self._steps[k].dtype) for k in STEP_DTYPES}
        return Segments(obs=self._frames(ep, start, seq_len, idx, mask), mask=mask, **steps)

    def _frames(self, ep: np.ndarray, start: np.ndarray, seq_len: int, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, L, H, W, 3) uint8 frames of the segments, zeros where mask is false."""
        obs = self._obs[idx]  # (B, L, H, W, 3)
        obs[~mask] = 0
        return obs


def draw_segments(rng: np.random.Generator, lengths: np.ndarray, batch_size: int, seq_len: int, pad_before: int = 0,
                  pad_after: int = 0, weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every random draw of one batch (see EpisodeBuffer.sample): the episode of each segment, (B,),
    and its first frame within the episode, (B,), from -pad_before on. lengths: frames per episode."""
    # Valid starts per episode: s in [-pad_before, length + pad_after - seq_len].
    counts = np.maximum(lengths + pad_before + pad_after - seq_len + 1, 0)
    total = int(counts.sum())
    if total == 0:
        raise ValueError(f"no episode is long enough for segments of {seq_len} frames")
    p = recency_weights(len(lengths), weights, valid=counts > 0)
    if p is None:
        cum = np.cumsum(counts)
        u = rng.integers(0, total, size=batch_size)
        ep = np.searchsorted(cum, u, side="right")  # (B,)
        s = u - (cum[ep] - counts[ep]) - pad_before  # (B,) start within the episode
    else:
        if p.sum() == 0:
            raise ValueError(f"no episode in a chunk of nonzero weight is long enough for segments of {seq_len} frames")
        ep = rng.choice(len(lengths), size=batch_size, p=p)
        s = rng.integers(0, counts[ep]) - pad_before
    return ep, s


def recency_weights(num_episodes: int, weights: Sequence[float] | None,
                    valid: np.ndarray | None = None) -> np.ndarray | None:
    """Each episode's probability under DIAMOND's chunk weights (see EpisodeBuffer.sample), or
    None where sampling is uniform over segments (no weights, or fewer episodes than chunks).
    valid (bool per episode): only these can be drawn; a chunk's weight is shared among its valid
    episodes, and a chunk without any drops out (the others' weights are renormalised)."""
    if weights is None or num_episodes < len(weights):
        return None
    k = len(weights)
    sizes = np.full(k, num_episodes // k)
    sizes[-1] += num_episodes % k
    chunk = np.repeat(np.arange(k), sizes)  # chunk of each episode, oldest first
    valid = np.ones(num_episodes, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    per_chunk = np.bincount(chunk[valid], minlength=k)
    w = np.asarray(weights, dtype=np.float64) * (per_chunk > 0)
    if w.sum() == 0:
        return np.zeros(num_episodes)
    return np.where(valid, w[chunk] / np.maximum(per_chunk[chunk], 1), 0.0) / w.sum()



class Contexts:
    """Real starting points for dreams: `sample(rng, k)` gives k windows of n consecutive frames
    of stored episodes, (k, n, H, W, 3) uint8, and the actions taken at them, (k, n) int64. The
    last frame always had a step after it, so no dream starts from a game-over frame. Episodes
    are drawn with the buffer's recency `weights` (None: uniformly over all windows)."""

    def __init__(self, buffer: EpisodeBuffer, num_context: int, weights: Sequence[float] | None = None):
        if not np.any(buffer.lengths >= num_context + 1):
            raise ValueError(f"no episode has the {num_context} steps a dream starts from")
        self.buffer, self.n, self.weights = buffer, num_context, weights

    def sample(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        seg = self.buffer.sample(rng, k, self.n + 1, weights=self.weights)
        return seg.obs[:, : self.n], seg.act[:, : self.n]
