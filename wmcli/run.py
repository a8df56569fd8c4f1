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
from typing import TYPE_CHECKING

import numpy as np

from wmcli.atomic import write_text_atomic
from wmcli.errors import WmcliError

if TYPE_CHECKING:
    from wmcli.recipe import Recipe
    from wmcli.runtime import Runtime


@dataclass(frozen=True)
class RunConfig:
    """The `run` section of a recipe: DIAMOND's schedule."""

    initial_collect_steps: int = 5000
    """Random-policy steps before the first epoch (DIAMOND: at least 5,000)."""
    initial_collect_min_rewards: int = 10
    """Then more random play, collect_steps at a time, until the steps of the two rarer reward signs
    number this many (DIAMOND: 10); 0: never."""
    initial_collect_max_steps: int = 10_000
    """...but no more than this many random steps in all (DIAMOND: 10,000)."""
    epochs: int = 1000
    """Training epochs (DIAMOND: 1,000 with a 5,000-step initial collection)."""
    collect_steps: int = 100
    """Real steps collected with the agent at the start of each epoch after the first (DIAMOND: 100)."""
    collect_epochs: int = 950
    """Epochs that collect; the last ones only train (DIAMOND: the last 50 do not collect)."""
    epsilon: float = 0.01
    """Probability of a random action when collecting with the agent (DIAMOND: 0.01)."""
    num_envs: int = 1
    """Envs collecting together (DIAMOND: 1)."""
    wm_steps: int = 400
    """World-model steps per epoch after the first (DIAMOND: 400)."""
    agent_steps: int = 400
    """Agent steps per epoch after the first (DIAMOND: 400)."""
    eval_every: int = 10
    """Epochs between evaluations in the real game (DIAMOND: 10)."""
    eval_episodes: int = 4
    """Real episodes per evaluation (DIAMOND: 4)."""
    final_eval_episodes: int = 100
    """Real episodes of the evaluation after the last epoch (DIAMOND: 100)."""
    eval_num_envs: int = 4
    """Envs playing evaluation episodes together."""
    seed: int = 0
    """Seed of collection and evaluation (training seeds are in their sections)."""


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


def run_loop(recipe: Recipe, run_dir: Path, rt: Runtime, resume: bool = False,
             on_event: Callable[[Event], None] | None = None, on_progress: Callable | None = None) -> dict:
    """Run (or resume) the loop of `recipe` in `run_dir`; returns the final summary."""
    import yaml

    from wmcli.collect import Collector
    from wmcli.env import make_spec
    from wmcli.evaluate import evaluate_policy
    from wmcli.policy import AgentPolicy, load_agent
    from wmcli.recipe import recipe_from_dict
    from wmcli.store import Store
    from wmcli.train_agent import train_agent
    from wmcli.train_wm import train_world_model

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
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(recipe_path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))  # before state.json
        state = {"epoch_done": -1}
        _write_json(state_path, state)
    cfg = recipe.run
    spec = make_spec(recipe.env)
    store = Store.create_or_open(run_dir / "store", spec.to_dict())
    wm_path, agent_path = run_dir / "wm.pt", run_dir / "agent.pt"
    metrics = run_dir / "metrics.jsonl"
    say = on_event or (lambda e: None)

    def evaluate(epoch: int, episodes: int) -> dict:
        agent = load_agent(agent_path, rt.device)
        policy = AgentPolicy(agent, np.random.default_rng([cfg.seed, 1, epoch]), device=rt.device)
        video = run_dir / "videos" / f"eval_epoch_{epoch:04d}.mp4"
        video.parent.mkdir(exist_ok=True)
        return evaluate_policy(spec, policy, episodes, cfg.eval_num_envs, seed=cfg.seed + 10_000 * epoch,
                               video_path=video)

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
                collector.play(target - have)
                if collector.interrupted:
                    raise KeyboardInterrupt
            if epoch == 0:
                # DIAMOND: random play goes on, collect_steps at a time, until rewards have been seen.
                have = _store_steps(store) + collector.pending_steps
                while (have < cfg.initial_collect_max_steps and
                       rare_reward_steps(_collected_rewards(store, collector)) < cfg.initial_collect_min_rewards):
                    more = min(cfg.collect_steps, cfg.initial_collect_max_steps - have)
                    say(Event(epoch, "collect", f"{more} more steps: few rewards so far"))
                    collector.play(more)
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
                with open(metrics, "a") as f:
                    f.write(json.dumps(line) + "\n")
                state = {"epoch_done": epoch, "initial_steps": line["env_steps"] if epoch == 0 else initial}
                _write_json(state_path, state)
    finally:
        collector.close()
    lines = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    evals = [x for x in lines if "eval" in x]
    return {"run_dir": str(run_dir), "epochs_done": state["epoch_done"], "env_steps": _store_steps(store),
            "final_eval": evals[-1]["eval"] if evals else None, "seconds": time.perf_counter() - t0}
