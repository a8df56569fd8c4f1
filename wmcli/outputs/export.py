"""`wmcli export`: a checkpoint as a Hugging Face model folder, with a model card.

The folder itself (model.safetensors, config.json) is wmcli.base.model_folder's; this module
writes the card, README.md: Hugging Face front matter (library and tags), then what the model is
(game, kind, denoiser, parameter counts, training steps, the recipe values that shape it), the
env protocol it was trained under, how to use it with wmcli, and what was measured of it. Every
number measured comes from files wmcli wrote: the checkpoint's last held-out validation (a world
model), the run folder's evaluation of this very agent (metrics.jsonl, state.json); a number
that is not there is left out, never guessed. Nothing here touches the network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from wmcli import __version__
from wmcli.base.checkpoint import read_checkpoint
from wmcli.base.model_folder import write_model_folder
from wmcli.outputs.plot import read_jsonl

GROUP_NAMES = {"denoiser": "denoiser", "rew_end": "reward/end model", "actor_critic": "actor-critic"}
DENOISER_KINDS = {
    "frame": "DIAMOND's next-frame denoiser: a U-Net that denoises the next frame from the last frames and actions",
    "video": "the video denoiser: a space-time U-Net over a window of frames at per-frame noise levels "
             "(wmcli docs/video_model.md)",
}
PROTOCOL_NAMES = {"frame_size": "frame size", "frame_skip": "frame skip", "noop_max": "no-op starts (max)",
                  "sticky_prob": "sticky-action probability", "max_episode_frames": "episode cap (raw frames)",
                  "mode": "game mode", "difficulty": "difficulty", "max_pool": "max-pooling", "resize": "resize",
                  "action_set": "action set", "rewards": "rewards"}


def export(ckpt_path: str | Path, out_dir: str | Path, overwrite: bool = False) -> dict:
    """Write the checkpoint at `ckpt_path` (a .pt file, or a model folder) as a model folder at
    `out_dir` (model.safetensors, config.json, README.md); returns a summary."""
    t0 = time.perf_counter()
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    ckpt = read_checkpoint(ckpt_path, "a world-model or agent checkpoint (the .pt file training or `wmcli import` wrote)")
    params = parameter_counts(ckpt)
    results = measured_results(ckpt_path, ckpt)
    card = model_card(ckpt, out_dir.name, params, results)
    sizes = write_model_folder(ckpt, out_dir, card, overwrite=overwrite)
    return {"checkpoint": str(ckpt_path), "folder": str(out_dir), "kind": ckpt["kind"], "game": ckpt["env"]["name"],
            "step": ckpt.get("step"), "parameters": params, "files": sizes, "bytes": sum(sizes.values()),
            "results": results, "seconds": time.perf_counter() - t0,
            "upload": f"hf upload USER/{out_dir.name} {out_dir} ."}


def parameter_counts(ckpt: dict) -> dict[str, int]:
    """Values in each network's weights (a state dict's tensors, buffers included): {"denoiser": n, ...}."""
    return {name: sum(t.numel() for t in state.values()) for name, state in ckpt.get("models", {}).items()}


# --------------------------------------------------------------------------------------------
# What was measured: only what files wmcli wrote hold.


def measured_results(ckpt_path: Path, ckpt: dict) -> dict:
    """The measured results of a checkpoint that wmcli's files hold: a world model's last held-out
    validation (from the checkpoint; its step from the metrics file beside it, when that has it),
    an agent's evaluation in the real game and the random policy's (from the run folder it sits
    in, when one of its evaluations was of this very agent). Absent numbers are left out."""
    out: dict = {}
    val = ckpt.get("val_metrics") or {}
    if ckpt["kind"] == "world_model" and val.get("val/psnr_1step") is not None:
        wm = {k.removeprefix("val/"): v for k, v in val.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics = ckpt_path.with_suffix(".metrics.jsonl")
        if metrics.is_file():  # the line of that validation gives its training step
            same = [r for r in read_jsonl(metrics) if r.get("val/psnr_1step") == val["val/psnr_1step"]]
            if same and "step" in same[-1]:
                wm["step"] = same[-1]["step"]
        out["held_out"] = wm
    run_dir = ckpt_path.parent
    if ckpt["kind"] == "agent" and (run_dir / "metrics.jsonl").is_file() and (run_dir / "state.json").is_file():
        evals = [r for r in read_jsonl(run_dir / "metrics.jsonl")
                 if isinstance(r.get("eval"), dict) and r["eval"].get("return_mean") is not None
                 and r.get("agent_steps") == ckpt.get("step")]
        if evals:
            last = evals[-1]
            out["evaluation"] = {**{k: v for k, v in last["eval"].items() if v is not None},
                                 **{k: last[k] for k in ("epoch", "env_steps") if k in last}}
            try:
                random = json.loads((run_dir / "state.json").read_text()).get("random_return")
            except (OSError, ValueError):
                random = None
            if isinstance(random, dict) and random.get("mean") is not None:
                out["random"] = {k: v for k, v in random.items() if v is not None}
    return out


# --------------------------------------------------------------------------------------------
# The model card.


def model_card(ckpt: dict, folder_name: str, params: dict[str, int], results: dict) -> str:
    """README.md of the folder: Hugging Face front matter, then the model, protocol, use, results."""
    env, recipe = ckpt["env"], ckpt.get("recipe", {})
    world = ckpt["kind"] == "world_model"
    suite = {"minatar": "minatar", "ale": "atari"}.get(env.get("kind", "ale"), "recorded-data")
    tags = ["world-model", "diffusion", suite, "reinforcement-learning", "diamond"] + ([] if world else ["actor-critic"])
    front = yaml.safe_dump({"library_name": "wmcli", "tags": tags}, sort_keys=False)
    game = env["name"]
    shape = "x".join(map(str, env.get("frame_shape", [])))
    what = "world model" if world else "agent"
    lines = [f"---\n{front}---", "", f"# A wmcli {what} of {game}", ""]
    if world:
        lines.append(f"A diffusion world model of {_suite_name(suite)} {game.removeprefix('minatar:')} in the line of "
                     f"DIAMOND (Alonso et al., 2024): it dreams the game's next {shape} frame from the last ones and "
                     f"the action taken, and predicts the reward's sign and the episode's end. Written by wmcli "
                     f"{ckpt.get('wmcli_version', '?')}, exported by `wmcli export` ({__version__}).")
    else:
        lines.append(f"An actor-critic agent (DIAMOND's: convolutional encoder, LSTM, policy and value heads) for "
                     f"{_suite_name(suite)} {game.removeprefix('minatar:')}, trained in the dreams of a diffusion "
                     f"world model. Written by wmcli {ckpt.get('wmcli_version', '?')}, exported by `wmcli export` "
                     f"({__version__}).")
    lines += ["", "## The model", "", "| | |", "|---|---|", f"| kind | {ckpt['kind']} |",
              f"| game | {game} ({env.get('num_actions', '?')} actions: {', '.join(env.get('action_meanings', []))}) |",
              f"| frames | {shape} RGB |"]
    den = recipe.get("denoiser", {})
    if world and den:
        lines.append(f"| denoiser | {den.get('kind', 'frame')} ({DENOISER_KINDS.get(den.get('kind', 'frame'), '')}); "
                     f"{str(den.get('formulation', 'edm')).upper()}, {den.get('num_context', '?')} context frames |")
    for name, n in params.items():
        lines.append(f"| parameters, {GROUP_NAMES.get(name, name)} | {n:,} |")
    if isinstance(ckpt.get("step"), int):
        lines.append(f"| training steps | {ckpt['step']:,} |")
    lines += [f"| {k} | {v} |" for k, v in _provenance(ckpt)]
    lines += ["", "The recipe values that shape it (config.json holds the whole resolved recipe):", ""]
    lines += [f"- `{k}`: {v}" for k, v in _recipe_values(recipe, world)]
    lines += ["", "## Environment protocol", "",
              (f"Frames and actions as wmcli's {_suite_name(suite)} env makes them; a policy or a real start must "
               f"follow the same protocol:" if suite != "recorded-data" else
               "Frames and actions as `wmcli store import` brought them in from recorded data (no emulator behind "
               "them: dreams start from real frames of a store, `--store`):"), ""]
    lines += [f"- {PROTOCOL_NAMES.get(k, k)}: {v}" for k, v in env.get("protocol", {}).items() if v is not None]
    lines += ["", "## Measured results", ""]
    lines += _result_lines(results) or ["No measured results came with the checkpoint (no held-out validation or "
                                        "real-game evaluation of it was recorded)."]
    lines += ["", "## Use it with wmcli", "", "Download the folder (e.g. `hf download USER/NAME --local-dir "
              f"{folder_name}`), then pass the folder wherever wmcli takes a checkpoint:", "", "```"]
    if world:
        uses = [(f"wmcli imagine {folder_name} -o dream.mp4", "a dream from a fresh reset of the game"),
                (f"wmcli play {folder_name}", "play the dream (pip install 'wmcli[play]')"),
                (f"wmcli train-agent {folder_name} --store STORE", f"train an agent in it (a store of {game})")]
    else:
        uses = [(f"wmcli eval {folder_name} --episodes 10", "the agent in the real game"),
                (f"wmcli collect --policy {folder_name} --env-steps 1000", "its episodes into a store"),
                (f"wmcli play WORLD_MODEL --agent {folder_name}", "it plays a world model's dream")]
    width = max(len(cmd) for cmd, _ in uses) + 2
    lines += [f"{cmd.ljust(width)}# {why}" for cmd, why in uses]
    lines += ["```", "", "## Files", "",
              "- `model.safetensors`: the weights, named `<network>.<parameter>` (`denoiser.…`, `rew_end.…`, "
              "`actor_critic.…`); any safetensors reader opens it.",
              "- `config.json`: everything else the checkpoint holds (kind, format and wmcli versions, the resolved "
              "recipe, the env spec, counters) and, under `model_folder`, which tensors go back where.",
              "",
              "Loading runs no code from the files: wmcli reads them with `json` and `safetensors` only. The "
              "optimizer and RNG states of the training are not included: a training cannot resume from this "
              "folder.", "",
              "## Sharing", "",
              f"Push the folder with the Hugging Face CLI of the `huggingface_hub` package: `hf upload USER/NAME "
              f"{folder_name} .` (older releases: `huggingface-cli upload USER/NAME {folder_name} .`). wmcli itself never "
              f"uses the network."]
    return "\n".join(lines) + "\n"


def _suite_name(suite: str) -> str:
    """How the card names where the game's frames come from (a store of recorded data has no emulator)."""
    return {"minatar": "MinAtar", "atari": "Atari (ALE)"}.get(suite, "recorded data of")


def _provenance(ckpt: dict) -> list[tuple[str, str]]:
    """Where the model came from beyond its own training: DIAMOND's weights, a distillation."""
    rows = []
    if isinstance(ckpt.get("imported"), dict):
        imp = ckpt["imported"]
        rows.append(("imported from", f"{imp.get('from', '?')} checkpoint (SHA-256 {str(imp.get('sha256', '?'))[:16]}…)"))
    if isinstance(ckpt.get("distilled"), dict):
        d = ckpt["distilled"]
        rows.append(("distilled", f"a {d.get('student_steps', '?')}-step student of a world model at step "
                                  f"{d.get('teacher_step', '?')} ({d.get('method', 'sampler distillation').split(':')[0]})"))
    return rows


def _recipe_values(recipe: dict, world: bool) -> list[tuple[str, str]]:
    """The recipe values that shape the networks and how they are used, as (dotted key, value)."""
    keys = (["denoiser.unet.channels", "denoiser.unet.depths", "denoiser.unet.attn_depths", "denoiser.unet.cond_channels",
             "denoiser.num_context", "denoiser.sigma_data", "sampler.name", "sampler.num_steps", "reward_end.channels",
             "reward_end.lstm_dim", "train_wm.steps", "train_wm.batch_size", "train_wm.lr"] if world else
            ["actor_critic.channels", "actor_critic.lstm_dim", "train_agent.steps", "train_agent.horizon",
             "train_agent.batch_size", "train_agent.lr", "actor_critic.gamma", "actor_critic.lambda_"])
    if world and recipe.get("denoiser", {}).get("kind") == "video":
        keys += ["denoiser.video.window", "sampler.video_schedule", "sampler.evals_per_frame"]
    out = []
    for key in keys:
        value = recipe
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out.append((key, json.dumps(value)))
    return out


def _result_lines(results: dict) -> list[str]:
    lines = []
    held = results.get("held_out")
    if held:
        at = f" at training step {held['step']:,}" if "step" in held else ""
        line = f"- One-step PSNR on held-out episodes{at}: {held['psnr_1step']:.2f} dB"
        if "psnr_copy_last" in held:
            line += f" (copying the last frame instead: {held['psnr_copy_last']:.2f} dB)"
        lines.append(line)
        if "psnr_vs_teacher" in held:
            lines.append(f"- PSNR against its teacher's sample: {held['psnr_vs_teacher']:.2f} dB")
        f1 = [f"{name} F1 {held[k]:.2f}" for k, name in (("reward_f1", "reward-sign"), ("end_f1", "end")) if k in held]
        if f1:
            lines.append(f"- Reward/end model on held-out segments: {', '.join(f1)}")
    ev = results.get("evaluation")
    if ev:
        sem = f" ± {ev['return_sem']:.2f} (standard error)" if ev.get("return_sem") is not None else ""
        when = ", ".join(x for x in (f"epoch {ev['epoch']} of its `wmcli run`" if "epoch" in ev else "",
                                     f"{ev['env_steps']:,} real steps played" if "env_steps" in ev else "") if x)
        lines.append(f"- Mean return in the real game (test protocol: whole games, no life-loss ends): "
                     f"{ev['return_mean']:.2f}{sem} over {ev.get('episodes', '?')} episodes" + (f" ({when})" if when else ""))
        if ev.get("hns") is not None:
            lines.append(f"- Human-normalized score: {ev['hns']:.3f}")
    rnd = results.get("random")
    if rnd:
        sem = f" ± {rnd['sem']:.2f}" if rnd.get("sem") is not None else ""
        lines.append(f"- The random policy in the same run: {rnd['mean']:.2f}{sem} over {rnd.get('episodes', '?')} episodes")
    return lines
