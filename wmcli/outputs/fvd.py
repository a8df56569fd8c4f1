"""Fréchet Video Distance between two sets of videos (Unterthiner et al., 2018), and, for paired
sets, per-frame PSNR and SSIM and a temporal-consistency score.

A set of videos is a folder of .mp4/.gif/.npz files, one such file, or a trajectory store (one
video per episode). Every video is cut into consecutive, non-overlapping 16-frame clips from
its first frame (a shorter tail is dropped: wmcli's choice, as the reference code leaves clip
sampling to its caller). As in the reference implementation (google-research
frechet_video_distance), each clip is resized to 224x224 (bilinear), scaled to [-1, 1] and
embedded by I3D trained on Kinetics-400 (wmcli.outputs.i3d) as its 400 logits; FVD is the Fréchet
distance between Gaussians fitted to the two sets of embeddings (wmcli.outputs.frechet, float64).
docs/fvd.md states the convention and its sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import getitem
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wmcli.base.errors import WmcliError
from wmcli.base.frames import to_float
from wmcli.base.metrics import change_errors, motion, psnr_of_mse, ssim
from wmcli.base.progress import Progress
from wmcli.base.runtime import make_runtime
from wmcli.data.store import Store
from wmcli.outputs.frechet import frechet_distance_of_features
from wmcli.outputs.i3d import load_detector
from wmcli.outputs.video import read_video

VIDEO_INPUTS = (".mp4", ".gif", ".npz")


@dataclass(frozen=True)
class FvdConfig:
    """How clips are cut from videos and fed to I3D (the `wmcli fvd` options)."""

    clip_len: int = 16
    """Frames per clip (the FVD convention: 16)."""
    size: int = 224
    """Clips are resized to size x size (the convention: 224, I3D's input size)."""
    max_clips_per_video: int | None = None
    """Clips taken from each video, from its start; None: every whole clip."""
    batch_size: int = 8
    """Clips per I3D forward pass."""


# ---- sets of videos ------------------------------------------------------------------------------


@dataclass
class VideoSet:
    """Videos read one at a time: videos[i] is (T, H, W, 3) uint8."""

    path: Path
    kind: str  # "store", "folder", "npz" or "video"
    loaders: list[Callable[[], np.ndarray]]

    def __len__(self) -> int:
        return len(self.loaders)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.loaders[i]()


def open_videos(path: str | Path) -> VideoSet:
    """A folder of .mp4/.gif/.npz files (sorted by name), one such file, a store folder, or
    FILE.npz:KEY, the array KEY of an .npz (e.g. `real` of `wmcli imagine --compare -o x.npz`)."""
    name, colon, key = str(path).rpartition(":")
    if colon and name.lower().endswith(".npz") and key and not Path(path).exists():
        return VideoSet(Path(path), "npz", _rows(read_npz_videos(Path(name), key)))
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir() and Store.exists(path):  # a store: one video per episode
        store = Store.open(path)
        return VideoSet(path, "store", [partial(_episode_frames, store, p) for p in store.episode_paths()])
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_INPUTS and not p.name.startswith("."))
        kind = "folder"
    elif path.suffix.lower() in VIDEO_INPUTS:
        files, kind = [path], ("npz" if path.suffix.lower() == ".npz" else "video")
    else:
        raise WmcliError(f"cannot read videos from {path}: pass a folder, a store, or a .mp4, .gif or .npz file")
    loaders = []
    for f in files:
        loaders += _rows(read_npz_videos(f)) if f.suffix.lower() == ".npz" else [partial(read_video, f)]
    if not loaders:
        raise WmcliError(f"{path} holds no videos (.mp4, .gif or .npz files, or store episodes)")
    return VideoSet(path, kind, loaders)


def _missing(path: Path) -> WmcliError:
    return WmcliError(f"{path} does not exist; pass a folder of .mp4/.gif/.npz videos, one such file, or a store")


def _rows(arr: np.ndarray) -> list[Callable[[], np.ndarray]]:
    """A loader per video of an (N, T, H, W, 3) array."""
    return [partial(getitem, arr, j) for j in range(len(arr))]


def _episode_frames(store, path: Path) -> np.ndarray:
    return store.read_episode(path).obs


def read_npz_videos(path: Path, key: str | None = None) -> np.ndarray:
    """The videos of an .npz: its array `key`, else `videos` (or its only array), uint8 (N, T, H, W, 3)
    or (T, H, W, 3)."""
    if not path.is_file():
        raise _missing(path)
    try:
        with np.load(path) as z:
            keys = list(z.files)
            if key is not None and key not in keys:
                raise WmcliError(f"{path} has no array {key!r}; it holds {', '.join(keys)} (pick one as {path}:NAME)")
            if key is None:
                key = "videos" if "videos" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise WmcliError(f"{path} holds arrays {', '.join(keys)}; name the videos array `videos`, or pick "
                                 f"one as {path}:NAME")
            arr = z[key]
    except (OSError, ValueError) as e:
        raise WmcliError(f"cannot read {path} as an .npz of videos ({e})") from None
    if arr.ndim == 4:
        arr = arr[None]
    if arr.ndim != 5 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise WmcliError(f"{path}: array {key!r} is {arr.dtype} {tuple(arr.shape)}; expected uint8 videos "
                         f"(N, T, H, W, 3) or one video (T, H, W, 3)")
    return arr


# ---- clips and their I3D features -------------------------------------------------------------------


def clip_starts(num_frames: int, clip_len: int, max_clips: int | None = None) -> list[int]:
    """First frames of the consecutive, non-overlapping whole clips of a video, from its start."""
    starts = list(range(0, num_frames - clip_len + 1, clip_len))
    return starts if max_clips is None else starts[:max_clips]


def prepare_clips(clips: list[np.ndarray], size: int) -> torch.Tensor:
    """uint8 clips [(T, H, W, 3)] -> I3D input (B, 3, T, size, size) in [-1, 1]: bilinear resizing
    (half-pixel centres; antialiased when shrinking), frame by frame."""
    out = []
    for clip in clips:
        x = to_float(torch.from_numpy(np.ascontiguousarray(clip)))  # (T, 3, H, W)
        H, W = x.shape[-2:]
        if (H, W) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=H > size or W > size).clamp_(-1, 1)
        out.append(x.transpose(0, 1))  # (3, T, size, size)
    return torch.stack(out)


def video_features(videos: VideoSet, detector, cfg: FvdConfig, on_video=None) -> tuple[np.ndarray, list[tuple]]:
    """I3D features (N clips, D) of every clip of every video, and each video's shape.
    on_video(k) is called after the k-th video."""
    feats, shapes, pending = [], [], []

    def flush() -> None:
        feats.append(detector(prepare_clips(pending, cfg.size)).numpy())
        pending.clear()

    for i in range(len(videos)):
        v = videos[i]
        shapes.append(v.shape)
        for s in clip_starts(len(v), cfg.clip_len, cfg.max_clips_per_video):
            pending.append(v[s : s + cfg.clip_len])
            if len(pending) == cfg.batch_size:
                flush()
        if on_video is not None:
            on_video(i + 1)
    if pending:
        flush()
    return (np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)), shapes


# ---- paired videos -----------------------------------------------------------------------------------


@torch.no_grad()
def paired_metrics(real: VideoSet, generated: VideoSet, chunk: int = 256) -> dict:
    """Video i of one set against video i of the other (same shapes): PSNR (MSE pooled over every
    frame), mean SSIM, and the temporal-consistency score (the PSNR of the frame-to-frame changes,
    pooled likewise) with each set's motion (mean absolute change between consecutive frames, in
    8-bit levels). Per-frame-index lists when all videos have the same length."""
    se, ss, change_se, motion_r, motion_g = [], [], [], [], []
    for i in range(len(real)):
        r, g = to_float(torch.from_numpy(real[i])), to_float(torch.from_numpy(generated[i]))  # (T, 3, H, W)
        se.append((g - r).pow(2).flatten(1).mean(dim=1))  # (T,)
        ss.append(torch.cat([ssim(r[k : k + chunk], g[k : k + chunk]) for k in range(0, len(r), chunk)]))
        change_se.append(change_errors(r, g))  # (T - 1,)
        motion_r.append(motion(r))
        motion_g.append(motion(g))
    all_se, all_ss = torch.cat(se), torch.cat(ss)
    all_change = torch.cat(change_se)
    m_r, m_g = torch.cat(motion_r).mean().item() * 127.5, torch.cat(motion_g).mean().item() * 127.5
    same_length = len({len(x) for x in se}) == 1
    return {
        "videos": len(real), "frames": len(all_se),
        "psnr": psnr_of_mse(all_se.mean().item()), "ssim": all_ss.mean().item(),
        "temporal_consistency": psnr_of_mse(all_change.mean().item()) if len(all_change) else None,
        "motion_real": m_r, "motion_generated": m_g, "motion_ratio": m_g / m_r if m_r > 0 else None,
        "psnr_per_frame": [psnr_of_mse(v) for v in torch.stack(se).mean(0).tolist()] if same_length else None,
        "ssim_per_frame": torch.stack(ss).mean(0).tolist() if same_length else None,
    }


# ---- wmcli fvd -----------------------------------------------------------------------------------------


def compare_video_sets(real: VideoSet, generated: VideoSet, detector, cfg: FvdConfig = FvdConfig(),
                       on_video=None) -> dict:
    """FVD between two sets of videos (open_videos), and the paired metrics when they pair up.
    `detector` maps clips (B, 3, T, S, S) in [-1, 1] to features (B, D) (wmcli.outputs.i3d.load_detector).
    on_video(n) is called with the number of videos embedded so far. Warnings (too few clips)
    are in the result."""
    if cfg.clip_len < 1 or cfg.size < 1 or cfg.batch_size < 1:
        raise WmcliError("--clip-len, --size and --batch-size must be at least 1")
    t0 = time.perf_counter()
    sets = {"real": real, "generated": generated}
    feats, shapes = {}, {}
    for name, videos in sets.items():
        base = 0 if name == "real" else len(real)  # videos embedded before this set
        report = None if on_video is None else (lambda k, base=base: on_video(base + k))
        feats[name], shapes[name] = video_features(videos, detector, cfg, report)
    warnings = []
    for name, f in feats.items():
        if len(f) < 2:
            longest = max((s[0] for s in shapes[name]), default=0)
            raise WmcliError(f"{sets[name].path} gives {len(f)} clip(s) of {cfg.clip_len} frames (its longest video "
                             f"has {longest} frames); FVD needs at least 2, and more than the feature count for a "
                             f"full-rank covariance")
        D = f.shape[1]
        if len(f) <= D:
            warnings.append(f"{name} ({sets[name].path}) gives {len(f)} clips, too few for a meaningful covariance of "
                            f"{D} features: use at least {D + 1} (papers report FVD on 256 to 2048 clips); "
                            f"this FVD is biased upwards")
    embed_s = time.perf_counter() - t0
    paired = None
    if len(shapes["real"]) == len(shapes["generated"]) and shapes["real"] == shapes["generated"]:
        paired = paired_metrics(sets["real"], sets["generated"])

    def describe(name: str) -> dict:
        return {"path": str(sets[name].path), "kind": sets[name].kind, "videos": len(sets[name]),
                "frames": int(sum(s[0] for s in shapes[name])), "clips": len(feats[name])}

    clips = len(feats["real"]) + len(feats["generated"])
    return {
        "fvd": frechet_distance_of_features(feats["real"], feats["generated"]),
        "real": describe("real"), "generated": describe("generated"),
        "detector": {"path": str(getattr(detector, "path", "")), "kind": getattr(detector, "kind", "module"),
                     "features": int(feats["real"].shape[1])},
        "clip_len": cfg.clip_len, "size": cfg.size, "max_clips_per_video": cfg.max_clips_per_video,
        "paired": paired, "warnings": warnings, "seconds": time.perf_counter() - t0, "clips_per_s": clips / embed_s,
    }


def fvd_of_paths(real: str | Path, generated: str | Path, detector: str | Path | None = None,
                 cfg: FvdConfig = FvdConfig(), device: str = "auto",
                 on_progress: Callable[[Progress], None] | None = None) -> dict:
    """`wmcli fvd`: open both sets of videos and the I3D weights (wmcli.outputs.i3d.find_detector's
    search when `detector` is None), and compare them."""
    net = load_detector(detector, make_runtime(device, "fp32", False).device)
    sets = open_videos(real), open_videos(generated)
    total = len(sets[0]) + len(sets[1])
    report = None if on_progress is None else (lambda k: on_progress(Progress("fvd", k, total, "videos")))
    return compare_video_sets(*sets, net, cfg, on_video=report)


def fvd_rows(r: dict) -> list[tuple[str, str]]:
    """A `compare_video_sets` result as (label, value) rows for a table."""
    rows = [("FVD", f"{r['fvd']:.2f}")]
    for name in ("real", "generated"):
        s = r[name]
        rows.append((name, f"{s['videos']} videos ({s['kind']}), {s['frames']} frames, {s['clips']} clips"))
    d = r["detector"]
    rows.append(("detector", f"{d['path']} ({d['kind']}, {d['features']} features)"))
    p = r["paired"]
    if p is not None:
        rows.append(("paired PSNR / SSIM", f"{p['psnr']:.2f} dB / {p['ssim']:.4f} over {p['frames']} frames"))
        tc = "-" if p["temporal_consistency"] is None else f"{p['temporal_consistency']:.2f} dB"
        ratio = "-" if p["motion_ratio"] is None else f"{p['motion_ratio']:.2f}"
        rows.append(("temporal consistency", f"{tc} (motion ratio {ratio})"))
    return rows
