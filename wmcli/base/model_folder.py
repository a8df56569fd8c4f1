"""A checkpoint as a Hugging Face model folder: model.safetensors, config.json, README.md.

    DIR/model.safetensors   every weight tensor of the checkpoint, named <prefix>.<param>
                            ("denoiser.unet.conv_in.weight"), contiguous, each in its own storage
    DIR/config.json         everything else in the checkpoint (kind, format and wmcli versions, the
                            resolved recipe, the env spec, counters, provenance) and, under
                            "model_folder", which prefix goes back to which checkpoint key
    DIR/README.md           the model card (wmcli.outputs.export writes its text)

The resume state (optimizer, grad scaler, RNG) is left out: a folder is for using and sharing a
model, not for continuing its training. Reading needs only `json` and `safetensors`, neither of
which can run code from a file, and gives back the dict `read_checkpoint` gives for the .pt file,
less its resume state. A folder is written whole or not at all: it is built in a hidden sibling
and renamed into place, an existing folder being swapped out only once the new one is complete.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from wmcli.base.atomic import atomic_dir, fsync_file, make_parent, unwritable
from wmcli.base.errors import WmcliError

WEIGHTS_NAME, CONFIG_NAME, CARD_NAME = "model.safetensors", "config.json", "README.md"
FOLDER_VERSION = 1
"""Version of the folder layout (the "model_folder" record of config.json)."""
LEFT_OUT = ("resume",)
"""Checkpoint keys a folder does not hold: the optimizer, grad-scaler and RNG states of a training."""
REQUIRED = ("model_folder", "kind", "format_version")
"""The fields that make a config.json wmcli's."""


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder meant as a model folder (it holds config.json or model.safetensors)."""
    path = Path(path)
    return path.is_dir() and ((path / CONFIG_NAME).exists() or (path / WEIGHTS_NAME).exists())


# --------------------------------------------------------------------------------------------
# Splitting a checkpoint into weights and config, and joining them again.


def split_checkpoint(ckpt: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of a checkpoint: every tensor under a flat name, and the rest as plain JSON
    values with the "model_folder" record that puts the tensors back. Any dict may hold tensors,
    at any depth; the tensors of one dict (a state dict) share a prefix named after its key."""
    if "model_folder" in ckpt:
        raise WmcliError("the checkpoint holds a 'model_folder' entry, the name config.json keeps for itself; "
                         "it was not written by wmcli")
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, dict] = {}
    non_finite: list[list] = []
    seen_storages: set[int] = set()

    def own(t: torch.Tensor) -> torch.Tensor:
        """A contiguous CPU copy in a storage of its own (safetensors writes each storage once)."""
        t = t.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen_storages or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen_storages.add(t.untyped_storage().data_ptr())
        return t

    def prefix_for(path: list[str]) -> str:
        name = (path[-1] if path else "checkpoint").replace(".", "_") or "_"
        if name in groups:
            name = "_".join(path).replace(".", "_")
        base, i = name, 2
        while name in groups:
            name, i = f"{base}_{i}", i + 1
        return name

    def plain(value, path: list[str]):
        """`value` as JSON values; its tensors moved to `tensors`."""
        if isinstance(value, dict):
            out, names = {}, []
            for k, v in value.items():
                if not isinstance(k, str):
                    raise WmcliError(f"cannot export: the checkpoint's {'/'.join(path) or 'top level'} has a key {k!r} "
                                     f"that is not a string (JSON keys are)")
                if isinstance(v, torch.Tensor):
                    names.append(k)
                else:
                    out[k] = plain(v, [*path, k])
            if names:
                prefix = prefix_for(path)
                groups[prefix] = {"key": path, "tensors": names}
                for k in names:
                    tensors[f"{prefix}.{k}"] = own(value[k])
            return out
        if isinstance(value, (list, tuple)):
            if any(isinstance(v, torch.Tensor) for v in value):
                raise WmcliError(f"cannot export: the checkpoint's {'/'.join(path)} is a list holding tensors")
            return [plain(v, [*path, str(i)]) for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            non_finite.append(path)
            return repr(value)  # "inf", "-inf", "nan": strict JSON has no such numbers
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise WmcliError(f"cannot export: the checkpoint's {'/'.join(path)} is a {type(value).__name__}, "
                         f"which config.json cannot hold")

    config = plain({k: v for k, v in ckpt.items() if k not in LEFT_OUT}, [])
    config["model_folder"] = {"version": FOLDER_VERSION, "weights": groups,
                              "non_finite": non_finite, "left_out": [k for k in LEFT_OUT if k in ckpt]}
    return tensors, config


def join_checkpoint(tensors: dict[str, torch.Tensor], config: dict) -> dict:
    """The checkpoint dict that `split_checkpoint` split into `tensors` and `config`."""
    record = config["model_folder"]
    ckpt = {k: v for k, v in config.items() if k != "model_folder"}
    for path in record.get("non_finite", []):
        *parents, last = path
        holder = ckpt
        for k in parents:
            holder = holder[int(k)] if isinstance(holder, list) else holder[k]
        key = int(last) if isinstance(holder, list) else last
        holder[key] = float(holder[key])
    for prefix, group in record["weights"].items():
        holder = ckpt
        for k in group["key"]:
            holder = holder.setdefault(k, {})
        for name in group["tensors"]:
            holder[name] = tensors[f"{prefix}.{name}"]
    return ckpt


# --------------------------------------------------------------------------------------------
# Writing and reading a folder.


def write_model_folder(ckpt: dict, out: str | os.PathLike, card: str, overwrite: bool = False) -> dict:
    """Write `ckpt` (less its resume state) as a model folder at `out`, with `card` as README.md.

    The folder is built in a hidden sibling and renamed into place, so `out` is never a half
    folder. An existing non-empty `out` is refused unless `overwrite`; then it is moved aside,
    the new folder renamed in, and the old one deleted (put back if the rename fails). Returns
    the size in bytes of each file written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WmcliError(f"{out} is a file; -o takes a folder to write the model into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise WmcliError(f"{out} exists and is not empty; pass another -o, or --overwrite to replace it")
    make_parent(out)
    tensors, config = split_checkpoint(ckpt)
    try:
        with atomic_dir(out) as tmp:
            save_file(tensors, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")
            (tmp / CARD_NAME).write_text(card if card.endswith("\n") else card + "\n")
            os.chmod(tmp / WEIGHTS_NAME, (tmp / CONFIG_NAME).stat().st_mode & 0o777)  # safetensors writes 0600: as umask says
            for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
                fsync_file(tmp / name)
            sizes = {name: (tmp / name).stat().st_size for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)}
    except OSError as e:
        raise unwritable(out, e) from None
    return sizes


def read_model_folder(path: str | os.PathLike, fix: str = "pass a folder `wmcli export` wrote") -> dict:
    """The checkpoint dict of a model folder (without resume state), read with json and safetensors
    only; one clear error for a missing file, a config.json that is not wmcli's, or weights that are
    not the ones it lists. `fix` says what to pass instead."""
    path = Path(path)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise WmcliError(f"model folder {path} has no {name}; {fix}")
    try:
        config = json.loads((path / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise WmcliError(f"{path / CONFIG_NAME} is not readable JSON ({str(e)[:120]}); {fix}") from None
    if not isinstance(config, dict):
        raise WmcliError(f"{path / CONFIG_NAME} is not wmcli's (not a JSON object); {fix}")
    missing = next((k for k in REQUIRED if k not in config), None)
    record = config.get("model_folder")
    if missing is None and not (isinstance(record, dict) and isinstance(record.get("weights"), dict)):
        missing = "model_folder.weights"
    if missing is not None:
        raise WmcliError(f"{path / CONFIG_NAME} is not wmcli's (no '{missing}' field); {fix}")
    if not isinstance(record.get("version", 0), int) or record.get("version", 0) > FOLDER_VERSION:
        raise WmcliError(f"{path} is a model folder of layout {record['version']}, newer than this wmcli reads "
                         f"({FOLDER_VERSION}); upgrade wmcli")
    listed = {f"{prefix}.{name}" for prefix, group in record["weights"].items() for name in group.get("tensors", [])}
    try:
        with safe_open(path / WEIGHTS_NAME, framework="pt", device="cpu") as f:
            names = set(f.keys())
            problem = _mismatch(listed, names)
            if problem is not None:
                raise WmcliError(f"{path / WEIGHTS_NAME} does not hold the weights config.json lists ({problem}); "
                                 f"the folder is damaged or was edited: export it again")
            tensors = {name: f.get_tensor(name) for name in listed}
    except WmcliError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error kinds for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WmcliError(f"{path / WEIGHTS_NAME} is not a readable safetensors file ({first[:120]}: truncated or "
                         f"damaged); export the model again") from None
    try:
        return join_checkpoint(tensors, config)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise WmcliError(f"{path / CONFIG_NAME} has a damaged 'model_folder' record ({type(e).__name__}: {e}); "
                         f"export the model again") from None


def _mismatch(listed: set[str], found: set[str]) -> str | None:
    """What differs between the tensors config.json lists and those the weights file holds."""
    missing, extra = sorted(listed - found), sorted(found - listed)
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} listed but missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} not listed, e.g. {extra[0]}")
    return "; ".join(parts)

