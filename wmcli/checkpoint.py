"""Self-describing checkpoints, written atomically and loaded with `weights_only=True`.

A checkpoint is a plain dict: kind ("world_model", "agent"), format version, wmcli version,
the resolved recipe, the env spec (game, protocol, action count, frame shape), counters, the
model weights (from the uncompiled, unwrapped modules) and, for resuming, the optimizer,
grad-scaler and RNG states. Everything in it is tensors and plain Python values, so loading
needs no pickled code. Saving writes a temporary file and renames it over the old one: a kill
during a save leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from wmcli import __version__
from wmcli.atomic import atomic_path
from wmcli.errors import WmcliError

FORMAT_VERSION = 1
KINDS = {"world_model": "a world-model checkpoint (wmcli train-wm)", "agent": "an agent checkpoint (wmcli train-agent)"}


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    """Write `ckpt` (which must hold `kind`) atomically; adds format and version fields."""
    import torch

    assert ckpt.get("kind") in KINDS, ckpt.get("kind")
    payload = {"format_version": FORMAT_VERSION, "wmcli_version": __version__, **ckpt}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, kind: str) -> dict:
    """Load a checkpoint of `kind`, with one clear error for a missing, foreign or wrong-kind file."""
    import torch

    import zipfile

    path = Path(path)
    if not path.is_file():
        raise WmcliError(f"checkpoint {path} not found; pass the file that `wmcli {_maker(kind)}` wrote (-o)")
    if not zipfile.is_zipfile(path):
        raise WmcliError(f"{path} is not a readable wmcli checkpoint (not a torch.save archive); "
                         f"pass the file that `wmcli {_maker(kind)}` wrote (-o)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WmcliError(f"{path} is not a readable wmcli checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "format_version" not in ckpt:
        raise WmcliError(f"{path} is not a wmcli checkpoint (no kind/format fields)")
    if ckpt["kind"] != kind:
        raise WmcliError(
            f"{path} is {KINDS.get(ckpt['kind'], repr(ckpt['kind']))}, but {KINDS[kind]} is expected here"
        )
    if ckpt["format_version"] > FORMAT_VERSION:
        raise WmcliError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this wmcli "
            f"({__version__}, format {FORMAT_VERSION}); upgrade wmcli"
        )
    return ckpt


def checkpoint_to_resume(out: Path, kind: str, resume: bool, overwrite: bool) -> dict | None:
    """What a training continues from: `out`'s checkpoint with --resume, else None (a fresh start).
    Refuses to replace an existing `out` without --resume or --overwrite, and --resume without it."""
    if out.exists() and not (resume or overwrite):
        raise WmcliError(f"{out} exists; pass --resume to continue it, or another -o (or --overwrite)")
    if not resume:
        return None
    if not out.exists():
        raise WmcliError(f"nothing to resume: {out} does not exist; drop --resume to start")
    return load_checkpoint(out, kind)


def _maker(kind: str) -> str:
    return {"world_model": "train-wm", "agent": "train-agent"}[kind]
