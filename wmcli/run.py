"""The whole DIAMOND loop in one run folder, resumable at any moment.

    DIR/recipe.yaml           the resolved recipe (a resumed run reads it back)
    DIR/store/                every real episode played
    DIR/wm.pt                 the world model (+ wm.metrics.jsonl)
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
epochs. Every part is idempotent: a killed run resumed with `wmcli run --resume DIR` tops the
store up to the epoch's step target (finished episodes are never lost; the ones under way at
the kill are), resumes each training from its last checkpoint, and goes on.
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
from wmcli.base.config import Recipe
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Progress
from wmcli.base.recipe import load_recipe, recipe_from_dict
from wmcli.base.runtime import Runtime
from wmcli.data.collect import Collector
from wmcli.data.env import make_spec, resolve_game
from wmcli.data.store import Store
from wmcli.outputs.evaluate import evaluate_policy
from wmcli.training.loop import MetricsLog
from wmcli.training.train_agent import train_agent
from wmcli.training.train_wm import train_world_model
from wmcli.world.agent import AgentPolicy, load_agent


def default_run_dir(recipe: str, game: str) -> Path:
    """Where a run goes when no folder is given: runs/<game>-<recipe name>."""
    return Path("runs") / f"{resolve_game(game)[1].replace(':', '-')}-{Path(recipe).stem}"


@dataclass
class Event:
    """A progress report: what phase of which epoch, and a one-line description."""

    epoch: int
    phase: str
    text: str


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def _store_steps(store) -> int:
    return sum(store.episode_length(p) for p in store.episode_paths())


def rare_reward_steps(rewards: np.ndarray) -> int:
    """Steps whose reward sign (-1, 0, +1) is not the most common one: the two rarer classes."""
    counts = np.bincount(np.sign(rewards).astype(np.int64) + 1, minlength=3)
    return int(counts.sum() - counts.max())


def _collected_rewards(store, collector) -> np.ndarray:
    """Every reward played so far: the store's episodes and those under way."""
    stored = [store.read_episode(p, frames=False).rew for p in store.episode_paths()]
    return np.concatenate([*stored, collector.pending_rewards]) if stored else collector.pending_rewards


def run_setup(recipe: str, overrides: list[str] = (), game: str | None = None, run_dir: Path | None = None,
              resume: bool = False) -> tuple[Recipe | None, Path]:
    """What `wmcli run` runs where: the recipe (None when resuming: the run keeps its own) and the
    folder (default_run_dir when none is given)."""
    if resume:
        if run_dir is None:
            raise WmcliError("--resume needs the run folder: wmcli run --resume DIR")
        if game is not None or overrides:
            raise WmcliError("a resumed run keeps its own recipe; drop --env/--set")
        return None, Path(run_dir)
    rec = load_recipe(recipe, list(overrides), game=game)
    return rec, Path(run_dir) if run_dir is not None else default_run_dir(recipe, rec.env.game)


def run_loop(recipe: Recipe | None, run_dir: Path, rt: Runtime, resume: bool = False,
             on_event: Callable[[Event], None] | None = None,
             on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Run (or resume) the loop of `recipe` in `run_dir`; returns the final summary. A resumed
    run reads its own recipe back (recipe None). Epoch lines go to DIR/metrics.jsonl (and to
    TensorBoard events in DIR/run.tensorboard/ when tensorboard is installed, against env steps)."""
    run_dir = Path(run_dir)
    state_path, recipe_path = run_dir / "state.json", run_dir / "recipe.yaml"
    if resume:
        if not state_path.exists():
            raise WmcliError(f"nothing to resume: {run_dir} has no state.json; start it with `wmcli run --run-dir {run_dir}`")
        recipe = recipe_from_dict(yaml.safe_load(recipe_path.read_text()))
        state = json.loads(state_path.read_text())
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise WmcliError(f"{run_dir} exists and is not empty; pass --resume to continue it, or another --run-dir")
        make_dir(run_dir)
        write_text_atomic(recipe_path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))  # before state.json
        state = {"epoch_done": -1}
        _write_json(state_path, state)
    cfg = recipe.run
    spec = make_spec(recipe.env)
    store = Store.create_or_open(run_dir / "store", spec.to_dict())
    wm_path, agent_path = run_dir / "wm.pt", run_dir / "agent.pt"
    metrics = run_dir / "metrics.jsonl"
    log = MetricsLog(metrics, enabled=rt.is_main)
    say = on_event or (lambda e: None)

    def evaluate(epoch: int, episodes: int) -> dict:
        agent = load_agent(agent_path, rt.device)
        policy = AgentPolicy(agent, np.random.default_rng([cfg.seed, 1, epoch]), device=rt.device)
        video = make_dir(run_dir / "videos") / f"eval_epoch_{epoch:04d}.mp4"
        return evaluate_policy(spec, policy, episodes, cfg.eval_num_envs, seed=cfg.seed + 10_000 * epoch,
                               video_path=video, on_progress=on_progress)

    collector = Collector(spec, store, cfg.num_envs, seed=cfg.seed + 1000 * (state["epoch_done"] + 1),
                          collector_name="wmcli run")
    t0 = time.perf_counter()
    try:
        for epoch in range(state["epoch_done"] + 1, cfg.epochs + 1):
            line: dict = {"epoch": epoch}
            # Collect up to this epoch's target: idempotent, so a resumed epoch tops up.
            initial = state.get("initial_steps", cfg.initial_collect_steps)  # what epoch 0 collected
            target = initial + max(0, min(epoch, cfg.collect_epochs) - 1) * cfg.collect_steps
            have = _store_steps(store) + collector.pending_steps
            if have < target:
                if epoch >= 2:
                    agent = load_agent(agent_path, rt.device)
                    collector.set_policy(AgentPolicy(agent, np.random.default_rng([cfg.seed, 0, epoch]),
                                                     epsilon=cfg.epsilon, device=rt.device))
                say(Event(epoch, "collect", f"{target - have} steps with {collector.policy.name}"))
                collector.play(target - have, on_progress)
                if collector.interrupted:
                    raise KeyboardInterrupt
            if epoch == 0:
                # DIAMOND: random play goes on, collect_steps at a time, until rewards have been seen.
                have = _store_steps(store) + collector.pending_steps
                while (have < cfg.initial_collect_max_steps and
                       rare_reward_steps(_collected_rewards(store, collector)) < cfg.initial_collect_min_rewards):
                    more = min(cfg.collect_steps, cfg.initial_collect_max_steps - have)
                    say(Event(epoch, "collect", f"{more} more steps: few rewards so far"))
                    collector.play(more, on_progress)
                    if collector.interrupted:
                        raise KeyboardInterrupt
                    have += more
                collector.close()  # the random pieces end here; agent play starts in fresh games
            line["env_steps"] = _store_steps(store) + collector.pending_steps  # played so far
            if epoch >= 1:
                wm_target = recipe.train_wm.steps + (epoch - 1) * cfg.wm_steps
                say(Event(epoch, "train-wm", f"up to step {wm_target}"))
                r = train_world_model(replace(recipe, train_wm=replace(recipe.train_wm, steps=wm_target)), store.path,
                                      wm_path, rt, resume=wm_path.exists(), on_progress=on_progress)
                line["wm_steps"], line["wm_val"] = r["steps"], r["val"]
                ag_target = recipe.train_agent.steps + (epoch - 1) * cfg.agent_steps
                say(Event(epoch, "train-agent", f"up to step {ag_target}"))
                r = train_agent(replace(recipe, train_agent=replace(recipe.train_agent, steps=ag_target)), wm_path,
                                agent_path, rt, store_path=store.path, resume=agent_path.exists(),
                                on_progress=on_progress)
                line["agent_steps"] = r["steps"]
                last = epoch == cfg.epochs
                if rt.is_main and (last or epoch % cfg.eval_every == 0):
                    episodes = cfg.final_eval_episodes if last else cfg.eval_episodes
                    say(Event(epoch, "eval", f"{episodes} episodes"))
                    ev = evaluate(epoch, episodes)
                    line["eval"] = {k: ev[k] for k in ("return_mean", "return_std", "return_min", "return_max",
                                                       "episodes", "hns", "length_mean") if k in ev}
            line["seconds"] = time.perf_counter() - t0
            if rt.is_main:
                log.write(line, line["env_steps"])
                state = {"epoch_done": epoch, "initial_steps": line["env_steps"] if epoch == 0 else initial}
                _write_json(state_path, state)
    finally:
        collector.close()
        log.close()
    lines = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    evals = [x for x in lines if "eval" in x]
    return {"run_dir": str(run_dir), "epochs_done": state["epoch_done"], "env_steps": _store_steps(store),
            "final_eval": evals[-1]["eval"] if evals else None, "seconds": time.perf_counter() - t0}
