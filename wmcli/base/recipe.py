"""Recipes: the YAML files that set every hyperparameter, mirrored one to one by the dataclasses
of wmcli.base.config.

A recipe has one section per component. Loading checks every key, type and range and names the
recipe key at fault (and the nearest key for a misspelling); `--set a.b=c` overrides go through
the same checks. A file may start from another recipe (`base: minatar`). The built-in recipes
ship inside the package (`wmcli/recipes/*.yaml`). A resolved recipe is stored in every
checkpoint, so a checkpoint can be used alone. Nothing here imports torch, ALE or a training loop.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import re
import types
import typing
from pathlib import Path

import yaml

from wmcli.base.config import ConfigValueError, Recipe
from wmcli.base.errors import WmcliError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
"""The built-in recipes, inside the installed package."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp` (converting lists to tuples, ints to floats)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except WmcliError:
                pass
        raise WmcliError(f"recipe value {where}={value!r} should be {' or '.join(_type_name(a) for a in args)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise WmcliError(f"recipe value {where}={value!r} should be a list")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise WmcliError(f"recipe section {where} should be a mapping, got {value!r}")
        return build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-4 (no dot) and inf as strings
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise WmcliError(f"recipe value {where}={value!r} should be true or false")
    if tp in (int, float, str) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise WmcliError(f"recipe value {where}={value!r} should be {tp.__name__}")
    return value


def build(cls, data: dict, where: str = ""):
    """Make dataclass `cls` from a mapping, refusing unknown keys with the nearest known one."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {(where + '.' if where else '') + close[0]}?" if close else f"known: {', '.join(names)}"
            raise WmcliError(f"unknown recipe key '{full}' ({hint})")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigValueError as e:
        key = f"{where}.{e.key}" if where else e.key
        raise WmcliError(f"recipe value {key} {e.message}, got {e.value!r}; fix it in the recipe or with "
                         f"--set {key}=...") from None
    except (ValueError, TypeError) as e:
        raise WmcliError(f"bad recipe value in {where or 'recipe'}: {e}") from None


def _deep_update(base: dict, path: list[str], value) -> None:
    d = base
    for p in path[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise WmcliError(f"--set {'.'.join(path)}: {p} is not a section")
    d[path[-1]] = value


def parse_override(text: str) -> tuple[list[str], object]:
    """'a.b=c' -> (['a', 'b'], c), the value read as YAML (3 -> int, [1,2] -> list, true -> bool)."""
    if "=" not in text:
        raise WmcliError(f"--set '{text}' should look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def resolve_path(name: str) -> Path:
    """A recipe name (`tiny`, `atari100k`) or a YAML file path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise WmcliError(f"recipe file {p} not found; pass a YAML file or one of: {', '.join(list_recipes())}")
        return p
    p = RECIPES_DIR / f"{name}.yaml"
    if not p.is_file():
        close = difflib.get_close_matches(name, list_recipes(), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise WmcliError(f"unknown recipe '{name}'; {hint}the recipes are: {', '.join(list_recipes())}, or a YAML file")
    return p


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_summaries() -> list[dict]:
    """Each built-in recipe's name, file and what it is for (the first sentence of its opening comment)."""
    out = []
    for name in list_recipes():
        path = RECIPES_DIR / f"{name}.yaml"
        lines = path.read_text().splitlines()
        head = " ".join(line.lstrip("#").strip() for line in itertools.takewhile(lambda x: x.startswith("#"), lines))
        about = re.split(r"(?<=[.;])\s", head, maxsplit=1)[0]
        out.append({"name": name, "path": str(path), "about": about})
    return out


def recipe_text(name: str, resolved: bool = False) -> str:
    """A recipe as YAML: the file as written (comments, `base:`), or with resolved=True every
    value of every section after `base:` and defaults (checked as when it is loaded)."""
    if not resolved:
        return resolve_path(name).read_text()
    return yaml.safe_dump(load_recipe(name).to_dict(), sort_keys=False)


def load_recipe(name: str = "tiny", overrides: list[str] = (), game: str | None = None) -> Recipe:
    """Read a recipe, apply `--set` overrides (and the game, when given), validate it all."""
    data = _read_recipe(name, ())
    if game is not None:
        overrides = [*overrides, f"env.game={game}"]
    return recipe_from_dict(data, overrides)


def _read_recipe(name: str, seen: tuple[str, ...]) -> dict:
    """A recipe file's mapping; `base: other` at its top starts from recipe `other`, and the
    file's own sections override it key by key."""
    path = resolve_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise WmcliError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise WmcliError(f"recipe {path} should be a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    if str(base) in seen or len(seen) > 8:
        raise WmcliError(f"recipe {path}: 'base: {base}' loops back on itself")
    merged = _read_recipe(str(base) if Path(str(base)).is_absolute() or str(base) in list_recipes()
                          else str(path.parent / str(base)), (*seen, str(base)))
    for section, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def recipe_from_dict(data: dict, overrides: list[str] = ()) -> Recipe:
    """Build a recipe from a mapping (a YAML file's, or the one stored in a checkpoint),
    after applying `--set` overrides."""
    data = copy.deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        _deep_update(data, key, value)
    return build(Recipe, data)


def check_resume_recipe(old: dict, new: dict, sections: tuple[str, ...], loop_section: str, free: set[str]) -> None:
    """Refuse to resume a checkpoint whose recipe (`old`) differs from `new` in what the
    training depends on: the given sections, except the loop section's `free` keys (steps,
    logging and checkpoint intervals)."""
    diffs = [f"{section}.{key}" for section in sections for key, value in new.get(section, {}).items()
             if not (section == loop_section and key in free) and old.get(section, {}).get(key) != value]
    if diffs:
        raise WmcliError(f"cannot resume: the recipe differs from the checkpoint's in {', '.join(diffs[:5])}; "
                         f"use the same recipe, or train into a new -o file")
