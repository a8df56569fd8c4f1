"""DIAMOND's trained models as wmcli checkpoints: `wmcli import diamond CKPT --game NAME`.

DIAMOND (Alonso et al., 2024; github.com/eloialonso/diamond) saves an agent as one state dict
whose keys start with `denoiser.`, `rew_end_model.` and `actor_critic.` (its `Agent`; the
published Atari 100k models are `atari_100k/models/<Game>.pt` in the Hugging Face repository
`eloialonso/diamond`). wmcli's networks compute DIAMOND's functions with other module names, so
importing is a renaming of tensors: every wmcli tensor has exactly one DIAMOND tensor of the
same shape, and the file is read with `weights_only=True` (no code in it runs).

The networks' sizes are read off the tensors' shapes (widths, depths, where attention is, the
number of actions, the frame size), so a DIAMOND model of any width converts, not only the
published ones; what shapes cannot tell (sigma_data, the sampler, the env protocol) comes from
the `atari100k` recipe, DIAMOND's values. The result is a world-model checkpoint and an agent
checkpoint, as `train-wm` and `train-agent` write them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from wmcli.base.checkpoint import file_sha256, load_safely, save_checkpoint
from wmcli.base.config import Recipe
from wmcli.base.errors import WmcliError
from wmcli.base.recipe import list_recipes, load_recipe, recipe_from_dict
from wmcli.data.env import make_spec, resolve_game
from wmcli.models.actor_critic import ActorCritic
from wmcli.models.denoiser import Denoiser
from wmcli.models.reward_end import RewEndModel

PARTS = ("denoiser", "rew_end_model", "actor_critic")
"""The three networks of a DIAMOND agent, the prefixes of its state dict's keys."""

DIAMOND_ATTN_HEAD_DIM = 8
"""DIAMOND's channels per attention head (its blocks.py; not visible in the tensors' shapes)."""

WHERE = ("DIAMOND's trained Atari 100k models are the files atari_100k/models/<Game>.pt of the Hugging Face "
         "repository eloialonso/diamond")


@dataclass(frozen=True)
class DiamondShapes:
    """What a DIAMOND state dict's shapes say about its networks."""

    num_actions: int
    frame_size: int
    num_context: int
    unet: dict  # channels, depths, attn_depths, cond_channels
    reward_end: dict  # channels, depths, cond_channels, lstm_dim
    actor_critic: dict  # channels, lstm_dim


# ---- reading ---------------------------------------------------------------------------------------


def read_diamond_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """DIAMOND's agent state dict from `path`, loaded without running code from the file."""
    path = Path(path)
    what = f"pass a DIAMOND agent checkpoint ({WHERE})"
    sd = load_safely(path, "DIAMOND checkpoint", what)
    if isinstance(sd, dict) and "kind" in sd and "format_version" in sd:
        raise WmcliError(f"{path} is a wmcli checkpoint already ({sd['kind']}); use it as it is, no import needed")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise WmcliError(f"{path} is not a DIAMOND agent checkpoint (not a state dict of tensors); {what}")
    missing = [p for p in PARTS if not any(k.startswith(p + ".") for k in sd)]
    if missing:
        raise WmcliError(f"{path} is not a DIAMOND agent checkpoint: no {', '.join(k + '.*' for k in missing)} "
                         f"tensors (a DIAMOND agent has denoiser, rew_end_model and actor_critic); {what}")
    return sd


def _get(sd: dict, key: str) -> Tensor:
    if key not in sd:
        raise WmcliError(f"the checkpoint has no tensor {key}, which every DIAMOND agent has; "
                         f"the file is incomplete or not DIAMOND's")
    return sd[key]


def _count(sd: dict, prefix: str) -> int:
    """How many consecutive indices i have keys starting with prefix + 'i.'."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in sd):
        n += 1
    return n


def infer_shapes(sd: dict) -> DiamondShapes:
    """Sizes of the three networks, read off the tensors' shapes."""
    p = "denoiser.inner_model."
    cond = _get(sd, p + "noise_emb.weight").shape[1] * 2
    num_actions, emb = _get(sd, p + "act_emb.0.weight").shape
    n = cond // emb
    in_c = _get(sd, p + "conv_in.weight").shape[1]
    if in_c != (n + 1) * 3:
        raise WmcliError(f"the denoiser takes {in_c} input channels, not the {(n + 1) * 3} of {n} RGB context frames "
                         f"and the noisy one: wmcli imports DIAMOND's Atari (RGB) models")
    levels = _count(sd, p + "unet.d_blocks.")
    depths = [_count(sd, f"{p}unet.d_blocks.{i}.resblocks.") for i in range(levels)]
    channels = [_get(sd, f"{p}unet.d_blocks.{i}.resblocks.0.conv1.weight").shape[0] for i in range(levels)]
    attn = [f"{p}unet.d_blocks.{i}.resblocks.0.attn.qkv_proj.weight" in sd for i in range(levels)]
    unet = {"channels": channels, "depths": depths, "attn_depths": attn, "cond_channels": cond}

    r = "rew_end_model."
    r_levels = _count(sd, r + "encoder.blocks.") - 1  # the last group is the two attention blocks
    r_depths = [_count(sd, f"{r}encoder.blocks.{i}.resblocks.") for i in range(r_levels)]
    r_channels = [_get(sd, f"{r}encoder.blocks.{i}.resblocks.0.conv1.weight").shape[0] for i in range(r_levels)]
    if any(k.startswith(f"{r}encoder.blocks.{i}.") and ".attn." in k for i in range(r_levels) for k in sd):
        raise WmcliError("the checkpoint's reward/end model has attention inside its encoder levels (attn_depths "
                         "not all 0); wmcli's has it only after them, as DIAMOND's configs do")
    r_act, r_cond = _get(sd, r + "act_emb.weight").shape
    gates, lstm_in = _get(sd, r + "lstm.weight_ih_l0").shape
    side = round((lstm_in / r_channels[-1]) ** 0.5)
    if side * side * r_channels[-1] != lstm_in:
        raise WmcliError(f"the reward/end model's LSTM takes {lstm_in} inputs, not a square map of "
                         f"{r_channels[-1]} channels; the file is not a DIAMOND agent")
    frame_size = side * 2 ** (r_levels - 1)
    reward_end = {"channels": r_channels, "depths": r_depths, "cond_channels": r_cond, "lstm_dim": gates // 4}

    a = "actor_critic.encoder.encoder."
    blocks = sorted(int(m.group(1)) for k in sd if (m := re.match(re.escape(a) + r"(\d+)\.f\.2\.weight$", k)))
    if blocks != [1 + 2 * i for i in range(len(blocks))] or not blocks:
        raise WmcliError("the checkpoint's actor-critic does not max-pool after every residual block (DIAMOND's "
                         "`down: [1, 1, 1, 1]`), the only layout wmcli has")
    a_channels = [_get(sd, f"{a}{i}.f.2.weight").shape[0] for i in blocks]
    a_gates, a_in = _get(sd, "actor_critic.lstm.weight_ih").shape
    a_actions = _get(sd, "actor_critic.actor_linear.weight").shape[0]
    a_side = frame_size // 2 ** len(blocks)
    if a_in != a_channels[-1] * a_side * a_side:
        raise WmcliError(f"the actor-critic's LSTM takes {a_in} inputs, but {frame_size}x{frame_size} frames (the "
                         f"reward/end model's) give {a_channels[-1] * a_side * a_side}; the networks are not one agent's")
    if len({num_actions, r_act, a_actions}) > 1:
        raise WmcliError(f"the networks disagree on the number of actions (denoiser {num_actions}, reward/end {r_act}, "
                         f"actor-critic {a_actions}); the file mixes several agents")
    return DiamondShapes(num_actions, frame_size, n, unet, reward_end,
                         {"channels": a_channels, "lstm_dim": a_gates // 4})


# ---- renaming --------------------------------------------------------------------------------------


def _resblock(w: str, d: str) -> dict[str, str]:
    return {f"{w}.norm1.linear": f"{d}.norm1.linear", f"{w}.conv1": f"{d}.conv1",
            f"{w}.norm2.linear": f"{d}.norm2.linear", f"{w}.conv2": f"{d}.conv2", f"{w}.skip": f"{d}.proj",
            f"{w}.attn.norm": f"{d}.attn.norm.norm", f"{w}.attn.qkv": f"{d}.attn.qkv_proj",
            f"{w}.attn.out": f"{d}.attn.out_proj"}


def denoiser_names(depths: list[int]) -> dict[str, str]:
    """wmcli Denoiser module path -> DIAMOND module path (under `denoiser.inner_model.`)."""
    names = {"noise_emb": "noise_emb", "act_emb": "act_emb.0", "cond_mlp.0": "cond_proj.0",
             "cond_mlp.2": "cond_proj.2", "unet.conv_in": "conv_in", "unet.norm_out": "norm_out.norm",
             "unet.conv_out": "conv_out"}
    L = len(depths)
    for i, depth in enumerate(depths):
        for j in range(depth):
            names |= _resblock(f"unet.down.{i}.{j}", f"unet.d_blocks.{i}.resblocks.{j}")
        if i < L - 1:
            names[f"unet.down.{i}.{depth}"] = f"unet.downsamples.{i + 1}.conv"
    for k in range(2):
        names |= _resblock(f"unet.mid.{k}", f"unet.mid_blocks.resblocks.{k}")
    for k in range(L):  # up levels, the deepest first in both
        depth = depths[L - 1 - k]
        for j in range(depth + 1):
            names |= _resblock(f"unet.up.{k}.{j}", f"unet.u_blocks.{k}.resblocks.{j}")
        if k < L - 1:
            names[f"unet.up.{k}.{depth + 1}"] = f"unet.upsamples.{k + 1}.conv"
    return names


def rew_end_names(depths: list[int]) -> dict[str, str]:
    """wmcli RewEndModel module path -> DIAMOND module path (under `rew_end_model.`)."""
    names = {"act_emb": "act_emb", "conv_in": "encoder.conv_in", "lstm": "lstm", "head.0": "head.0",
             "head.2": "head.2"}
    idx, L = 0, len(depths)
    for i, depth in enumerate(depths):
        for j in range(depth):
            names |= _resblock(f"encoder.{idx}", f"encoder.blocks.{i}.resblocks.{j}")
            idx += 1
        if i < L - 1:
            names[f"encoder.{idx}"] = f"encoder.downsamples.{i + 1}.conv"
            idx += 1
    for k in range(2):
        names |= _resblock(f"encoder.{idx + k}", f"encoder.blocks.{L}.resblocks.{k}")
    return names


def actor_critic_names(num_blocks: int) -> dict[str, str]:
    """wmcli ActorCritic module path -> DIAMOND module path (under `actor_critic.`)."""
    names = {"encoder.0": "encoder.encoder.0", "lstm": "lstm", "policy": "actor_linear", "value": "critic_linear"}
    for i in range(num_blocks):
        k = 1 + 2 * i  # a block, then a max-pool, in both
        names |= {f"encoder.{k}.net.0": f"encoder.encoder.{k}.f.0.norm", f"encoder.{k}.net.2": f"encoder.encoder.{k}.f.2",
                  f"encoder.{k}.skip": f"encoder.encoder.{k}.skip_projection"}
    return names


def convert_state(module: torch.nn.Module, sd: dict, prefix: str, names: dict[str, str], what: str,
                  keep: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """The state dict of wmcli `module` taken from DIAMOND's `sd`: each of the module's tensors
    from the DIAMOND tensor its name maps to, shapes checked; `keep` names wmcli-only buffers
    (kept as built). Every DIAMOND tensor under `prefix` must be used."""
    out, used = {}, set()
    for key, mine in module.state_dict().items():
        if key in keep:
            out[key] = mine
            continue
        path, _, param = key.rpartition(".")
        theirs = prefix + names.get(path, "?" + path) + "." + param
        if theirs not in sd:
            raise WmcliError(f"the checkpoint has no {theirs} for the {what}'s {key}: it is not a DIAMOND agent of "
                             f"the layout its other tensors describe (a damaged file, or another program's)")
        t = sd[theirs]
        if tuple(t.shape) != tuple(mine.shape):
            raise WmcliError(f"the checkpoint's {theirs} has shape {tuple(t.shape)}, but the {what} its other tensors "
                             f"describe needs {tuple(mine.shape)} for {key}; the file is damaged or not DIAMOND's")
        out[key] = t.to(mine.dtype).clone()
        used.add(theirs)
    extra = sorted(k for k in sd if k.startswith(prefix) and k not in used)
    if extra:
        raise WmcliError(f"the checkpoint has {len(extra)} {what} tensor(s) wmcli's layout has no place for "
                         f"(first: {extra[0]}); it is not a DIAMOND agent wmcli can import")
    return out


# ---- the import --------------------------------------------------------------------------------------


def diamond_recipe(shapes: DiamondShapes, game: str, base: str | None = None, overrides: list[str] = ()) -> Recipe:
    """`base` (default: DIAMOND's values for the game, atari100k-<game> where wmcli has one, e.g.
    Freeway's, else atari100k) with the networks' sizes of `shapes` and the game; `overrides`
    (--set) last."""
    if base is None:
        per_game = f"atari100k-{game.lower()}"
        base = per_game if per_game in list_recipes() else "atari100k"
    d = load_recipe(base).to_dict()
    d["env"].update(game=game, frame_size=shapes.frame_size)
    d["denoiser"].update(num_context=shapes.num_context, action_emb_dim=shapes.unet["cond_channels"] // shapes.num_context,
                         context_noise_max=0.0)
    d["denoiser"]["unet"].update(shapes.unet, attn_head_dim=DIAMOND_ATTN_HEAD_DIM)
    d["reward_end"].update(shapes.reward_end, attn_head_dim=DIAMOND_ATTN_HEAD_DIM)
    d["actor_critic"].update(shapes.actor_critic)
    return recipe_from_dict(d, overrides)


def default_import_dir(game: str) -> Path:
    """Where `wmcli import diamond` writes when no -o is given: diamond-<Game>."""
    return Path(f"diamond-{resolve_game(game)[1]}")


def import_rows(result: dict) -> list[tuple[str, str]]:
    """The table `wmcli import diamond` prints: what was written, and what to do with it."""
    p = result["parameters"]
    wm, agent = result["world_model"], result["agent"]
    return [("game", f"{result['game']} ({result['num_actions']} actions, {result['frame_size']}x{result['frame_size']} frames)"),
            ("world model", f"{wm} (denoiser {p['denoiser']:,} + reward/end {p['rew_end']:,} parameters)"),
            ("agent", f"{agent} ({p['actor_critic']:,} parameters)"),
            ("sha256", result["source"]["sha256"]),
            ("watch it dream", f"wmcli imagine {wm} -o dream.mp4"),
            ("evaluate the agent", f"wmcli eval {agent} --episodes 100"),
            ("collect with it", f"wmcli collect --policy {agent} --env-steps 10000")]


def import_diamond(path: str | Path, game: str, out_dir: str | Path, overrides: list[str] = (),
                   overwrite: bool = False) -> dict:
    """Convert DIAMOND's agent checkpoint `path` for `game` into OUT/wm.pt (world model) and
    OUT/agent.pt (agent), each written atomically; returns what was written and read."""
    path, out_dir = Path(path), Path(out_dir)
    kind, name, _ = resolve_game(game)  # an unknown game fails first, with the closest names
    if kind != "ale":
        raise WmcliError(f"{name} is a MinAtar game; DIAMOND's models are for Atari games (e.g. --game Breakout)")
    sd = read_diamond_checkpoint(path)
    shapes = infer_shapes(sd)
    recipe = diamond_recipe(shapes, name, overrides=overrides)
    spec = make_spec(recipe.env)
    if spec.num_actions != shapes.num_actions:
        raise WmcliError(f"the checkpoint's networks have {shapes.num_actions} actions, but {name} has "
                         f"{spec.num_actions}; pass the game it was trained on (--game)")
    wm_path, agent_path = out_dir / "wm.pt", out_dir / "agent.pt"
    if not overwrite and (wm_path.exists() or agent_path.exists()):
        raise WmcliError(f"{out_dir} already holds wm.pt or agent.pt; pass another -o or --overwrite")
    if out_dir.exists() and not out_dir.is_dir():
        raise WmcliError(f"{out_dir} is a file; -o takes a folder to write wm.pt and agent.pt into")

    denoiser = Denoiser(recipe.denoiser, spec.num_actions)
    rew_end = RewEndModel(recipe.reward_end, spec.num_actions, spec.frame_shape[0])
    ac = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    models = {
        "denoiser": convert_state(denoiser, sd, "denoiser.inner_model.", denoiser_names(shapes.unet["depths"]),
                                  "denoiser", keep=("alphas_cumprod",)),
        "rew_end": convert_state(rew_end, sd, "rew_end_model.", rew_end_names(shapes.reward_end["depths"]),
                                 "reward/end model"),
        "actor_critic": convert_state(ac, sd, "actor_critic.", actor_critic_names(len(shapes.actor_critic["channels"])),
                                      "actor-critic"),
    }
    source = {"from": "DIAMOND", "file": str(path), "sha256": file_sha256(path)}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(wm_path, {"kind": "world_model", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                              "store": None, "val_metrics": {}, "imported": source,
                              "models": {"denoiser": models["denoiser"], "rew_end": models["rew_end"]}})
    save_checkpoint(agent_path, {"kind": "agent", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                                 "world_model": {"path": str(wm_path), "step": 0}, "store": None, "imported": source,
                                 "models": {"actor_critic": models["actor_critic"]}})
    params = {k: sum(t.numel() for t in v.values()) for k, v in models.items()}
    return {"world_model": str(wm_path), "agent": str(agent_path), "game": name, "num_actions": spec.num_actions,
            "frame_size": shapes.frame_size, "parameters": params, "source": source,
            "recipe": {"denoiser.unet.channels": shapes.unet["channels"], "denoiser.unet.depths": shapes.unet["depths"],
                       "reward_end.channels": shapes.reward_end["channels"],
                       "actor_critic.channels": shapes.actor_critic["channels"]}}
