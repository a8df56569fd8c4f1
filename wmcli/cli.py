"""The `wmcli` command line: each command parses its options, calls one library function, prints.

Results go to stdout (`--json` for scripts), progress and logs to stderr. Exit codes:
0 done, 1 bad input or a failure the message explains, 2 bad usage, 130 interrupted (what was
finished is kept). Heavy imports (torch, h5py, ale-py) happen inside commands, so `--help` is instant.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from wmcli import __version__
from wmcli.errors import WmcliError

app = typer.Typer(
    name="wmcli",
    help="Diffusion world models on Atari, in the line of DIAMOND: collect, train, imagine, measure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Inspect trajectory stores.", no_args_is_help=True)
app.add_typer(store_app, name="store")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wmcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Diffusion world models on Atari, in the line of DIAMOND: collect, train, imagine, measure."""


@contextlib.contextmanager
def _user_errors():
    """Expected failures end as one line on stderr and a non-zero exit, without a traceback."""
    try:
        yield
    except WmcliError as e:
        typer.echo(f"wmcli: error: {e}", err=True)
        raise typer.Exit(code=e.exit_code) from None


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


# Options shared by the training commands.
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: section.key=value (repeatable).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing -o instead of refusing.")]


def default_store(game_name: str) -> Path:
    return Path("runs") / game_name.replace(":", "-") / "store"


@app.command()
def collect(
    env: Annotated[
        Optional[str],
        typer.Option("--env", help="Game: Breakout, MsPacman, ALE/Pong-v5, minatar:Breakout, ... "
                                   "(default with an agent: its game and frame protocol)"),
    ] = None,
    store: Annotated[
        Optional[Path], typer.Option(help="Store folder (default: runs/<game>/store). Appends if it exists.")
    ] = None,
    env_steps: Annotated[int, typer.Option(min=1, help="Agent steps to play (each is frame-skip raw frames).")] = 5000,
    policy: Annotated[str, typer.Option(help="Policy: random, or an agent checkpoint (wmcli train-agent -o).")] = "random",
    epsilon: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="With an agent: probability of a uniformly random action.")
    ] = 0.0,
    num_envs: Annotated[int, typer.Option(min=1, help="Envs stepped together (threads for ALE games).")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Seed for envs and policy (default: drawn and recorded).")] = None,
    frame_size: Annotated[int, typer.Option(min=8, help="Frames are SIZE x SIZE RGB.")] = 64,
    sticky_prob: Annotated[float, typer.Option(help="Sticky-action probability (DIAMOND: 0, ALE v5: 0.25).")] = 0.0,
    mode: Annotated[Optional[int], typer.Option(help="ALE game mode.")] = None,
    difficulty: Annotated[Optional[int], typer.Option(help="ALE game difficulty.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Play a policy in a real game and append its episodes to a trajectory store.

    Every episode is written the moment it ends, so Ctrl-C (or a crash) keeps all finished
    episodes; running again appends. The same --seed gives the same episodes.
    """
    with _user_errors():
        from wmcli.collect import collect as run_collect
        from wmcli.store import Store, summarize

        if seed is None:  # drawn here, so the agent's sampling is recorded by it too
            seed = secrets.randbelow(2**31)
        spec, player = _env_and_policy(env, policy, epsilon, seed, dict(
            frame_size=frame_size, sticky_prob=sticky_prob, mode=mode, difficulty=difficulty))
        path = store if store is not None else default_store(spec.name)
        st = Store.create_or_open(path, spec.to_dict())
        with _progress(f"collect {spec.name}", env_steps, _describe_collect) as report:
            result = run_collect(spec, st, env_steps, num_envs=num_envs, seed=seed, on_progress=report, policy=player)
        result["store_summary"] = summarize(st)
        if as_json:
            _print_json(result)
        else:
            typer.echo(
                f"collected {result['env_steps']} steps, {result['episodes_written']} episodes "
                f"({result['env_steps_per_s']:.0f} steps/s) into {path}"
            )
            _print_summary(result["store_summary"])
        if result["interrupted"]:
            typer.echo("wmcli: interrupted; every finished episode is in the store", err=True)
            raise typer.Exit(code=130)


def _env_and_policy(env: str | None, policy: str, epsilon: float, seed: int | None, env_options: dict,
                    greedy: bool = False):
    """The game to play and the policy to play it with (None = random, seeded by collect).

    With an agent and no --env, the agent's own game and frame protocol; with --env, that game,
    checked against the agent (action count, frame size)."""
    import numpy as np

    from wmcli.env import EnvConfig, make_spec, spec_from_dict
    from wmcli.policy import AgentPolicy, load_agent

    if policy == "random":
        if env is None:
            raise WmcliError("--env is required with --policy random (e.g. --env Breakout)")
        return make_spec(EnvConfig(game=env, **env_options)), None
    if not Path(policy).exists():
        raise WmcliError(f"--policy {policy!r} is neither 'random' nor an existing agent checkpoint "
                         f"(the file `wmcli train-agent -o` wrote)")
    agent = load_agent(policy)
    spec = spec_from_dict(agent.env) if env is None else make_spec(EnvConfig(game=env, **env_options))
    agent.check_env(spec.to_dict())
    return spec, AgentPolicy(agent, np.random.default_rng(seed), epsilon=epsilon, greedy=greedy)


@contextlib.contextmanager
def _progress(title: str, total: int, describe, enabled: bool = True):
    """A rich progress bar on stderr, shown from the first report on (so set-up errors print
    alone). Yields a callback; describe(report) gives (completed, info text)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    bar = Progress(*columns, console=_stderr_console())
    task = bar.add_task(title, total=total, info="")

    def report(r) -> None:
        if not bar.live.is_started:
            bar.start()
        completed, info = describe(r)
        bar.update(task, completed=completed, info=info)

    try:
        yield report
    finally:
        if bar.live.is_started:  # stopping a bar that never started prints an empty line
            bar.stop()


def _describe_collect(p) -> tuple[int, str]:
    ret = f"{p.mean_return:.1f}" if p.mean_return is not None else "-"
    return p.steps, f"{p.steps_per_s:.0f} steps/s  {p.episodes} episodes  mean return {ret}"


def _describe_training(r) -> tuple[int, str]:
    losses = "  ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in r.metrics.items() if k.startswith("losses/"))
    return r.step, f"{losses}  {r.samples_per_s:.1f} samples/s"


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(x):
        return "-" if x is None else (f"{x:.2f}" if isinstance(x, float) else str(x))

    t = Table(title=f"store {s['store']}", show_header=False)
    t.add_row("game", s["game"])
    t.add_row("episodes", f"{s['episodes']} ({s['complete_episodes']} complete, {s['cut_episodes']} cut)")
    t.add_row("steps / frames", f"{s['steps']} / {s['frames']}")
    t.add_row("return (complete)", f"mean {fmt(s['return_mean'])}  min {fmt(s['return_min'])}  max {fmt(s['return_max'])}")
    t.add_row("episode length", fmt(s["length_mean"]))
    t.add_row("nonzero rewards / life losses", f"{s['nonzero_rewards']} / {s['life_losses']}")
    t.add_row("actions", "  ".join(f"{k}:{v}" for k, v in s["action_histogram"].items()))
    t.add_row("frames", "x".join(map(str, s["frame_shape"])) + " uint8")
    t.add_row("protocol", ", ".join(f"{k}={v}" for k, v in s["protocol"].items()))
    t.add_row("on disk", f"{s['disk_bytes'] / 1e6:.1f} MB")
    Console(soft_wrap=False).print(t)


@app.command("train-wm")
def train_wm(
    store: Annotated[Optional[Path], typer.Option(help="Store to train on (default: runs/<game>/store of --env).")] = None,
    env: Annotated[Optional[str], typer.Option("--env", help="Game, to find its default store.")] = None,
    recipe: Annotated[
        Optional[str], typer.Option(help="Recipe: tiny, atari100k, or a YAML file (default: tiny; with --resume, the checkpoint's).")
    ] = None,
    set_: SetOpt = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Gradient steps (overrides train_wm.steps).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (validate, save) once this much time has passed.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint file.")] = Path("wm.pt"),
    resume: Annotated[bool, typer.Option(help="Continue the run saved in -o (weights, optimizers, step, RNG).")] = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile_: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the models (default: on CUDA only).")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable episode files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train the diffusion world model (denoiser + reward/end model) on a trajectory store.

    Metrics go to <output>.metrics.jsonl, checkpoints to --output (atomically). Multi-GPU:
    torchrun --nproc-per-node N -m wmcli train-wm ...
    """
    with _user_errors():
        from wmcli.recipe import load_recipe, recipe_from_dict
        from wmcli.runtime import make_runtime
        from wmcli.train_wm import train_world_model

        overrides = list(set_ or []) + ([f"train_wm.steps={steps}"] if steps else [])
        if resume and recipe is None and output.exists():  # continue with the checkpoint's own recipe
            from wmcli.checkpoint import load_checkpoint

            rec = recipe_from_dict(load_checkpoint(output, "world_model")["recipe"], overrides)
        else:
            rec = load_recipe(recipe or "tiny", overrides)
        if store is None:
            if env is None:
                raise WmcliError("pass --store PATH (or --env GAME for runs/<game>/store)")
            from wmcli.env import resolve_game

            store = default_store(resolve_game(env)[1])
        rt = make_runtime(device, precision, compile_)
        with _progress("train-wm", rec.train_wm.steps, _describe_training, rt.is_main) as report:
            result = train_world_model(rec, store, output, rt, resume=resume, overwrite=overwrite,
                                       skip_bad=skip_bad, on_progress=report,
                                       max_seconds=max_minutes * 60 if max_minutes else None)
        if rt.is_main:
            if as_json:
                _print_json(result)
            else:
                val = result["val"]
                extra = (f"; held-out PSNR {val['val/psnr_1step']:.2f} dB vs copy-last {val['val/psnr_copy_last']:.2f} dB"
                         if val else "")
                typer.echo(f"trained {result['steps']} steps into {result['checkpoint']}{extra}")


def _describe_agent_training(r) -> tuple[int, str]:
    m = r.metrics
    return r.step, (f"loss {m['losses/total']:.4f}  dream return {m['dream/return']:.2f}  "
                    f"entropy {m['charts/entropy']:.3f}  {r.frames_per_s:.0f} imagined frames/s")


@app.command("train-agent")
def train_agent(
    world_model: Annotated[Path, typer.Argument(help="World-model checkpoint (wmcli train-wm -o).")],
    store: Annotated[
        Optional[Path], typer.Option(help="Store whose episodes start the dreams (default: the world model's).")
    ] = None,
    recipe: Annotated[
        Optional[str],
        typer.Option(help="Recipe for actor_critic/train_agent: tiny, atari100k or a YAML file "
                          "(default: the world model's; with --resume, the checkpoint's)."),
    ] = None,
    set_: SetOpt = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Gradient steps (overrides train_agent.steps).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (and save) once this much time has passed.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Agent checkpoint file.")] = Path("agent.pt"),
    resume: Annotated[bool, typer.Option(help="Continue the run saved in -o (weights, optimizer, step).")] = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile_: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the world model (default: on CUDA only).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train an actor-critic agent purely inside a world model's dreams.

    Each step dreams train_agent.batch_size games of train_agent.horizon steps from real
    contexts. Metrics go to <output>.metrics.jsonl, checkpoints to --output (atomically).
    Multi-GPU: torchrun --nproc-per-node N -m wmcli train-agent ...
    """
    with _user_errors():
        from wmcli.checkpoint import load_checkpoint
        from wmcli.recipe import load_recipe, recipe_from_dict
        from wmcli.runtime import make_runtime
        from wmcli.train_agent import train_agent as run_train_agent

        overrides = list(set_ or []) + ([f"train_agent.steps={steps}"] if steps else [])
        if recipe is not None:
            rec = load_recipe(recipe, overrides)
        elif resume and output.exists():  # continue with the checkpoint's own recipe
            rec = recipe_from_dict(load_checkpoint(output, "agent")["recipe"], overrides)
        else:  # the recipe the world model was trained with (its actor_critic/train_agent sections)
            rec = recipe_from_dict(load_checkpoint(world_model, "world_model")["recipe"], overrides)
        rt = make_runtime(device, precision, compile_)
        with _progress("train-agent", rec.train_agent.steps, _describe_agent_training, rt.is_main) as report:
            result = run_train_agent(rec, world_model, output, rt, store_path=store, resume=resume,
                                     overwrite=overwrite, on_progress=report,
                                     max_seconds=max_minutes * 60 if max_minutes else None)
        if rt.is_main:
            if as_json:
                _print_json(result)
            else:
                typer.echo(f"trained {result['steps']} agent steps into {result['checkpoint']} "
                           f"({result['imagined_frames_per_s']:.0f} imagined frames/s)")


@app.command("eval")
def eval_(
    checkpoint: Annotated[
        Optional[Path],
        typer.Argument(help="An agent checkpoint (wmcli train-agent -o) to play, or a world-model checkpoint "
                            "(wmcli train-wm -o) to measure on --store."),
    ] = None,
    env: Annotated[
        Optional[str],
        typer.Option("--env", help="Game to play (default with an agent: its game and frame protocol)."),
    ] = None,
    policy: Annotated[str, typer.Option(help="Policy without a CHECKPOINT: random, or an agent checkpoint.")] = "random",
    episodes: Annotated[int, typer.Option(min=1, help="Whole episodes to play (the first ones to start).")] = 100,
    num_envs: Annotated[int, typer.Option(min=1, help="Envs stepped together (threads for ALE games).")] = 4,
    seed: Annotated[Optional[int], typer.Option(help="Seed for envs and policy (default: drawn and recorded; "
                                                     "world model: 0).")] = None,
    mode: Annotated[Optional[int], typer.Option(help="ALE game mode.")] = None,
    difficulty: Annotated[Optional[int], typer.Option(help="ALE game difficulty.")] = None,
    epsilon: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="With an agent: probability of a uniformly random action.")
    ] = 0.0,
    greedy: Annotated[bool, typer.Option("--greedy", help="With an agent: its most likely action, not a sample.")] = False,
    video: Annotated[Optional[Path], typer.Option(help="Write the first episode to this .mp4 or .gif.")] = None,
    store: Annotated[
        Optional[Path], typer.Option(help="With a world model: the store whose held-out episodes it is measured on.")
    ] = None,
    segments: Annotated[int, typer.Option(min=1, help="World model: segments for the loss and rollouts.")] = 128,
    horizon: Annotated[int, typer.Option(min=1, help="World model: rollout length in steps.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Score an agent (or the random policy) over whole games, or measure a world model.

    Agents play under the test protocol: a lost life is not an end, only game over or the
    108,000-frame cap. The mean return is also given human-normalized ((R - random) /
    (human - random)) for the Atari 100k games. With --store, a world-model checkpoint is
    measured on the store's held-out episodes: denoising loss, PSNR against copying the last
    frame, reward and end precision/recall. Ctrl-C stops and reports the finished episodes (exit 130).
    """
    with _user_errors():
        from wmcli.checkpoint import load_checkpoint
        from wmcli.evaluate import evaluate_policy, policy_rows, world_model_rows

        def is_kind(path, kind: str) -> bool:  # asked only after loading it as the other kind failed
            try:
                load_checkpoint(path, kind)
                return True
            except WmcliError:
                return False

        if store is not None:  # a world model on held-out episodes
            from wmcli.store import Store
            from wmcli.world_model import evaluate_world_model, load_world_model

            if checkpoint is None:
                raise WmcliError("--store measures a world model: pass its checkpoint (wmcli eval wm.pt --store PATH)")
            try:
                wm = load_world_model(checkpoint)
            except WmcliError:
                if is_kind(checkpoint, "agent"):
                    raise WmcliError(f"{checkpoint} is an agent checkpoint: drop --store to play it in its game "
                                     f"(--store is for world-model checkpoints)") from None
                raise
            try:
                result = evaluate_world_model(wm, Store.open(store), segments=segments, horizon=horizon,
                                              seed=0 if seed is None else seed)
            except KeyboardInterrupt:
                raise WmcliError("interrupted before the world model's evaluation finished", exit_code=130) from None
            result = {"checkpoint": str(checkpoint), "store": str(store), "game": wm.env["name"], **result}
            rows, title = world_model_rows(result), f"world model {checkpoint} on {store}"
        else:  # a policy in the real game
            if checkpoint is not None and policy != "random":
                raise WmcliError("give the agent once: as CHECKPOINT or as --policy, not both")
            if checkpoint is not None and not checkpoint.exists():
                raise WmcliError(f"checkpoint {checkpoint} not found; pass the file that `wmcli train-agent -o` wrote "
                                 f"(or --policy random --env GAME for the baseline)")
            agent_path = str(checkpoint) if checkpoint is not None else policy
            if seed is None:  # drawn here, so the agent's sampling is recorded by it too
                seed = secrets.randbelow(2**31)
            try:
                spec, player = _env_and_policy(env, agent_path, epsilon, seed, dict(mode=mode, difficulty=difficulty),
                                               greedy=greedy)
            except WmcliError:
                if agent_path != "random" and is_kind(agent_path, "world_model"):
                    raise WmcliError(f"{agent_path} is a world-model checkpoint: pass --store PATH to measure it "
                                     f"on a store's held-out episodes (or give an agent checkpoint to play)") from None
                raise
            if player is not None:
                import dataclasses

                from wmcli.env import make_spec

                if env is None and (mode is not None or difficulty is not None):  # the agent's game, this mode
                    spec = make_spec(dataclasses.replace(spec.config, mode=mode, difficulty=difficulty))
            with _progress(f"eval {spec.name}", episodes, _describe_eval) as report:
                result = evaluate_policy(spec, player, episodes, num_envs=num_envs, seed=seed,
                                         on_progress=report, video_path=video)
            result["greedy"] = greedy and player is not None
            rows, title = policy_rows(result), f"eval {spec.name}"
        if as_json:
            _print_json(result)
        else:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=title, show_header=False)
            for label, value in rows:
                t.add_row(label, value)
            Console(soft_wrap=False).print(t)
        if result.get("interrupted"):
            typer.echo("wmcli: interrupted; the results are those of the finished episodes", err=True)
            raise typer.Exit(code=130)


def _describe_eval(p) -> tuple[int, str]:
    ret = f"{p.mean_return:.1f}" if p.mean_return is not None else "-"
    return p.episodes, f"{p.steps_per_s:.0f} steps/s  mean return {ret}"


@app.command("run")
def run(
    run_dir_arg: Annotated[Optional[Path], typer.Argument(metavar="[DIR]", help="Run folder (same as --run-dir).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<game>-<recipe>).")] = None,
    env: Annotated[Optional[str], typer.Option("--env", help="Game (default: the recipe's env.game).")] = None,
    recipe: Annotated[str, typer.Option(help="Recipe: tiny, minatar, atari100k or a YAML file.")] = "tiny",
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in DIR from its last finished epoch (its own recipe).")] = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile_: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the models (default: on CUDA only).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the whole DIAMOND loop in one resumable folder: collect, train, dream, evaluate, repeat.

    The schedule is the recipe's `run` section: collect, train the world model, train the
    agent in it, evaluate it in the real game, epoch after epoch.

    Killed at any moment, `wmcli run --resume DIR` continues from the last finished epoch.
    """
    with _user_errors():
        from wmcli.recipe import load_recipe
        from wmcli.run import run_loop
        from wmcli.runtime import make_runtime

        if run_dir_arg is not None and run_dir is not None and run_dir_arg != run_dir:
            raise WmcliError(f"two run folders given ({run_dir_arg} and --run-dir {run_dir}); pass one")
        folder = run_dir_arg or run_dir
        if resume:
            if folder is None:
                raise WmcliError("--resume needs the run folder: wmcli run --resume DIR")
            if env is not None or set_:
                raise WmcliError("a resumed run keeps its own recipe; drop --env/--set")
            rec = None
        else:
            rec = load_recipe(recipe, list(set_ or []), game=env)
            if folder is None:
                from wmcli.env import resolve_game

                folder = Path("runs") / f"{resolve_game(rec.env.game)[1].replace(':', '-')}-{Path(recipe).stem}"
        rt = make_runtime(device, precision, compile_)
        console = _stderr_console()

        def on_event(e) -> None:
            console.print(f"[bold]epoch {e.epoch}[/bold] {e.phase}: {e.text}")

        result = run_loop(rec, folder, rt, resume=resume, on_event=on_event)
        if as_json:
            _print_json(result)
        else:
            ev = result["final_eval"]
            score = f"; last evaluation: mean return {ev['return_mean']:.2f} over {ev['episodes']} episodes" if ev else ""
            typer.echo(f"run {result['run_dir']}: {result['epochs_done']} epochs, {result['env_steps']} env steps{score}")


@app.command("plot")
def plot(
    path: Annotated[Path, typer.Argument(help="A run folder (wmcli run), or a *.metrics.jsonl file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="PNG to write (default: DIR/curves.png).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Draw a run's curves to PNG: real-game returns, world-model and agent losses (needs matplotlib)."""
    with _user_errors():
        from wmcli.plot import plot_run

        out = output or (path / "curves.png" if path.is_dir() else path.with_suffix(".png"))
        result = plot_run(path, out)
        if as_json:
            _print_json(result)
        else:
            typer.echo(f"wrote {result['plot']} ({', '.join(result['panels'])})")


@app.command()
def imagine(
    checkpoint: Annotated[Path, typer.Argument(help="World-model checkpoint (wmcli train-wm -o).")],
    output: Annotated[
        str,
        typer.Option("-o", "--output", help="By extension: .mp4, .gif, .png (rows: rollouts, columns: time), .npz "
                                            "(raw uint8 arrays); {i} in the name writes one file per rollout; "
                                            "- streams y4m to stdout as frames are generated."),
    ] = "imagine.mp4",
    horizon: Annotated[
        Optional[int], typer.Option(min=1, help="Imagined frames per rollout (default: 25, or as many as --actions).")
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option("--steps", "--denoising-steps", min=1,
                     help="Denoising (sampler) steps per imagined frame (default: the recipe's sampler.num_steps)."),
    ] = None,
    sampler: Annotated[
        Optional[str], typer.Option(help="euler or heun (EDM models), ddim or ddpm (DDPM models) (default: the recipe's).")
    ] = None,
    policy: Annotated[str, typer.Option(help="Who picks the actions: random, or an agent checkpoint (as --agent).")] = "random",
    agent: Annotated[
        Optional[Path], typer.Option(help="Agent checkpoint (wmcli train-agent -o) that picks the actions, its LSTM "
                                          "burned in on the context frames.")
    ] = None,
    actions: Annotated[
        Optional[str], typer.Option(help="Fixed actions for the imagined steps: 1,0,3,... or a file of integers.")
    ] = None,
    store: Annotated[
        Optional[Path], typer.Option(help="Start from this store's recorded frames (default: a fresh reset of the game).")
    ] = None,
    episode: Annotated[int, typer.Option(help="With --store: the episode (0 = oldest, -1 = newest).")] = 0,
    start: Annotated[int, typer.Option(min=0, help="With --store: the first context frame in the episode.")] = 0,
    compare: Annotated[
        bool, typer.Option("--compare", help="With --store: real | imagined side by side (in a .png, real above "
                                             "imagined) under the real actions; per-step PSNR in the summary.")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="Rollouts at once, shown in a grid (or one file each with {i} in -o).")] = 1,
    scale: Annotated[int, typer.Option(min=1, help="Nearest-neighbour upscaling of the written frames.")] = 4,
    fps: Annotated[float, typer.Option(min=1, help="Frames per second of the video (15: real time at frame skip 4).")] = 15.0,
    show_denoising: Annotated[
        Optional[Path], typer.Option(help="Also write a .png grid of the sampler's predictions of the clean frame, "
                                          "step by step (rows: imagined frames, columns: sampler steps).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the sampler, policy and game resets (default: drawn and recorded).")] = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (on stderr with -o -).")] = False,
) -> None:
    """Watch a world model dream: imagined frames from a real start, to a video, image or stream.

    The dream starts from num_context real frames (a fresh reset of the checkpoint's game, or
    --store), then each frame is sampled from the last ones and an action. --horizon counts
    imagined frames; --steps the sampler's denoising steps per frame. Videos show the real
    context frames first. With -o -, stdout carries only the y4m stream:
    wmcli imagine wm.pt -o - | ffmpeg -i - dream.mp4
    """
    with _user_errors():
        from wmcli.imagine import ImagineConfig, planned_horizon
        from wmcli.imagine import imagine as run_imagine

        if policy != "random":
            if agent is not None:
                raise WmcliError("give the agent once: as --agent or as --policy, not both")
            if not Path(policy).exists():
                raise WmcliError(f"--policy {policy!r} is neither 'random' nor an existing agent checkpoint "
                                 f"(the file `wmcli train-agent -o` wrote)")
            agent = Path(policy)
        if seed is None:
            seed = secrets.randbelow(2**31)
        cfg = ImagineConfig(horizon=horizon, denoising_steps=steps, sampler=sampler, seed=seed, batch=batch,
                            agent=agent, actions=actions, store=store, episode=episode, start=start, compare=compare,
                            scale=scale, fps=fps, show_denoising=show_denoising, device=device)
        to_stdout = output == "-"
        describe = lambda p: (p.step, f"{p.frames_per_s:.1f} imagined frames/s")  # noqa: E731
        with _progress("imagine", planned_horizon(cfg), describe) as report:
            try:
                result = run_imagine(checkpoint, output, cfg, stream=sys.stdout.buffer if to_stdout else None,
                                     on_progress=report)
            except BrokenPipeError:  # the reader of -o - went away (e.g. | head)
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
                raise WmcliError("the reader of the y4m stream closed the pipe") from None
            except KeyboardInterrupt:
                raise WmcliError("interrupted before the dream was finished; no file was written", exit_code=130) from None
        if as_json:
            text = json.dumps(result, indent=2)
            typer.echo(text, err=to_stdout)
        else:
            cmp = result["compare"]
            extra = (f"; PSNR {cmp['psnr']:.2f} dB vs copy-last {cmp['psnr_copy_last']:.2f} dB" if cmp else "")
            out = result["output"] if isinstance(result["output"], str) else f"{len(result['output'])} files"
            typer.echo(f"imagined {result['imagined_frames']} frames x {result['batch']} of {result['game']} after "
                       f"{result['context_frames']} real ones into {'stdout' if to_stdout else out} "
                       f"({result['imagined_frames_per_s']:.1f} imagined frames/s){extra}", err=to_stdout)


@app.command()
def fvd(
    real: Annotated[Path, typer.Argument(help="Real videos: a folder of .mp4/.gif/.npz files, one such file, a store, or FILE.npz:ARRAY.")],
    generated: Annotated[Path, typer.Argument(help="Generated videos, in any of the same forms.")],
    detector: Annotated[
        Optional[Path],
        typer.Option(help="I3D weights: the TorchScript i3d_torchscript.pt or the PyTorch port's rgb_imagenet.pt "
                          "(default: that file in $WMCLI_HOME, else ~/.cache/wmcli). Nothing is downloaded."),
    ] = None,
    clip_len: Annotated[int, typer.Option(min=1, help="Frames per clip (the FVD convention: 16).")] = 16,
    size: Annotated[int, typer.Option(min=1, help="Clips are resized to SIZE x SIZE (the convention: 224).")] = 224,
    max_clips_per_video: Annotated[
        Optional[int], typer.Option(min=1, help="Clips taken from each video, from its start (default: every whole clip).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per I3D forward pass.")] = 8,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Fréchet Video Distance between real and generated videos, with I3D features.

    Videos are cut into consecutive 16-frame clips, resized to 224x224 and embedded by I3D
    (Kinetics-400 logits); FVD is the Fréchet distance of the two Gaussians (docs/fvd.md).
    When the sets pair up (same count, same lengths), also per-frame PSNR, SSIM and a
    temporal-consistency score (docs/metrics.md).
    """
    with _user_errors():
        from wmcli.fvd import FvdConfig, compare_video_sets, open_videos
        from wmcli.i3d import load_detector
        from wmcli.runtime import make_runtime

        net = load_detector(detector, make_runtime(device, "fp32", False).device)
        cfg = FvdConfig(clip_len=clip_len, size=size, max_clips_per_video=max_clips_per_video, batch_size=batch_size)
        sets = open_videos(real), open_videos(generated)
        with _progress("fvd", len(sets[0]) + len(sets[1]), lambda n: (n, "videos embedded")) as report:
            result = compare_video_sets(*sets, net, cfg, on_video=report)
        for w in result["warnings"]:
            typer.echo(f"wmcli: warning: {w}", err=True)
        if as_json:
            _print_json(result)
        else:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=f"FVD {real} vs {generated}", show_header=False)
            t.add_row("FVD", f"{result['fvd']:.2f}")
            for name in ("real", "generated"):
                s = result[name]
                t.add_row(name, f"{s['videos']} videos ({s['kind']}), {s['frames']} frames, {s['clips']} clips")
            t.add_row("detector", f"{result['detector']['path']} ({result['detector']['kind']}, "
                                  f"{result['detector']['features']} features)")
            p = result["paired"]
            if p is not None:
                t.add_row("paired PSNR / SSIM", f"{p['psnr']:.2f} dB / {p['ssim']:.4f} over {p['frames']} frames")
                tc = "-" if p["temporal_consistency"] is None else f"{p['temporal_consistency']:.2f} dB"
                ratio = "-" if p["motion_ratio"] is None else f"{p['motion_ratio']:.2f}"
                t.add_row("temporal consistency", f"{tc} (motion ratio {ratio})")
            Console(soft_wrap=False).print(t)


@store_app.command("info")
def store_info(
    path: Annotated[Path, typer.Argument(help="Store folder.")],
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable episode files (listed on stderr).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Episodes, frames, returns, action histogram and protocol of a store."""
    with _user_errors():
        from wmcli.store import Store, summarize

        st = Store.open(path)
        if skip_bad:
            for bad, why in st.bad_files():
                typer.echo(f"wmcli: skipping {bad.name}: {why.split(': ', 1)[-1].split(';')[0]}", err=True)
        s = summarize(st, skip_bad=skip_bad)
        if as_json:
            _print_json(s)
        else:
            _print_summary(s)


@app.command()
def envs(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the games wmcli can play: every ALE ROM shipped with ale-py, and MinAtar's games."""
    from wmcli.env import all_game_names

    names = all_game_names()
    if as_json:
        _print_json(names)
    else:
        typer.echo("\n".join(names))


def main() -> None:
    app()
