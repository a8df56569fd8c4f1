"""Scores: a policy played in the real game under the test protocol, on the human-normalized scale.

`evaluate_policy` plays exactly `episodes` whole games. Test protocol: a lost life is not an
end (only game over, or the env's cap of `max_episode_frames`, ends an episode), with the
env's no-op starts and no sticky actions, as DIAMOND and IRIS evaluate. The counted episodes are
the first `episodes` to *start*, in start order, each played to its end, so short games are not
favoured over long ones, and the same seed and number of envs give the same returns.

`HUMAN_RANDOM` holds the random and human scores of the 26 Atari 100k games (and
SpaceInvaders), with DIAMOND's mean returns beside them; `human_normalized` puts a return on
that scale. `evaluate_checkpoint` is `wmcli eval`: it settles from the checkpoint's kind whether
an agent plays its game or a world model is measured on a store's held-out episodes
(wmcli.world.measure), and `result_rows` lays either result out as a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from wmcli.base.atomic import check_writable
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Every, Progress
from wmcli.base.seeds import draw_seed
from wmcli.base.signals import stop_on_sigint
from wmcli.data.buffer import EpisodeBuffer
from wmcli.data.collect import EpisodeBuilder
from wmcli.data.play import VectorPlayer
from wmcli.data.policy import Policy, RandomPolicy
from wmcli.data.spec import EnvSpec
from wmcli.data.store import Store
from wmcli.outputs.video import write_frames
from wmcli.world.agent import game_and_policy
from wmcli.world.measure import evaluate_world_model
from wmcli.world.world_model import load_world_model


class Scores(NamedTuple):
    random: float  # uniformly random policy
    human: float  # human tester
    diamond: float | None  # DIAMOND's return, mean of its 5 seeds (None: not in its table)


# Random and human scores: the standard table as published with IRIS (eloialonso/iris,
# results/data/RANDOM.json and HUMAN.json). DIAMOND: mean of the 5 seeds in eloialonso/diamond,
# results/data/DIAMOND.json (mean HNS 1.459 over the 26 games). SpaceInvaders is not one of the
# 26; its random/human scores are the usual ones (148.0 / 1668.7). Keys are wmcli's canonical
# game names (EnvSpec.name). See docs/eval.md.
HUMAN_RANDOM: dict[str, Scores] = {
    "Alien": Scores(227.8, 7127.7, 744.1),
    "Amidar": Scores(5.8, 1719.5, 225.8),
    "Assault": Scores(222.4, 742.0, 1526.4),
    "Asterix": Scores(210.0, 8503.3, 3698.5),
    "BankHeist": Scores(14.2, 753.1, 19.7),
    "BattleZone": Scores(2360.0, 37187.5, 4702.0),
    "Boxing": Scores(0.1, 12.1, 86.9),
    "Breakout": Scores(1.7, 30.5, 132.5),
    "ChopperCommand": Scores(811.0, 7387.8, 1369.8),
    "CrazyClimber": Scores(10780.5, 35829.4, 99167.8),
    "DemonAttack": Scores(152.1, 1971.0, 288.1),
    "Freeway": Scores(0.0, 29.6, 33.3),
    "Frostbite": Scores(65.2, 4334.7, 274.1),
    "Gopher": Scores(257.6, 2412.5, 5897.9),
    "Hero": Scores(1027.0, 30826.4, 5621.8),
    "Jamesbond": Scores(29.0, 302.8, 427.4),
    "Kangaroo": Scores(52.0, 3035.0, 5382.2),
    "Krull": Scores(1598.0, 2665.5, 8610.1),
    "KungFuMaster": Scores(258.5, 22736.3, 18713.6),
    "MsPacman": Scores(307.3, 6951.6, 1958.2),
    "Pong": Scores(-20.7, 14.6, 20.4),
    "PrivateEye": Scores(24.9, 69571.3, 114.3),
    "Qbert": Scores(163.9, 13455.0, 4499.3),
    "RoadRunner": Scores(11.5, 7845.0, 20673.2),
    "Seaquest": Scores(68.4, 42054.7, 551.2),
    "UpNDown": Scores(533.4, 11693.2, 3856.3),
    "SpaceInvaders": Scores(148.0, 1668.7, None),
}
ATARI_100K = tuple(g for g in HUMAN_RANDOM if g != "SpaceInvaders")

VIDEO_MAX_FRAMES = 1800
"""--video keeps the first episode's first 1800 frames (2 minutes of play at 15 steps/s)."""


def human_normalized(game: str, ret: float) -> float | None:
    """Human-normalized score (R - random) / (human - random); None for a game not in the table."""
    s = HUMAN_RANDOM.get(game)
    return None if s is None else (ret - s.random) / (s.human - s.random)


class _Run:
    """One counted episode under way: its index in start order, return, length and lives."""

    def __init__(self, index: int, lives: int):
        self.index, self.lives = index, lives
        self.ret, self.length, self.life_losses = 0.0, 0, 0

    def add(self, rew: float, lives: int) -> None:
        self.ret += rew
        self.length += 1
        self.life_losses += int(lives < self.lives)
        self.lives = lives

    def result(self, game: str, truncated: bool) -> dict:
        return {"return": self.ret, "length": self.length, "truncated": truncated,
                "life_losses": self.life_losses, "hns": human_normalized(game, self.ret)}


def evaluate_policy(
    spec: EnvSpec,
    policy: Policy | None = None,
    episodes: int = 100,
    num_envs: int = 4,
    seed: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    video_path: str | Path | None = None,
    max_steps: int | None = None,
    store: Store | None = None,
) -> dict:
    """Play `episodes` whole episodes of `policy` (None: uniformly random, drawing from the seed)
    in `num_envs` envs seeded seed + i, under the test protocol.

    store: write each counted episode there as it ends (DIAMOND's test dataset, on which
    `wmcli run` validates the world model); their frames are then held in RAM until they end.

    max_steps: a budget of agent steps over all counted episodes; once spent, the episodes under
    way end there, marked truncated, and no more start. A first Ctrl-C stops after the current
    step and reports the episodes finished so far (`interrupted`).
    """
    if episodes < 1:
        raise WmcliError(f"--episodes must be at least 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise WmcliError(f"max_steps must be at least 1, got {max_steps}")
    if video_path is not None:
        if Path(video_path).suffix.lower() not in (".mp4", ".gif"):
            raise WmcliError(f"cannot write the video to {video_path}: use a .mp4 or .gif file")
        check_writable(video_path)
    seed = draw_seed(seed)
    if policy is None:
        policy = RandomPolicy(spec.num_actions, np.random.default_rng(seed))
    K = min(num_envs, episodes)  # more envs than episodes would only idle
    finished: dict[int, dict] = {}  # start index -> per-episode result
    frames: list[np.ndarray] = []  # the first episode's, for --video
    t0 = time.perf_counter()
    every = Every(0.5)
    steps, played = 0, 0  # agent steps in counted episodes / in all envs

    def report() -> None:
        seconds = time.perf_counter() - t0
        on_progress(Progress(f"eval {spec.name}", len(finished), episodes, "episodes",
                             {"steps/s": steps / max(seconds, 1e-9), "mean return": _mean_return(finished)}, seconds=seconds))

    writer = store.writer({"seed": seed, "policy": policy.name, "collector": "wmcli eval"}) if store else None
    builders: list[EpisodeBuilder | None] = [None] * K  # the counted episodes' steps, for `store`

    def land(i: int, cut: bool = False) -> None:
        if writer is not None and builders[i] is not None and len(builders[i]) > 0:
            writer.write(builders[i].episode(cut=cut))
        builders[i] = None

    with stop_on_sigint() as stop:
        player = VectorPlayer(spec, K, policy, seed)
        try:
            # Env i plays counted episode runs[i], or idles (None) once `episodes` have started.
            runs: list[_Run | None] = [_Run(i, int(player.lives[i])) for i in range(K)]
            if writer is not None:
                builders = [EpisodeBuilder(player.obs[i], int(player.lives[i])) for i in range(K)]
            started = K
            if video_path is not None:
                frames.append(player.obs[0].copy())
            budget_spent = False
            while (any(r is not None for r in runs) or (started < episodes and not budget_spent)) \
                    and not stop.is_set():
                played += K
                for s in player.step():
                    i = s.env
                    if s.restarted:
                        if started < episodes and not budget_spent:  # counted in start order
                            runs[i] = _Run(started, s.lives)
                            started += 1
                            if writer is not None:
                                builders[i] = EpisodeBuilder(s.obs, s.lives)
                        continue
                    run = runs[i]
                    if run is None or budget_spent:  # idle (enough episodes started), or cut
                        continue
                    run.add(s.rew, s.lives)
                    if builders[i] is not None:
                        builders[i].add(s.act, s.obs, s.rew, s.term, s.trunc, s.lives)
                    steps += 1
                    if run.index == 0 and video_path is not None and len(frames) < VIDEO_MAX_FRAMES:
                        frames.append(s.obs.copy())
                    if s.term or s.trunc:  # game over, or the env's frame cap
                        finished[run.index] = run.result(spec.name, truncated=not s.term)
                        runs[i] = None
                        land(i)
                    if max_steps is not None and steps >= max_steps:
                        budget_spent = True
                if budget_spent:  # cut the episodes under way at this step
                    for i, run in enumerate(runs):
                        if run is not None:
                            finished[run.index] = run.result(spec.name, truncated=True)
                            runs[i] = None
                            land(i, cut=True)
                if on_progress and every():
                    report()
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: report what finished
        finally:
            interrupted = stop.is_set()
            player.close()
    elapsed = time.perf_counter() - t0
    if on_progress:
        report()
    video = None
    if video_path is not None and len(frames) > 1:
        video = str(write_frames(video_path, np.stack(frames)))
    return summarize_returns(spec, [finished[k] for k in sorted(finished)]) | {
        "kind": "policy",
        "policy": policy.name,
        "seed": seed,
        "num_envs": K,
        "episodes_requested": episodes,
        "protocol": spec.config.protocol(),
        "env_steps": played,
        "seconds": elapsed,
        "env_steps_per_s": played / max(elapsed, 1e-9),
        "video": video,
        "interrupted": interrupted,
    }


def summarize_returns(spec: EnvSpec, per_episode: list[dict]) -> dict:
    """Mean, std (population), min and max return, mean length and HNS of the mean."""
    rets = np.array([e["return"] for e in per_episode], dtype=np.float64)
    ref = HUMAN_RANDOM.get(spec.name)
    mean = float(rets.mean()) if len(rets) else None
    return {
        "game": spec.name,
        "episodes": len(per_episode),
        "return_mean": mean,
        "return_std": float(rets.std()) if len(rets) else None,
        "return_min": float(rets.min()) if len(rets) else None,
        "return_max": float(rets.max()) if len(rets) else None,
        "length_mean": float(np.mean([e["length"] for e in per_episode])) if per_episode else None,
        "truncated_episodes": sum(e["truncated"] for e in per_episode),
        "hns": human_normalized(spec.name, mean) if mean is not None else None,
        "reference": ref._asdict() if ref else None,
        "per_episode": per_episode,
    }


def _mean_return(finished: dict[int, dict]) -> float | None:
    return float(np.mean([e["return"] for e in finished.values()])) if finished else None


# --------------------------------------------------------------------------------------------
# Summaries as (label, value) rows, for the CLI's tables.


def _fmt(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def policy_rows(r: dict) -> list[tuple[str, str]]:
    """The result of `evaluate_policy` as table rows."""
    rows = [
        ("game", r["game"]),
        ("policy", r["policy"]),
        ("episodes", f"{r['episodes']} of {r['episodes_requested']} ({r['truncated_episodes']} truncated)"
                     + ("  [interrupted]" if r["interrupted"] else "")),
        ("return", f"mean {_fmt(r['return_mean'])} ± {_fmt(r['return_std'])}  "
                   f"min {_fmt(r['return_min'], 1)}  max {_fmt(r['return_max'], 1)}"),
        ("episode length", f"{_fmt(r['length_mean'], 1)} steps"),
    ]
    ref = r["reference"]
    if ref is not None:
        diamond = f"  DIAMOND {ref['diamond']}" if ref["diamond"] is not None else ""
        rows.append(("human-normalized", f"{_fmt(r['hns'], 3)}  (random {ref['random']}, human {ref['human']}{diamond})"))
    else:
        rows.append(("human-normalized", "- (no human/random scores for this game)"))
    rows += [
        ("seed / envs", f"{r['seed']} / {r['num_envs']}"),
        ("speed", f"{r['env_steps_per_s']:.0f} steps/s ({r['seconds']:.1f} s)"),
    ]
    if r["video"]:
        rows.append(("video", r["video"]))
    return rows


def world_model_rows(r: dict) -> list[tuple[str, str]]:
    """The result of `wmcli.world.world_model.evaluate_world_model` as table rows."""

    def prf(m: dict) -> str:
        return f"P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  (support {m['support']})"

    end = "end (game over or life lost)" if r["end_counts_life_loss"] else "end (game over)"
    return [
        ("held-out", f"{r['held_out_episodes']} episodes, {r['held_out_frames']} frames"),
        ("denoising loss", f"{r['loss_denoiser']:.4f}  ({r['segments']} segments)"),
        ("PSNR 1 step", f"{r['psnr_1step']:.2f} dB  (copy-last {r['psnr_1step_copy_last']:.2f} dB)"),
        (f"PSNR {r['horizon']}-step rollout", f"{r['psnr_rollout']:.2f} dB  (copy-last {r['psnr_rollout_copy_last']:.2f} dB)"),
        ("reward (nonzero)", prf(r["reward"])),
        (end, prf(r["end"])),
        ("speed", f"{r['imagined_frames_per_s']:.1f} imagined frames/s"),
    ]


# --------------------------------------------------------------------------------------------
# `wmcli eval`: an agent in its game, or a world model on held-out episodes.


def measure_world_model(checkpoint: str | Path, store_path: str | Path, segments: int = 128, horizon: int = 15,
                        seed: int = 0, device: str = "cpu") -> dict:
    """A world-model checkpoint on the held-out episodes of a store (the validation split its
    recipe defines), by wmcli.world.measure."""
    wm = load_world_model(checkpoint, device, hint="drop --store to play it in its game (--store is for "
                                                   "world-model checkpoints)")
    store = Store.open(store_path)
    store.spec.check_fits(wm.spec, f"store {store_path}", f"world model {checkpoint}", "pass a store of its game",
                          same_game=True)
    episodes = store.split(wm.recipe.train_wm.val_fraction)[1]  # the recorded split, else by hash
    if not episodes:
        why = ("its recorded split (held-out.json) holds none out: record another with `wmcli store split "
               f"{store_path} --held-out 0.1 --overwrite`" if store.held_out() is not None else "it needs 2 or more episodes")
        raise WmcliError(f"store {store_path} has no held-out episode ({why})")
    result = evaluate_world_model(wm, EpisodeBuffer(store, episodes=episodes), segments=segments, horizon=horizon,
                                  seed=seed, device=device)
    return {"kind": "world_model", "checkpoint": str(checkpoint), "store": str(store_path), "game": wm.spec.name,
            **result}


def evaluate_checkpoint(checkpoint: str | Path | None = None, store: str | Path | None = None,
                        env: str | None = None, policy: str = "random", episodes: int = 100, num_envs: int = 4,
                        seed: int | None = None, mode: int | None = None, difficulty: int | None = None,
                        epsilon: float = 0.0, greedy: bool = False, video: str | Path | None = None,
                        segments: int = 128, horizon: int = 15,
                        on_progress: Callable[[Progress], None] | None = None) -> dict:
    """`wmcli eval`. With `store`: the world model of `checkpoint` measured on the store's
    held-out episodes (seed default 0). Otherwise a policy plays whole games: the agent of
    `checkpoint` (or `policy`: "random" or an agent checkpoint) in `env` or its own game."""
    if store is not None:
        if checkpoint is None:
            raise WmcliError("--store measures a world model: pass its checkpoint (wmcli eval wm.pt --store PATH)")
        return measure_world_model(checkpoint, store, segments, horizon, 0 if seed is None else seed)
    if checkpoint is not None and policy != "random":
        raise WmcliError("give the agent once: as CHECKPOINT or as --policy, not both")
    if checkpoint is not None:
        if not Path(checkpoint).exists():
            raise WmcliError(f"checkpoint {checkpoint} not found; pass the file that `wmcli train-agent -o` wrote "
                             f"(or --policy random --env GAME for the baseline)")
        policy = str(checkpoint)
    play = game_and_policy(env, policy, seed, epsilon, greedy, dict(mode=mode, difficulty=difficulty))
    result = evaluate_policy(play.spec, play.policy, episodes, num_envs=num_envs, seed=play.seed,
                             on_progress=on_progress, video_path=video)
    result["greedy"] = greedy and policy != "random"
    return result


def result_rows(r: dict) -> tuple[str, list[tuple[str, str]]]:
    """The title and (label, value) rows of an `evaluate_checkpoint` result."""
    if r["kind"] == "world_model":
        return f"world model {r['checkpoint']} on {r['store']}", world_model_rows(r)
    return f"eval {r['game']}", policy_rows(r)
