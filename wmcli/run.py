"""The whole DIAMOND loop in one run folder, resumable at any moment.

    DIR/recipe.yaml           the resolved recipe (a resumed run reads it back)
    DIR/store/                every real episode played (store/partial/: the ones under way)
    DIR/test_store/           the episodes of the last evaluation (the world model validates on them)
    DIR/wm.pt                 the world model (+ wm.metrics.jsonl)
    DIR/wm_student.pt         with run.distill: its few-step student, where the agent trains
    DIR/agent.pt              the agent (+ agent.metrics.jsonl)
    DIR/metrics.jsonl         one line per epoch: env steps, training steps, evaluations
    DIR/state.json            the last finished epoch (written atomically)
    DIR/videos/               the first evaluation episode of each evaluation

Epoch 0 collects `run.initial_collect_steps` steps with the random policy, and more while few
rewards have been seen (DIAMOND's rule: RunConfig.initial_collect_min_rewards). Each epoch e >= 1
then collects `run.collect_steps` steps with the current agent (epsilon-greedy; from epoch 2
on, epoch 1 trains on the initial data), trains the world model and the agent up to their
cumulative step targets (first epoch: the `train_wm.steps` / `train_agent.steps` of the recipe,
then `run.wm_steps` / `run.agent_steps` more per epoch) and evaluates every `run.eval_every`
epochs. With `run.distill`, each world-model training is followed by a distillation into
DIR/wm_student.pt (`distill.steps`, then `run.distill_steps` more per epoch, the student going on
from where it was, now from the newer teacher), and the agent trains in the student's faster
dreams (docs/distill.md). After each collection the episodes still under way are written to store/partial/ (each
replacing its earlier version), so training reads them before they end, as DIAMOND's does; the
collecting agent is one policy whose weights are updated in place each epoch, so its LSTM
memory of those games carries over. Evaluation episodes go to test_store/ (cleared at each
evaluation), and the world model validates on them, training on every episode of store/; before
the first evaluation it has nothing to validate on and says so (`val/skipped`).

Every part is idempotent: a killed run resumed with `wmcli run --resume DIR` tops the store up
to the epoch's step target (finished episodes are never lost; of the ones under way at the kill,
the steps written at the last collection's end are kept, sealed as cut episodes since their
games cannot go on, and the steps after it are lost and played again), resumes each training
from its last checkpoint, and goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from wmcli.base.atomic import make_dir, write_text_atomic
from wmcli.base.config import Recipe, RunConfig
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Progress, count
from wmcli.base.recipe import load_recipe, recipe_from_dict
from wmcli.base.runtime import Runtime
from wmcli.data.collect import Collector
from wmcli.data.env import make_spec, resolve_game
from wmcli.data.store import Store
from wmcli.outputs.evaluate import evaluate_policy
from wmcli.training.distill import distill_world_model
from wmcli.training.loop import MetricsLog
from wmcli.training.train_agent import train_agent
from wmcli.training.train_wm import train_world_model
from wmcli.world.agent import AgentPolicy, load_agent


def default_run_dir(recipe: str, game: str) -> Path:
    """Where a run goes when no folder is given: runs/<game>-<recipe name>."""
    return Path("runs") / f"{resolve_game(game)[1].replace(':', '-')}-{Path(recipe).stem}"


@dataclass
class Event:
    """News of a run: what phase of which epoch, and a one-line description. Phases: "plan" (once,
    up front), "collect", "train-wm", "distill", "train-agent", "eval" (each starting), "result" (what a
    phase gave: held-out PSNR, evaluation return), "estimate" (time left, from measured rates)."""

    epoch: int
    phase: str
    text: str


def num_epochs(cfg: RunConfig, initial: int) -> int:
    """Epochs of the schedule after an initial collection of `initial` real steps."""
    if cfg.total_real_steps is None:
        return cfg.epochs
    return (cfg.total_real_steps - initial) // cfg.collect_steps + cfg.final_epochs


def collect_target(cfg: RunConfig, epoch: int, initial: int) -> int:
    """Real steps played by the end of `epoch`'s collection (epoch 0: the initial collection).
    With total_real_steps, DIAMOND's rule: every epoch from 1 collects collect_steps until the
    budget is reached, whatever the initial collection took; else epochs 2..collect_epochs do."""
    if epoch == 0:
        return initial
    if cfg.total_real_steps is None:
        return initial + max(0, min(epoch, cfg.collect_epochs) - 1) * cfg.collect_steps
    return min(initial + epoch * cfg.collect_steps, cfg.total_real_steps)


def plan(recipe: Recipe, initial: int | None = None) -> dict:
    """What a run of `recipe` will do in all: epochs, real steps, training steps, evaluations.
    `initial`: what the initial collection took, once known (before: its planned minimum)."""
    cfg = recipe.run
    initial = cfg.initial_collect_steps if initial is None else initial
    epochs = num_epochs(cfg, initial)
    trained = max(0, epochs - 1)
    evals = sum(1 for e in range(1, epochs + 1) if e == epochs or e % cfg.eval_every == 0)
    return {
        "epochs": epochs,
        "real_steps": collect_target(cfg, epochs, initial) if epochs else initial,
        "wm_steps": recipe.train_wm.steps + trained * cfg.wm_steps if epochs else 0,
        "agent_steps": recipe.train_agent.steps + trained * cfg.agent_steps if epochs else 0,
        "distill_steps": recipe.distill.steps + trained * cfg.distill_steps if epochs and cfg.distill else 0,
        "evaluations": evals,
        "eval_episodes": max(0, evals - 1) * cfg.eval_episodes + (cfg.final_eval_episodes if epochs else 0),
    }


def mean_and_sem(returns: list[float]) -> dict | None:
    """Mean return, its standard error and the count (None without episodes)."""
    if not returns:
        return None
    r = np.asarray(returns, dtype=np.float64)
    sem = float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else None
    return {"mean": float(r.mean()), "sem": sem, "episodes": len(r)}


def compare_to_random(agent: dict | None, random: dict | None) -> dict | None:
    """The agent's evaluation against the random policy's returns: the difference and whether it
    exceeds twice its standard error (beyond noise)."""
    if agent is None or random is None or agent.get("sem") is None or random.get("sem") is None:
        return None
    diff = agent["mean"] - random["mean"]
    se = float(np.hypot(agent["sem"], random["sem"]))
    return {"difference": diff, "se": se, "beats_random": bool(diff > 2 * se), "worse_than_random": bool(diff < -2 * se)}


def next_commands(run_dir: Path, store: Store | None = None, num_context: int = 4, horizon: int = 10) -> list[str]:
    """What to type next to look at a run: its curves, a dream beside the real game (on the newest
    episode long enough for `num_context` + `horizon` frames), the evaluation videos."""
    d = Path(run_dir)
    out = [f"wmcli plot {d}"]
    paths = store.episode_paths() if store is not None else []
    fits = [i for i, p in enumerate(paths) if store.episode_length(p) + 1 >= num_context + horizon]
    if fits:
        out.append(f"wmcli imagine {d / 'wm.pt'} --store {d / 'store'} --episode {fits[-1]} --compare "
                   f"--horizon {horizon} -o {d / 'compare.png'}")
    return out + [f"ls {d / 'videos'}  (each evaluation's first episode)"]


def _started(run_dir: Path) -> bool:
    """Whether a run folder holds a run that got going (an epoch finished, or episodes collected):
    a folder left by a run that failed before it started is taken again."""
    state = run_dir / "state.json"
    if not state.exists():
        return any(run_dir.iterdir())
    try:
        done = json.loads(state.read_text()).get("epoch_done", -1)
    except (OSError, ValueError):
        return True
    episodes = run_dir / "store" / "episodes"
    return done >= 0 or (episodes.is_dir() and any(p.suffix == ".h5" for p in episodes.iterdir()))


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def _store_steps(store) -> int:
    """Real steps in the store: finished episodes and the ones under way (partial/)."""
    return sum(store.episode_length(p) for p in store.training_paths())


def rare_reward_steps(rewards: np.ndarray) -> int:
    """Steps whose reward sign (-1, 0, +1) is not the most common one: the two rarer classes."""
    counts = np.bincount(np.sign(rewards).astype(np.int64) + 1, minlength=3)
    return int(counts.sum() - counts.max())


def _collected_rewards(store, collector) -> np.ndarray:
    """Every reward played so far: the store's episodes (under way ones too) and those not written yet."""
    stored = [store.read_episode(p, frames=False).rew for p in store.training_paths()]
    return np.concatenate([*stored, collector.pending_rewards]) if stored else collector.pending_rewards


def default_recipe(game: str | None, device: str = "cpu") -> str:
    """The recipe `wmcli run` uses when none is named: `minatar` for a MinAtar game (or none given:
    MinAtar Breakout), the loop that learns in under an hour on 2 CPU cores; `atari100k` for an
    Atari game on CUDA. An Atari game on a CPU has no default: DIAMOND's schedule takes days even
    on a GPU, so the user picks."""
    if game is None or resolve_game(game)[0] == "minatar":
        return "minatar"
    if device == "cuda":
        return "atari100k"
    raise WmcliError(f"no recipe fits Atari's {resolve_game(game)[1]} on a CPU by default (DIAMOND's atari100k takes days "
                     f"even on a GPU): pass --recipe atari100k to run it anyway, or --recipe tiny --set run.epochs=N for "
                     f"a CPU-sized model; `wmcli recipes` lists them")


def run_setup(recipe: str | None, overrides: list[str] = (), game: str | None = None, run_dir: Path | None = None,
              resume: bool = False, device: str = "cpu") -> tuple[Recipe | None, Path]:
    """What `wmcli run` runs where: the recipe (None when resuming: the run keeps its own; when not
    named, default_recipe) and the folder (default_run_dir when none is given)."""
    if resume:
        if run_dir is None:
            raise WmcliError("--resume needs the run folder: wmcli run --resume DIR")
        if game is not None or overrides or recipe is not None:
            raise WmcliError("a resumed run keeps its own recipe; drop --recipe/--env/--set")
        return None, Path(run_dir)
    name = recipe if recipe is not None else default_recipe(game, device)
    rec = load_recipe(name, list(overrides), game=game)
    return rec, Path(run_dir) if run_dir is not None else default_run_dir(name, rec.env.game)


def run_loop(recipe: Recipe | None, run_dir: Path, rt: Runtime, resume: bool = False,
             on_event: Callable[[Event], None] | None = None,
             on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Run (or resume) the loop of `recipe` in `run_dir`; returns the final summary. A resumed
    run reads its own recipe back (recipe None). Epoch lines go to DIR/metrics.jsonl (and to
    TensorBoard events in DIR/run.tensorboard/ when tensorboard is installed, against env steps).
    A first Ctrl-C stops after the current step of any phase, keeps what is done (episodes,
    checkpoints) and returns with `interrupted` set; `wmcli run --resume DIR` goes on from there."""
    run_dir = Path(run_dir)
    state_path, recipe_path = run_dir / "state.json", run_dir / "recipe.yaml"
    if resume:
        if not state_path.exists():
            raise WmcliError(f"nothing to resume: {run_dir} has no state.json; start it with `wmcli run --run-dir {run_dir}`")
        recipe = recipe_from_dict(yaml.safe_load(recipe_path.read_text()))
        state = json.loads(state_path.read_text())
        spec = make_spec(recipe.env)
    else:
        spec = make_spec(recipe.env)  # an unknown game or a missing package fails before the folder is made
        if run_dir.exists() and _started(run_dir):
            raise WmcliError(f"{run_dir} exists and is not empty; pass --resume to continue it, or another --run-dir")
        make_dir(run_dir)
        write_text_atomic(recipe_path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))  # before state.json
        state = {"epoch_done": -1}
        _write_json(state_path, state)
    cfg = recipe.run
    store = Store.create_or_open(run_dir / "store", spec.to_dict())
    # Episodes left under way by a killed run: their games are gone, so they are kept as cut
    # episodes (their steps were played and stay counted). Only this run writes to its store.
    store.seal_partial()
    test_store = Store.create_or_open(run_dir / "test_store", spec.to_dict())
    wm_path, agent_path, student_path = run_dir / "wm.pt", run_dir / "agent.pt", run_dir / "wm_student.pt"
    metrics = run_dir / "metrics.jsonl"
    log = MetricsLog(metrics, enabled=rt.is_main)
    say = on_event or (lambda e: None)
    whole = plan(recipe, state.get("initial_steps"))  # a resumed run knows what its initial collection took
    say(Event(state["epoch_done"] + 1, "plan",
              f"{count(whole['epochs'], 'epoch')} of {spec.name}: {whole['real_steps']:,} real steps, {whole['wm_steps']:,} "
              f"world-model" + (f", {whole['distill_steps']:,} distillation" if whole["distill_steps"] else "")
              + f" and {whole['agent_steps']:,} agent training steps, {count(whole['evaluations'], 'evaluation')} "
              f"({count(whole['eval_episodes'], 'episode')}) in {run_dir}" + (" (resumed)" if resume else "")
              + f"; on {rt.describe()}"))

    def evaluate(epoch: int, episodes: int) -> dict:
        agent = load_agent(agent_path, rt.device)
        policy = AgentPolicy(agent, np.random.default_rng([cfg.seed, 1, epoch]), device=rt.device)
        video = make_dir(run_dir / "videos") / f"eval_epoch_{epoch:04d}.mp4" if cfg.eval_video else None
        test_store.clear()  # DIAMOND's test dataset holds the last evaluation's episodes
        return evaluate_policy(spec, policy, episodes, cfg.eval_num_envs, seed=cfg.seed + 10_000 * epoch,
                               video_path=video, on_progress=on_progress, store=test_store)

    collector = Collector(spec, store, cfg.num_envs, seed=cfg.seed + 1000 * (state["epoch_done"] + 1),
                          collector_name="wmcli run")
    policy: AgentPolicy | None = None  # the collecting agent: one policy, its weights updated in place
    t0 = time.perf_counter()
    interrupted = None
    epoch, phase = state["epoch_done"] + 1, "collect"
    try:
        # The number of epochs is known once epoch 0 has collected (with total_real_steps it follows
        # from what the initial collection took): the loop asks again after every epoch.
        while epoch <= num_epochs(cfg, state.get("initial_steps", cfg.initial_collect_steps)):
            line: dict = {"epoch": epoch}
            times: dict[str, float] = {}
            # Collect up to this epoch's target: idempotent, so a resumed epoch tops up.
            phase = "collect"
            initial = state.get("initial_steps", cfg.initial_collect_steps)  # what epoch 0 collected
            epochs = num_epochs(cfg, initial)
            target = collect_target(cfg, epoch, initial)
            have = _store_steps(store) + collector.pending_steps
            if have < target:
                if epoch >= 1 and agent_path.exists():  # from epoch 2 on (or epoch 1's top-up after a resume)
                    agent = load_agent(agent_path, rt.device)
                    if policy is None:
                        policy = AgentPolicy(agent, np.random.default_rng([cfg.seed, 0, epoch]), epsilon=cfg.epsilon,
                                             temperature=cfg.actor_temperature, device=rt.device)
                        collector.set_policy(policy)
                    else:  # DIAMOND's collector: same games, same LSTM memory, newer weights
                        policy.load_weights(agent)
                say(Event(epoch, "collect", f"{target - have} steps with {collector.policy.name}"))
                collector.play(target - have, on_progress)
                if collector.interrupted:
                    raise _Interrupted
                if epoch >= 1:
                    collector.write_partial()  # the episodes under way reach this epoch's training
            if epoch == 0:
                # DIAMOND: random play goes on, collect_steps at a time, until rewards have been seen.
                have = _store_steps(store) + collector.pending_steps
                while (have < cfg.initial_collect_max_steps and
                       rare_reward_steps(_collected_rewards(store, collector)) < cfg.initial_collect_min_rewards):
                    more = min(cfg.collect_steps, cfg.initial_collect_max_steps - have)
                    say(Event(epoch, "collect", f"{more} more steps: few rewards so far"))
                    collector.play(more, on_progress)
                    if collector.interrupted:
                        raise _Interrupted
                    have += more
                # The initial collection is random play: its finished episodes are the baseline.
                state["random_return"] = mean_and_sem(collector.returns)
                collector.close()  # the random pieces end here; agent play starts in fresh games
                if state["random_return"] is not None:
                    r = state["random_return"]
                    say(Event(epoch, "result", f"random policy: mean return {_pm(r)} over {count(r['episodes'], 'episode')}"))
            line["env_steps"] = _store_steps(store) + collector.pending_steps  # played so far
            if epoch >= 1:
                phase = "train-wm"
                wm_target = recipe.train_wm.steps + (epoch - 1) * cfg.wm_steps
                say(Event(epoch, "train-wm", f"up to step {wm_target}"))
                t = time.perf_counter()
                r = train_world_model(replace(recipe, train_wm=replace(recipe.train_wm, steps=wm_target)), store.path,
                                      wm_path, rt, resume=wm_path.exists(), on_progress=on_progress,
                                      val_store=test_store.path)
                times["wm"] = (time.perf_counter() - t) / max(r["steps"] - r["resumed_from"], 1)
                line["wm_steps"], line["wm_val"] = r["steps"], r["val"]
                if r["val_skipped"]:
                    line["wm_val_skipped"] = r["val_skipped"]
                    say(Event(epoch, "result", f"world model at step {r['steps']}: validation skipped, "
                                               f"{r['val_skipped']} (it validates on the evaluation episodes)"))
                if r["interrupted"]:
                    raise _Interrupted
                if r["val"]:
                    v = r["val"]
                    say(Event(epoch, "result", f"world model at step {r['steps']}: held-out PSNR "
                                               f"{v['val/psnr_1step']:.2f} dB vs copy-last {v['val/psnr_copy_last']:.2f} dB"))
                dream_path = wm_path
                if cfg.distill:  # the agent trains in a few-step student of this epoch's world model
                    phase = "distill"
                    dream_path = student_path
                    d_target = recipe.distill.steps + (epoch - 1) * cfg.distill_steps
                    say(Event(epoch, "distill", f"up to step {d_target}"))
                    t = time.perf_counter()
                    r = distill_world_model(wm_path, student_path, rt, store_path=store.path, steps=d_target,
                                            resume=student_path.exists(), on_progress=on_progress)
                    times["distill"] = (time.perf_counter() - t) / max(r["steps"] - r["resumed_from"], 1)
                    line["distill_steps"], line["distill_val"] = r["steps"], r["val"]
                    if r["interrupted"]:
                        raise _Interrupted
                    if r["val"]:
                        v = r["val"]
                        say(Event(epoch, "result", f"student at step {r['steps']} ({r['student_steps']} step(s) a frame): "
                                                   f"held-out PSNR {v['val/psnr_1step']:.2f} dB, teacher "
                                                   f"{v['val/psnr_teacher']:.2f} dB"))
                phase = "train-agent"
                ag_target = recipe.train_agent.steps + (epoch - 1) * cfg.agent_steps
                say(Event(epoch, "train-agent", f"up to step {ag_target}"))
                t = time.perf_counter()
                r = train_agent(replace(recipe, train_agent=replace(recipe.train_agent, steps=ag_target)), dream_path,
                                agent_path, rt, store_path=store.path, resume=agent_path.exists(),
                                on_progress=on_progress)
                times["agent"] = (time.perf_counter() - t) / max(r["steps"] - r["resumed_from"], 1)
                line["agent_steps"] = r["steps"]
                if r["interrupted"]:
                    raise _Interrupted
                last = epoch == epochs
                if rt.is_main and (last or epoch % cfg.eval_every == 0):
                    phase = "eval"
                    episodes = cfg.final_eval_episodes if last else cfg.eval_episodes
                    say(Event(epoch, "eval", count(episodes, "episode")))
                    ev = evaluate(epoch, episodes)
                    line["eval"] = {k: ev[k] for k in ("return_mean", "return_std", "return_min", "return_max",
                                                       "episodes", "hns", "length_mean") if k in ev}
                    got = mean_and_sem([e["return"] for e in ev["per_episode"]])
                    if got is not None:
                        line["eval"]["return_sem"] = got["sem"]
                        say(Event(epoch, "result", f"agent: mean return {_pm(got)} over {count(got['episodes'], 'episode')}"
                                                   + _versus(got, state.get("random_return"))))
                    if ev["interrupted"]:
                        raise _Interrupted
                if epoch == 1 and epochs > 1 and "wm" in times and "agent" in times:
                    left = (epochs - 1) * (cfg.wm_steps * times["wm"] + cfg.agent_steps * times["agent"]
                                           + cfg.distill_steps * times.get("distill", 0.0))
                    rest = "the last epoch" if epochs == 2 else f"the other {epochs - 1} epochs"
                    say(Event(epoch, "estimate", f"{_duration(left)} for {rest} (training rates of epoch 1; "
                                                 f"collection and evaluations extra)"))
            line["seconds"] = time.perf_counter() - t0
            if rt.is_main:
                log.write(line, line["env_steps"])
                state = {**state, "epoch_done": epoch, "initial_steps": line["env_steps"] if epoch == 0 else initial}
                _write_json(state_path, state)
            if epoch == 0 and cfg.total_real_steps is not None:
                p = plan(recipe, line["env_steps"])
                say(Event(epoch, "plan", f"the initial collection took {line['env_steps']:,} steps: "
                                         f"{count(p['epochs'], 'epoch')} in all, {p['real_steps']:,} real steps"))
            epoch += 1
    except (_Interrupted, KeyboardInterrupt):
        interrupted = {"epoch": epoch, "phase": phase}
    finally:
        collector.close()
        log.close()
    lines = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    evals = [x for x in lines if "eval" in x]
    final = evals[-1]["eval"] if evals else None
    final_stats = None if final is None or final.get("return_sem") is None else {
        "mean": final["return_mean"], "sem": final["return_sem"], "episodes": final["episodes"]}
    epochs = num_epochs(cfg, state.get("initial_steps", cfg.initial_collect_steps))
    return {"run_dir": str(run_dir), "game": spec.name, "epochs_done": state["epoch_done"], "epochs": epochs,
            "env_steps": _store_steps(store), "final_eval": final, "random": state.get("random_return"),
            "versus_random": compare_to_random(final_stats, state.get("random_return")),
            "interrupted": interrupted, "next": next_commands(run_dir, store, recipe.denoiser.num_context),
            "seconds": time.perf_counter() - t0}


class _Interrupted(Exception):
    """A phase stopped at a first Ctrl-C, with what it finished saved."""


def _pm(r: dict) -> str:
    return f"{r['mean']:.2f}" + (f" ± {r['sem']:.2f}" if r.get("sem") is not None else "")


def _versus(agent: dict, random: dict | None) -> str:
    c = compare_to_random(agent, random)
    if c is None:
        return ""
    verdict = ("beats random beyond noise" if c["beats_random"] else
               "worse than random beyond noise" if c["worse_than_random"] else "within noise of random")
    return f" (random: {_pm(random)}; {verdict})"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    return f"about {seconds / 60:.0f} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


def run_summary(r: dict) -> str:
    """The last words of a run: how far it went, its final score next to the random policy's, and
    the commands to look at it."""
    head = f"run {r['run_dir']}: {r['epochs_done']} of {r['epochs']} epochs, {r['env_steps']:,} env steps"
    ev, rnd = r["final_eval"], r["random"]
    if ev is not None:
        head += (f"; last evaluation of {r['game']}: mean return {ev['return_mean']:.2f}"
                 + (f" ± {ev['return_sem']:.2f}" if ev.get("return_sem") is not None else "")
                 + f" over {count(ev['episodes'], 'episode')}")
        if rnd is not None:
            c = r["versus_random"]
            verdict = "" if c is None else ("; beats random beyond noise" if c["beats_random"] else
                                            "; worse than random beyond noise" if c["worse_than_random"] else
                                            "; within noise of random")
            head += f" (random policy: {_pm(rnd)} over {count(rnd['episodes'], 'episode')}{verdict})"
    return head + "\nnext:\n" + "\n".join(f"  {c}" for c in r["next"])
