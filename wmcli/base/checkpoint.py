"""Self-describing checkpoints, written atomically and loaded with `weights_only=True`.

A checkpoint is a plain dict: kind ("world_model", "agent"), format version, wmcli version,
the resolved recipe, the env spec (game, protocol, action count, frame shape), counters, the
model weights (from the uncompiled, unwrapped modules) and, for resuming, the optimizer,
grad-scaler and RNG states. Everything in it is tensors and plain Python values, so loading
needs no pickled code. Saving writes a temporary file and renames it over the old one: a kill
during a save leaves the previous checkpoint whole.

`read_checkpoint` reads any kind (its `kind` says which), from a .pt file or from a model folder
that `wmcli export` wrote (wmcli.base.model_folder: safetensors and JSON, no resume state);
`load_checkpoint` insists on one kind and says what to do with another; `recipe_for` picks the
recipe a training starts from (a named recipe, or the one stored in a checkpoint it continues or
builds on).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import torch

from wmcli import __version__
from wmcli.base.atomic import atomic_path
from wmcli.base.config import Recipe
from wmcli.base.errors import WmcliError
from wmcli.base.model_folder import WEIGHTS_NAME, is_model_folder, read_model_folder
from wmcli.base.recipe import load_recipe, recipe_from_dict

FORMAT_VERSION = 2
"""2: the networks compute DIAMOND's functions (attention residual, U-Net up path, reward/end head
without bias); format-1 checkpoints hold networks of another function and are refused."""
KINDS = {"world_model": "a world-model checkpoint (wmcli train-wm)", "agent": "an agent checkpoint (wmcli train-agent)"}
MAKERS = {"world_model": "train-wm", "agent": "train-agent"}
DEFAULT_RECIPE = "tiny"


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    """Write `ckpt` (which must hold `kind`) atomically; adds format and version fields."""
    assert ckpt.get("kind") in KINDS, ckpt.get("kind")
    payload = {"format_version": FORMAT_VERSION, "wmcli_version": __version__, **ckpt}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (hex), recorded as the provenance of what a checkpoint was made from
    (of a model folder: of its weights file)."""
    if is_model_folder(path):
        path = Path(path) / WEIGHTS_NAME
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_safely(path: Path, name: str, fix: str, mmap: bool = False):
    """What a torch.save file holds, loaded with `weights_only=True` (no code in the file runs), or
    one clear error for a missing, foreign or unreadable file: `name` says what the file should
    be ("wmcli checkpoint"), `fix` what to pass instead. mmap: tensors stay on disk until read
    (a scan of one small tensor of a large file reads only that tensor)."""
    if not path.is_file():
        raise WmcliError(f"{name} {path} not found; {fix}")
    if not zipfile.is_zipfile(path):
        raise WmcliError(f"{path} is not a readable {name} (not a torch.save archive); {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WmcliError(f"{path} is not a readable {name} ({first[:160]}); {fix}") from None


def read_checkpoint(path: str | os.PathLike, expected: str = "a wmcli checkpoint") -> dict:
    """Load a checkpoint of any kind (a .pt file, or a model folder `wmcli export` wrote), with one
    clear error for a missing or foreign one. `expected` names what the caller wants, for the messages."""
    path = Path(path)
    if is_model_folder(path):
        ckpt = read_model_folder(path, f"pass {expected}, or a folder `wmcli export` wrote")
    elif path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))
        hint = f" (it holds {', '.join(inside[:4])})" if inside else ""
        raise WmcliError(f"{path} is a folder, not a checkpoint file{hint}; pass {expected}, or a model folder "
                         f"that `wmcli export` wrote")
    else:
        ckpt = load_safely(path, "wmcli checkpoint", f"pass {expected}")
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "format_version" not in ckpt:
        raise WmcliError(f"{path} is not a wmcli checkpoint (no kind/format fields); pass {expected}")
    if ckpt["format_version"] < FORMAT_VERSION:
        raise WmcliError(
            f"{path} was written by wmcli {ckpt.get('wmcli_version', '?')} (checkpoint format {ckpt['format_version']}), "
            f"whose networks differ from this version's (now exactly DIAMOND's, see CHANGELOG); train it again"
        )
    if ckpt["format_version"] > FORMAT_VERSION:
        raise WmcliError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this wmcli "
            f"({__version__}, format {FORMAT_VERSION}); upgrade wmcli"
        )
    return ckpt


def load_checkpoint(path: str | os.PathLike, kind: str, hint: str | None = None) -> dict:
    """Load a checkpoint of `kind`; a checkpoint of another kind is refused with `hint` (what to
    do with it instead), or with what is expected."""
    expected = f"the file that `wmcli {MAKERS[kind]}` wrote (-o)"
    ckpt = read_checkpoint(path, expected)
    if ckpt["kind"] != kind:
        what = KINDS.get(ckpt["kind"], repr(ckpt["kind"]))
        raise WmcliError(f"{path} is {what}, but {KINDS[kind]} is expected here; " + (hint or f"pass {expected}"))
    return ckpt


def checkpoint_to_resume(out: Path, kind: str, resume: bool, overwrite: bool) -> dict | None:
    """What a training continues from: `out`'s checkpoint with --resume, else None (a fresh start).
    Refuses to replace an existing `out` without --resume or --overwrite, and --resume without it;
    a folder (an exported model among them) is no place to write a training's checkpoint."""
    out = Path(out)
    if is_model_folder(out) and resume:
        raise WmcliError(f"cannot resume from {out}: it is a model folder (`wmcli export` wrote it), which holds the "
                         f"weights but not the optimizer state a training resumes from; resume from the .pt file "
                         f"the training wrote, or start a new training with another -o")
    if out.is_dir():
        raise WmcliError(f"-o {out} is a folder; a training writes one checkpoint file: pass a file name (e.g. "
                         f"-o {out / ('agent.pt' if kind == 'agent' else 'wm.pt')})")
    if out.exists() and not (resume or overwrite):
        raise WmcliError(f"{out} exists; pass --resume to continue it, or another -o (or --overwrite)")
    if not resume:
        return None
    if not out.exists():
        raise WmcliError(f"nothing to resume: {out} does not exist; drop --resume to start")
    return load_checkpoint(out, kind)


def recipe_for(name: str | None, overrides: list[str] = (), inherit: tuple[tuple[Path, str], ...] = ()) -> Recipe:
    """The recipe a training starts from, `--set` overrides applied: the named recipe (a built-in
    name or a YAML file) when given; else the recipe stored in the first of `inherit`'s
    (checkpoint, kind) pairs whose file exists (the checkpoint being resumed, the world model an
    agent trains in); else the default recipe."""
    if name is not None:
        return load_recipe(name, overrides)
    for path, kind in inherit:
        if path is not None and Path(path).exists():
            return recipe_from_dict(load_checkpoint(path, kind)["recipe"], overrides)
    return load_recipe(DEFAULT_RECIPE, overrides)


def load_weights(module: torch.nn.Module, state: dict, what: str) -> None:
    """Load a checkpoint's weights into a network built from its recipe, with one clear error when
    they do not fit (missing, extra or reshaped tensors: a damaged or hand-edited checkpoint)."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise WmcliError(f"the checkpoint's {what} weights do not fit the network its recipe describes "
                         f"({detail[:160]}); the file is damaged or was edited: use the one training wrote") from None
