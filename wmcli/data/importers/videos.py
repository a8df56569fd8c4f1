"""Folders of videos with an actions file: recordings made outside any emulator.

    SRC/
      actions.csv        video,step,act[,rew][,end]   one row per step of every video
      run1.mp4           one episode: N frames make N - 1 steps
      run2.mp4
      ...

Row `video,step,act` says that action `act` (an index 0..N-1) was taken at frame `step` of that
video and led to frame `step + 1`; `rew` (default 0) is the reward that followed and `end` (0/1,
default 0) that the game ended there. Every step 0..frames-2 of every video needs exactly one
row. A video with no `end` on its last step is a cut episode. Videos are read with imageio's
ffmpeg plugin (mp4, avi, mkv, webm, mov) or its gif reader; a video's key is its file name.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.data.importers.source import Source, SourceEpisode, bad_file, episode_from_arrays
from wmcli.data.video_files import read_video

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")
ACTIONS_FILE = "actions.csv"
COLUMNS = "video,step,act[,rew][,end]"
EXPECTED = f"{ACTIONS_FILE} with the header {COLUMNS} and one row per step of each video (N frames, N - 1 steps)"


class VideoSource(Source):
    format = "videos"

    def __init__(self, path: Path):
        super().__init__(path)
        if not self.path.is_dir():
            raise WmcliError(f"{path} is not a folder; pass a folder of videos with an {ACTIONS_FILE} ({COLUMNS})")
        table = self.path / ACTIONS_FILE
        if not table.is_file():
            raise WmcliError(f"{path} has no {ACTIONS_FILE}; write one with the header {COLUMNS} (docs/data.md)")
        self.videos = sorted(p for p in self.path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
        if not self.videos:
            raise WmcliError(f"{path} holds no videos ({', '.join(VIDEO_SUFFIXES)})")
        self.steps = _read_actions(table)
        names = {p.name for p in self.videos}
        stray = sorted(set(self.steps) - names)
        if stray:
            raise bad_file(table, f"rows for '{stray[0]}', which is not a video in {path}", EXPECTED)
        missing = [p.name for p in self.videos if p.name not in self.steps]
        if missing:
            raise bad_file(table, f"no rows for the video '{missing[0]}'", EXPECTED)

    def keys(self) -> list[str]:
        return [p.name for p in self.videos]

    def num_actions(self) -> int:
        return 1 + max((int(r[1]) for rows in self.steps.values() for r in rows), default=-1)

    def read(self, key: str) -> SourceEpisode:
        frames = read_video(self.path / key)
        rows = self.steps[key]
        T = len(frames) - 1
        steps = [r[0] for r in rows]
        if steps != list(range(T)):
            where = next((i for i, s in enumerate(steps) if s != i), min(len(steps), T))
            why = (f"step {where} of '{key}' is missing or out of order" if where < T
                   else f"'{key}' has {len(frames)} frames ({T} steps) but {len(rows)} rows")
            raise bad_file(self.path / ACTIONS_FILE, why, EXPECTED)
        table = np.asarray([r[1:] for r in rows], dtype=np.float64).reshape(T, 3)
        arrays = {"obs": frames, "act": table[:, 0].astype(np.int64), "rew": table[:, 1], "end": table[:, 2] > 0.5}
        return episode_from_arrays(self.path / key, arrays, key, EXPECTED)


def _read_actions(table: Path) -> dict[str, list[tuple[int, int, float, float]]]:
    """actions.csv -> video name -> [(step, act, rew, end)] sorted by step."""
    out: dict[str, list] = {}
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        for col in ("video", "step", "act"):
            if col not in header:
                raise bad_file(table, f"no column '{col}' in the header {','.join(header) or '(empty)'}", EXPECTED)
        for n, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                step, act = int(row["step"]), int(row["act"])
                rew = float(row.get("rew") or 0)
                end = float(row.get("end") or 0)
            except ValueError:
                raise bad_file(table, f"line {n} is not numbers where numbers belong ({row})", EXPECTED) from None
            if act < 0 or step < 0:
                raise bad_file(table, f"line {n} has a negative step or action", EXPECTED)
            out.setdefault(row["video"], []).append((step, act, rew, end))
    for rows in out.values():
        rows.sort()
    return out
