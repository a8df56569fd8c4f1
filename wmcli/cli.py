"""The `wmcli` command line: each command parses its options, calls one library function, prints.

Every decision (which recipe, what a checkpoint is, which game and policy, seeds, default
paths, table rows) is made in the library, where a Python user gets it too; console.py renders
results, tables and progress. Results go to stdout (`--json` for scripts), progress and logs to
stderr. Exit codes: 0 done, 1 bad input or a failure the message explains, 2 bad usage, 130
interrupted (what was finished is kept). The library is imported inside each command (the one
place in wmcli where imports are not at the top), so `wmcli --help` never loads torch.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from wmcli import __version__, console
from wmcli.base.errors import WmcliError
from wmcli.base.progress import count
from wmcli.base.recipe import list_recipes

app = typer.Typer(
    name="wmcli",
    help="Diffusion world models on Atari, in the line of DIAMOND: collect, train, imagine, measure, share.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps evenly at any width, no <bool> type column
)
store_app = typer.Typer(help="Look at, bring in and shape trajectory stores: info, import, preview, merge, split.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(store_app, name="store")
recipes_app = typer.Typer(help="The built-in recipes: list them, or print one as YAML to start your own from.",
                          invoke_without_command=True, rich_markup_mode=None)
app.add_typer(recipes_app, name="recipes")
import_app = typer.Typer(help="Bring models trained by other programs into wmcli (DIAMOND's).", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(import_app, name="import")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wmcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an unexpected error (also: WMCLI_DEBUG=1).")
    ] = False,
) -> None:
    """Diffusion world models on Atari, in the line of DIAMOND: collect, train, imagine, measure, share."""
    if debug:
        os.environ["WMCLI_DEBUG"] = "1"


@contextlib.contextmanager
def _user_errors(command: str):
    """Expected failures end as one line on stderr and a non-zero exit, without a traceback; so does
    anything unexpected (a bug), unless WMCLI_DEBUG=1 or --debug asks for the traceback."""
    try:
        yield
    except WmcliError as e:
        console.error(str(e))
        raise typer.Exit(code=e.exit_code) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the last resort: one line, not a traceback
        if os.environ.get("WMCLI_DEBUG", "") not in ("", "0"):
            raise
        console.error(f"wmcli {command} failed unexpectedly: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                      f" (a bug in wmcli: rerun with `wmcli --debug ...` or WMCLI_DEBUG=1 for the full traceback, "
                      f"and please report it)")
        raise typer.Exit(code=1) from None


def _minutes(m: float | None) -> float | None:
    return m * 60 if m else None


def _stopped_at(result: dict, what: str) -> None:
    """After a training that a first Ctrl-C stopped: what was kept and what to type next (exit 130)."""
    args = sys.argv[1:] if "--resume" in sys.argv else [*sys.argv[1:], "--resume"]
    console.note(f"interrupted at step {result['steps']}; {what} {result['checkpoint']} holds it; continue with: "
                 f"wmcli {' '.join(shlex.quote(a) for a in args)}")
    raise typer.Exit(code=130)


# Options shared by several commands.
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto (WMCLI_PRECISION if set; else bf16 autocast on CUDA and on CPUs with "
                                                  "AMX or AVX512-BF16 units, fp32 on other CPUs), fp32, bf16 or fp16.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing -o instead of refusing.")]
CompileOpt = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the models (default: on CUDA only).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: WMCLI_THREADS, else one per core).")]
RECIPES = ", ".join(list_recipes())  # the built-in recipes, for help texts


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
    as_json: JsonOpt = False,
) -> None:
    """Play a policy in a real game and append its episodes to a trajectory store.

    Every episode is written the moment it ends, so Ctrl-C (or a crash) keeps all finished
    episodes; running again appends. The same --seed gives the same episodes.
    """
    with _user_errors("collect"):
        from wmcli.data.collect import collect_into_store
        from wmcli.data.policy import random_play

        options = dict(frame_size=frame_size, sticky_prob=sticky_prob, mode=mode, difficulty=difficulty)
        if policy == "random":  # no agent to load: torch is not imported, so random play starts at once
            play = random_play(env, seed, options)
        else:
            from wmcli.world.agent import game_and_policy

            play = game_and_policy(env, policy, seed, epsilon, env_options=options)
        with console.progress() as report:
            result = collect_into_store(play.spec, play.policy, play.seed, store, env_steps, num_envs, report)
        _filled_store(result, as_json, f"collected {count(result['env_steps'], 'step')}, "
                      f"{count(result['episodes_written'], 'episode')} ({result['env_steps_per_s']:.0f} steps/s) "
                      f"into {result['store']}", "every finished episode is in the store")


def _filled_store(result: dict, as_json: bool, line: str, kept: str) -> None:
    """What `collect` and `store import` print: the result as JSON, or `line` and the store's table;
    exit 130 (saying what was `kept`) when Ctrl-C stopped the work."""
    from wmcli.data.store_summary import summary_rows

    if as_json:
        console.print_json(result)
    else:
        console.say(line)
        console.print_table(f"store {result['store']}", summary_rows(result["store_summary"]))
    if result["interrupted"]:
        console.note(f"interrupted; {kept}")
        raise typer.Exit(code=130)


@app.command("train-wm")
def train_wm(
    store: Annotated[Optional[Path], typer.Option(help="Store to train on (default: runs/<game>/store of --env).")] = None,
    env: Annotated[Optional[str], typer.Option("--env", help="Game, to find its default store.")] = None,
    recipe: Annotated[
        Optional[str], typer.Option(help=f"Recipe: {RECIPES}, or a YAML file (default: tiny; with --resume, the checkpoint's).")
    ] = None,
    set_: SetOpt = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Gradient steps (overrides train_wm.steps).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (validate, save) once this much time has passed.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint file.")] = Path("wm.pt"),
    resume: Annotated[bool, typer.Option(help="Continue the run saved in -o (weights, optimizers, step, RNG).")] = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile_: CompileOpt = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable episode files.")] = False,
    val_store: Annotated[
        Optional[Path], typer.Option(help="Validate on this store's episodes (e.g. a run's test_store/) and train on every "
                                          "episode of --store (default: hold out the episodes recorded by wmcli store split, "
                                          "else train_wm.val_fraction of --store).")
    ] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the diffusion world model (denoiser + reward/end model) on a trajectory store.

    Metrics go to <output>.metrics.jsonl (and TensorBoard events to <output>.tensorboard/ when
    tensorboard is installed), checkpoints to --output (atomically). Multi-GPU:
    torchrun --nproc-per-node N -m wmcli train-wm ...
    """
    with _user_errors("train-wm"):
        from wmcli.base.runtime import make_runtime
        from wmcli.data.store import Store
        from wmcli.training.train_wm import train_world_model, training_recipe

        rec = training_recipe(recipe, list(set_ or []), output, resume, steps)
        if store is None:  # only a default store needs the game names (ale-py): train-wm --store runs without it
            from wmcli.data.env import store_for

            store = store_for(store, env)
        store_path = store
        if val_store is not None:
            Store.open(val_store)  # a standalone --val-store must exist (a run's may not, yet)
        rt = make_runtime(device, precision, compile_, threads)
        with console.progress(rt.is_main) as report:
            result = train_world_model(rec, store_path, output, rt, resume=resume, overwrite=overwrite,
                                       skip_bad=skip_bad, on_progress=report, max_seconds=_minutes(max_minutes),
                                       val_store=val_store)
        if rt.is_main:
            if as_json:
                console.print_json(result)
            else:
                val = result["val"]
                extra = (f"; held-out PSNR {val['val/psnr_1step']:.2f} dB vs copy-last {val['val/psnr_copy_last']:.2f} dB"
                         if val else f"; validation skipped: {result['val_skipped']}" if result.get("val_skipped") else "")
                console.say(f"trained {result['steps']} steps into {result['checkpoint']}{extra} ({result['runtime']}; "
                            f"segments from {result['data']}: {result['data_why']})")
            if result["interrupted"]:
                _stopped_at(result, "the world model")


@app.command("distill")
def distill(
    world_model: Annotated[Path, typer.Argument(metavar="WORLD_MODEL", help="The teacher: a world-model checkpoint (wmcli train-wm -o).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The student's checkpoint file.")] = Path("wm1.pt"),
    store: Annotated[
        Optional[Path], typer.Option(help="Store whose contexts the student learns on (default: the teacher's).")
    ] = None,
    recipe: Annotated[
        Optional[str], typer.Option(help=f"Take the distill section of this recipe: {RECIPES}, or a YAML file "
                                         "(default: the teacher's; with --resume, the student's).")
    ] = None,
    set_: SetOpt = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Gradient steps (overrides distill.steps).")] = None,
    student_steps: Annotated[
        Optional[int], typer.Option(min=1, max=2, help="Network evaluations per frame of the student, 1 or 2 "
                                                       "(overrides distill.student_steps).")
    ] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (validate, save) once this much time has passed.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the student saved in -o (weights, optimizer, step).")] = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile_: CompileOpt = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable episode files.")] = False,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Distil a world model into a student that dreams a frame in 1 (or 2) network evaluations.

    The student is a normal world-model checkpoint (the teacher's reward/end model, its sampler
    recorded): imagine, train-agent, eval, run and play use it without flags (docs/distill.md).
    Metrics go to <output>.metrics.jsonl. Multi-GPU: torchrun --nproc-per-node N -m wmcli distill ...
    """
    with _user_errors("distill"):
        from wmcli.base.runtime import make_runtime
        from wmcli.training.distill import distill_world_model

        overrides = [*(set_ or []), *([f"distill.student_steps={student_steps}"] if student_steps else [])]
        rt = make_runtime(device, precision, compile_, threads)
        with console.progress(rt.is_main) as report:
            result = distill_world_model(world_model, output, rt, store_path=store, recipe=recipe, overrides=overrides,
                                         steps=steps, resume=resume, overwrite=overwrite, skip_bad=skip_bad,
                                         on_progress=report, max_seconds=_minutes(max_minutes))
        if rt.is_main:
            if as_json:
                console.print_json(result)
            else:
                val = result["val"]
                extra = (f"; held-out PSNR against the teacher {val['val/psnr_vs_teacher']:.2f} dB (the teacher's own "
                         f"{result['student_steps']}-step sample: {val['val/psnr_teacher_short_vs_teacher']:.2f} dB), "
                         f"against the real frame {val['val/psnr_1step']:.2f} dB (teacher {val['val/psnr_teacher']:.2f} dB)"
                         if val else "")
                console.say(f"distilled {result['steps']} steps into {result['checkpoint']}: {result['student_steps']} "
                            f"network evaluation(s) per frame instead of {result['teacher_steps']}{extra} ({result['runtime']})")
            if result["interrupted"]:
                _stopped_at(result, "the student")


@app.command("train-agent")
def train_agent(
    world_model: Annotated[Path, typer.Argument(metavar="WORLD_MODEL", help="World-model checkpoint (wmcli train-wm -o).")],
    store: Annotated[
        Optional[Path], typer.Option(help="Store whose episodes start the dreams (default: the world model's).")
    ] = None,
    recipe: Annotated[
        Optional[str],
        typer.Option(help=f"Recipe for actor_critic/train_agent: {RECIPES}, or a YAML file "
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
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train an actor-critic agent purely inside a world model's dreams.

    Each step dreams train_agent.batch_size games of train_agent.horizon steps from real
    contexts. Metrics go to <output>.metrics.jsonl (and TensorBoard events to
    <output>.tensorboard/ when tensorboard is installed), checkpoints to --output (atomically).
    Multi-GPU: torchrun --nproc-per-node N -m wmcli train-agent ...
    """
    with _user_errors("train-agent"):
        from wmcli.base.runtime import make_runtime
        from wmcli.training.train_agent import train_agent as run_train_agent
        from wmcli.training.train_agent import training_recipe

        rec = training_recipe(recipe, world_model, list(set_ or []), output, resume, steps)
        rt = make_runtime(device, precision, compile_, threads)
        with console.progress(rt.is_main) as report:
            result = run_train_agent(rec, world_model, output, rt, store_path=store, resume=resume,
                                     overwrite=overwrite, on_progress=report, max_seconds=_minutes(max_minutes))
        if rt.is_main:
            if as_json:
                console.print_json(result)
            else:
                console.say(f"trained {result['steps']} agent steps into {result['checkpoint']} "
                            f"({result['imagined_frames_per_s']:.0f} imagined frames/s; {result['runtime']}; "
                            f"contexts from {result['data']}: {result['data_why']})")
            if result["interrupted"]:
                _stopped_at(result, "the agent")


@app.command("eval")
def eval_(
    checkpoint: Annotated[
        Optional[Path],
        typer.Argument(metavar="CHECKPOINT", help="An agent checkpoint (wmcli train-agent -o) to play, or a world-model checkpoint "
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
    as_json: JsonOpt = False,
) -> None:
    """Score an agent (or the random policy) over whole games, or measure a world model.

    Agents play under the test protocol: a lost life is not an end, only game over or the
    108,000-frame cap. The mean return is also given human-normalized ((R - random) /
    (human - random)) for the Atari 100k games. With --store, a world-model checkpoint is
    measured on the store's held-out episodes: denoising loss, PSNR against copying the last
    frame, reward and end precision/recall. Ctrl-C stops and reports the finished episodes (exit 130).
    """
    with _user_errors("eval"):
        from wmcli.outputs.evaluate import evaluate_checkpoint, result_rows

        with console.progress() as report:
            try:
                result = evaluate_checkpoint(checkpoint, store, env, policy, episodes, num_envs, seed, mode, difficulty,
                                             epsilon, greedy, video, segments, horizon, on_progress=report)
            except KeyboardInterrupt:
                raise WmcliError("interrupted before the evaluation finished", exit_code=130) from None
        if as_json:
            console.print_json(result)
        else:
            console.print_table(*result_rows(result))
        if result.get("interrupted"):
            console.note("interrupted; the results are those of the finished episodes")
            raise typer.Exit(code=130)


@app.command("run")
def run(
    run_dir_arg: Annotated[Optional[Path], typer.Argument(metavar="DIR", help="Run folder (same as --run-dir).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<game>-<recipe>).")] = None,
    env: Annotated[Optional[str], typer.Option("--env", help="Game (default: the recipe's env.game).")] = None,
    recipe: Annotated[
        Optional[str], typer.Option(help=f"Recipe: {RECIPES}, or a YAML file (default: minatar for MinAtar games; "
                                         "atari100k for Atari on CUDA; on a CPU an Atari game needs one named).")
    ] = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in DIR from its last finished epoch (its own recipe).")] = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    compile_: CompileOpt = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole DIAMOND loop in one resumable folder: collect, train, dream, evaluate, repeat.

    The schedule is the recipe's `run` section: collect, train the world model, train the
    agent in it, evaluate it in the real game, epoch after epoch.

    Killed at any moment, `wmcli run --resume DIR` continues from the last finished epoch.
    """
    with _user_errors("run"):
        from wmcli.base.runtime import make_runtime
        from wmcli.run import run_loop, run_setup, run_summary

        if run_dir_arg is not None and run_dir is not None and run_dir_arg != run_dir:
            raise WmcliError(f"two run folders given ({run_dir_arg} and --run-dir {run_dir}); pass one")
        rt = make_runtime(device, precision, compile_, threads)
        rec, folder = run_setup(recipe, list(set_ or []), env, run_dir_arg or run_dir, resume, rt.device.type)
        with console.progress(rt.is_main) as report:
            result = run_loop(rec, folder, rt, resume=resume, on_event=console.run_event, on_progress=report)
        if as_json:
            console.print_json(result)
        else:
            console.say(run_summary(result))
        if result["interrupted"]:
            stop = result["interrupted"]
            console.note(f"interrupted in epoch {stop['epoch']} ({stop['phase']}); what was finished is kept; "
                         f"continue with: wmcli run --resume {result['run_dir']}")
            raise typer.Exit(code=130)


@app.command("plot")
def plot(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A run folder (wmcli run), or a *.metrics.jsonl file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="PNG to write (default: DIR/curves.png).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw a run's curves to PNG: real-game returns, world-model and agent losses (needs matplotlib)."""
    with _user_errors("plot"):
        from wmcli.outputs.plot import plot_run

        result = plot_run(path, output)
        if as_json:
            console.print_json(result)
        else:
            console.say(f"wrote {result['plot']} ({', '.join(result['panels'])})")


@app.command("report")
def report(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN", help="Run folders (wmcli run), or LABEL=DIR to compare groups of runs side by side; "
                                              "also files saved from `wmcli eval AGENT --json`."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="table, json, markdown or latex.")] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (same as --format json).")] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also draw each group's aggregates with their intervals to this .png.")
    ] = None,
    reps: Annotated[int, typer.Option(min=1, help="Bootstrap resamples for the confidence intervals.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (the same seed gives the same intervals).")] = 0,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Coverage of the confidence intervals.")] = 0.95,
    allow_partial: Annotated[
        bool, typer.Option("--allow-partial", help="Use an unfinished run's last evaluation, and leave out runs "
                                                   "without one (default: refuse them).")
    ] = False,
) -> None:
    """Aggregate runs (games x seeds) as the Atari 100k papers do (needs rliable).

    Per game: the runs' mean final return, its spread, the human-normalized score (HNS) and
    DIAMOND's published score. Over games: median, IQM, mean and optimality gap of the HNS
    with stratified bootstrap confidence intervals (rliable; Agarwal et al., 2021). Games
    without human scores (MinAtar) get per-game rows only. docs/report.md explains each number.
    """
    with _user_errors("report"):
        from wmcli.outputs.report import build_report, report_tables, to_latex, to_markdown

        fmt = "json" if as_json else fmt.lower()
        if fmt not in ("table", "json", "markdown", "latex"):
            raise WmcliError(f"--format {fmt}: use table, json, markdown or latex")
        result = build_report(runs, reps=reps, seed=seed, confidence=confidence, allow_partial=allow_partial, plot=plot)
        if fmt == "json":
            console.print_json(result)
        elif fmt == "markdown":
            console.say(to_markdown(result).rstrip("\n"))
        elif fmt == "latex":
            console.say(to_latex(result).rstrip("\n"))
        else:
            for table in report_tables(result):
                console.print_columns(*table)
            for n in result["notes"]:
                console.note(n)
        if result["plot"]:
            console.note(f"wrote {result['plot']}")


@app.command()
def imagine(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="World-model checkpoint (wmcli train-wm -o).")],
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
    video_schedule: Annotated[
        Optional[str], typer.Option(help="A video world model's schedule: joint or staggered (default: the recipe's; "
                                         "docs/video_model.md).")
    ] = None,
    evals_per_frame: Annotated[
        Optional[float], typer.Option(help="A video world model's staggered schedule: network evaluations per imagined "
                                           "frame, 1, 2, 3 or 0.5 ... (default: the recipe's).")
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
    scale: Annotated[
        Optional[int], typer.Option(min=1, help="Nearest-neighbour upscaling of the written frames (default: about 256 px "
                                                "a side: 4x for 64x64 frames, 26x for MinAtar's 10x10).")
    ] = None,
    fps: Annotated[float, typer.Option(min=1, help="Frames per second of the video (15: real time at frame skip 4).")] = 15.0,
    show_denoising: Annotated[
        Optional[Path], typer.Option(help="Also write a .png grid of the sampler's predictions of the clean frame, "
                                          "step by step (rows: imagined frames, columns: sampler steps).")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the sampler, policy and game resets (default: drawn and recorded).")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (on stderr with -o -).")] = False,
) -> None:
    """Watch a world model dream: imagined frames from a real start, to a video, image or stream.

    The dream starts from num_context real frames (a fresh reset of the checkpoint's game, or
    --store), then each frame is sampled from the last ones and an action. --horizon counts
    imagined frames; --steps the sampler's denoising steps per frame. Videos show the real
    context frames first. With -o -, stdout carries only the y4m stream:
    wmcli imagine wm.pt -o - | ffmpeg -i - dream.mp4
    """
    with _user_errors("imagine"):
        from wmcli.outputs.imagine import ImagineConfig
        from wmcli.outputs.imagine import imagine as run_imagine

        cfg = ImagineConfig(horizon=horizon, denoising_steps=steps, sampler=sampler, video_schedule=video_schedule,
                            evals_per_frame=evals_per_frame, seed=seed, batch=batch,
                            agent=agent, policy=policy, actions=actions, store=store, episode=episode, start=start,
                            compare=compare, scale=scale, fps=fps, show_denoising=show_denoising, device=device,
                            threads=threads)
        to_stdout = output == "-"
        with console.progress() as report:
            try:
                result = run_imagine(checkpoint, output, cfg, stream=sys.stdout.buffer if to_stdout else None,
                                     on_progress=report)
            except BrokenPipeError:  # the reader of -o - went away (e.g. | head)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
                raise WmcliError("the reader of the y4m stream closed the pipe") from None
            except KeyboardInterrupt:
                raise WmcliError("interrupted before the dream was finished; no file was written", exit_code=130) from None
        if as_json:
            console.say(console.json_text(result), err=to_stdout)
        else:
            cmp = result["compare"]
            extra = (f"; PSNR {cmp['psnr']:.2f} dB vs copy-last {cmp['psnr_copy_last']:.2f} dB" if cmp else "")
            out = result["output"] if isinstance(result["output"], str) else f"{len(result['output'])} files"
            console.say(f"imagined {result['imagined_frames']} frames x {result['batch']} of {result['game']} after "
                        f"{result['context_frames']} real ones into {'stdout' if to_stdout else out} "
                        f"({result['imagined_frames_per_s']:.1f} imagined frames/s){extra}", err=to_stdout)


@app.command()
def play(
    checkpoint: Annotated[Path, typer.Argument(metavar="WM", help="World-model checkpoint (wmcli train-wm -o, or "
                                                                   "wmcli import diamond's wm.pt).")],
    agent: Annotated[
        Optional[Path], typer.Option(help="Agent checkpoint that plays until tab hands control to you (and back).")
    ] = None,
    store: Annotated[
        Optional[Path], typer.Option(help="Start (and restart with r) from real frames of this store.")
    ] = None,
    env: Annotated[
        Optional[str], typer.Option(help="Start from resets of this real game (default: the world model's own game).")
    ] = None,
    episode: Annotated[
        Optional[int], typer.Option(help="With --store: always this episode (0 = oldest, -1 = newest; default: drawn).")
    ] = None,
    start: Annotated[
        Optional[int], typer.Option(min=0, help="With --store: the first context frame in the episode (default: drawn).")
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option("--steps", "--denoising-steps", min=1,
                                    help="Denoising steps per frame to start with ([ and ] change them live; default: "
                                         "the checkpoint's sampler.num_steps).")
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No window: play the --keys file and write the dreamed frames to -o.")
    ] = False,
    keys: Annotated[
        Optional[Path], typer.Option(help="With --headless: a keys file, one line of keys per dreamed frame "
                                          "(docs/play.md).")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="With --headless: .mp4, .gif or .png of the dreamed frames "
                                                            "(default: play.mp4).")
    ] = None,
    record: Annotated[
        Optional[Path], typer.Option(help="The window records the dreamed frames to this .mp4, .gif or .png "
                                          "(v pauses and resumes).")
    ] = None,
    scale: Annotated[
        Optional[int], typer.Option(min=1, help="Nearest-neighbour upscaling (default: about 512 px a side in the "
                                                "window, 256 in files).")
    ] = None,
    fps: Annotated[
        float, typer.Option(min=0, help="The window shows at most this many frames a second (15: real time at frame "
                                        "skip 4; 0: as fast as the sampler goes); also the frame rate of videos.")
    ] = 15.0,
    max_frames: Annotated[
        Optional[int], typer.Option(min=1, help="The window quits after this many dreamed frames.")
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the starts, the sampler and the agent (default: drawn "
                                                     "and recorded).")] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Play the dream: a window on the world model, the arrows and space as the game's buttons.

    Each key press (or the agent's action) dreams the next frame from the last ones; the
    reward/end model scores it, and a dreamed end restarts from fresh real frames. Keys: arrows
    and space (FIRE), held together for combined actions (up+right+space = UPRIGHTFIRE); r
    restart, p pause, [ ] denoising steps, tab agent/you, v recording, q quit. Needs the play
    extra (pip install 'wmcli[play]'), except with --headless --keys FILE.
    """
    with _user_errors("play"):
        from wmcli.outputs.play import PlayConfig
        from wmcli.outputs.play import play as run_play

        cfg = PlayConfig(agent=agent, store=store, env=env, episode=episode, start=start, denoising_steps=steps,
                         seed=seed, headless=headless, keys=keys, output=output, record=record, scale=scale, fps=fps,
                         max_frames=max_frames, device=device, precision=precision, threads=threads)
        with console.progress(enabled=headless) as report:
            result = run_play(checkpoint, cfg, on_progress=report)
        if as_json:
            console.print_json(result)
        else:
            n = result["sampler"]["num_steps"]
            into = f" into {result['output']}" if result["output"] else ""
            rate = f"{result['frames_per_s']:.1f} frames/s, " if result["frames_per_s"] else ""
            console.say(f"played {count(result['frames'], 'frame')} of {result['game']}{into} ({rate}"
                        f"{count(n, 'denoising step')}, {count(result['restarts'], 'restart')}, "
                        f"score {result['score']:+g})")


@app.command()
def fvd(
    real: Annotated[Path, typer.Argument(metavar="REAL", help="Real videos: a folder of .mp4/.gif/.npz files, one such file, a store, or FILE.npz:ARRAY.")],
    generated: Annotated[Path, typer.Argument(metavar="GENERATED", help="Generated videos, in any of the same forms.")],
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
    as_json: JsonOpt = False,
) -> None:
    """Fréchet Video Distance between real and generated videos, with I3D features.

    Videos are cut into consecutive 16-frame clips, resized to 224x224 and embedded by I3D
    (Kinetics-400 logits); FVD is the Fréchet distance of the two Gaussians (docs/fvd.md).
    When the sets pair up (same count, same lengths), also per-frame PSNR, SSIM and a
    temporal-consistency score (docs/metrics.md).
    """
    with _user_errors("fvd"):
        from wmcli.outputs.fvd import FvdConfig, fvd_of_paths, fvd_rows

        cfg = FvdConfig(clip_len=clip_len, size=size, max_clips_per_video=max_clips_per_video, batch_size=batch_size)
        with console.progress() as report:
            result = fvd_of_paths(real, generated, detector, cfg, device, on_progress=report)
        for w in result["warnings"]:
            console.warn(w)
        if as_json:
            console.print_json(result)
        else:
            console.print_table(f"FVD {real} vs {generated}", fvd_rows(result))


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="A world-model or agent checkpoint (wmcli train-wm -o, "
                                                                    "train-agent -o, import diamond).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The model folder to write (model.safetensors, "
                                                                "config.json, README.md).")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing non-empty folder instead of refusing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a checkpoint as a Hugging Face model folder: safetensors weights, config.json, a model card.

    Every command that takes a checkpoint takes the folder too; loading it runs no code from the
    files. The optimizer state is left out (a training cannot resume from the folder). Push it
    with the huggingface_hub package: hf upload USER/NAME DIR . (wmcli never uses the network;
    docs/export.md).
    """
    with _user_errors("export"):
        from wmcli.outputs.export import export as run_export

        result = run_export(checkpoint, output, overwrite=overwrite)
        if as_json:
            console.print_json(result)
        else:
            params = ", ".join(f"{name} {n:,}" for name, n in result["parameters"].items())
            console.say(f"exported the {result['kind'].replace('_', ' ')} of {result['game']} ({params} parameters) to "
                        f"{result['folder']} ({result['bytes'] / 1e6:.1f} MB, {result['seconds']:.1f} s); "
                        f"push it with: {result['upload']}")


@store_app.command("info")
def store_info(
    path: Annotated[Path, typer.Argument(metavar="STORE", help="Store folder.")],
    skip_bad: Annotated[bool, typer.Option(help="Skip unreadable episode files (listed on stderr).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Episodes, frames, returns, action histogram and protocol of a store."""
    with _user_errors("store info"):
        from wmcli.data.store import Store
        from wmcli.data.store_summary import summarize, summary_rows

        st = Store.open(path)
        if skip_bad:
            for bad, why in st.bad_files():
                console.note(f"skipping {bad.name}: {why.split(': ', 1)[-1].split(';')[0]}")
        s = summarize(st, skip_bad=skip_bad)
        held, line = _held_out_record(st)
        s["held_out_recorded"] = held
        if as_json:
            console.print_json(s)
        else:
            console.print_table(f"store {s['store']}", [*summary_rows(s), ("held out (recorded)", line)])


def _held_out_record(store) -> tuple[dict | None, str]:
    """The store's recorded held-out split (wmcli store split) for `store info`: the numbers (None
    without one) and a few words. A damaged record is said, not fatal: info is for looking."""
    from wmcli.data.shaping import split_summary

    try:
        r = split_summary(store)
    except WmcliError as e:
        return {"error": str(e)}, f"unreadable: {str(e).split(': ', 1)[-1]}"
    if not r["recorded"]:
        return None, "none (train-wm holds out train_wm.val_fraction by a hash of the names)"
    r.pop("held_out_episodes")
    gone = f", {r['missing']} recorded ones gone" if r["missing"] else ""
    return r, f"{count(r['held_out'], 'episode')} ({_how_drawn(r)}{gone}); {r['training']} train"


def _how_drawn(r: dict) -> str:
    return "carried over by a merge" if r["merged_from"] else f"fraction {r['fraction']}, seed {r['seed']}"


@store_app.command("preview")
def store_preview(
    path: Annotated[Path, typer.Argument(metavar="STORE", help="Store folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The video: .mp4 or .gif.")] = Path("episodes.mp4"),
    episodes: Annotated[
        Optional[str], typer.Option(help="Episodes by index in the store's order (0 = oldest, -1 = newest), e.g. "
                                         "0,3,5-8 or -4--1 (default: the first 4).")
    ] = None,
    layout: Annotated[str, typer.Option(help="grid: side by side, a finished one holding its last frame; sequence: "
                                             "one after another.")] = "grid",
    fps: Annotated[float, typer.Option(min=1, help="Frames per second (15: real time at frame skip 4).")] = 15.0,
    scale: Annotated[
        Optional[int], typer.Option(min=1, help="Nearest-neighbour upscaling (default: about 256 px a frame, less in "
                                                "grids of more than 4).")
    ] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="Steps shown of each episode, from its start (the rest is not "
                                                        "read).")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Watch a store's episodes: a video with each episode's index, step and return so far.

    Only the episodes asked for are read. Under each frame: ep (index), t (step), R (return so
    far), and on its last frame why it stops: done (game over), cut (truncated) or capped
    (--max-steps).
    """
    with _user_errors("store preview"):
        from wmcli.outputs.preview import PreviewConfig, preview_store

        cfg = PreviewConfig(episodes=episodes, layout=layout, fps=fps, scale=scale, max_steps=max_steps)
        with console.progress() as report:
            r = preview_store(path, output, cfg, on_progress=report)
        if as_json:
            console.print_json(r)
            return
        shown = ", ".join(map(str, r["episodes"]))
        console.say(f"wrote {r['output']}: {count(len(r['episodes']), 'episode')} of {r['game']} ({shown}) as a "
                    f"{r['layout']}, {r['frames']} frames ({r['seconds_of_video']:.1f} s at {r['fps']:g} fps), "
                    f"{r['size'][1]}x{r['size'][0]}")
        if r["capped"]:
            console.note(f"episodes {', '.join(map(str, r['capped']))} are longer than --max-steps {max_steps}: "
                         f"shown up to it (\"capped\")")


@store_app.command("merge")
def store_merge(
    sources: Annotated[list[Path], typer.Argument(metavar="STORE...", help="Stores of one game and protocol.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The new store (built beside it, renamed into place "
                                                                  "at the end).")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing -o store, only when every episode in it is in "
                                                 "the stores merged (nothing is lost).")] = False,
    copy: Annotated[bool, typer.Option("--copy", help="Copy the episode files (default: hard links where the file "
                                                      "system allows; copies elsewhere).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge stores into a new one; the sources are not changed.

    All must hold one game, protocol, frame shape and action set. Episode files keep their names
    (so their order by landing time) and attributes; they are hard links of the sources' files
    (episode files are never changed in place) unless --copy or another file system. Episodes
    still under way (partial/) are not merged. Held-out records (wmcli store split) carry over.
    """
    with _user_errors("store merge"):
        from wmcli.data.shaping import merge_stores

        r = merge_stores(sources, output, overwrite=overwrite, copy=copy)
        if as_json:
            console.print_json(r)
            return
        per = ", ".join(f"{n} from {s}" for n, s in zip(r["per_source"], r["sources"]))
        how = f"{r['linked']} linked, {r['copied']} copied" if r["linked"] and r["copied"] else (
            "hard links" if r["linked"] else "copies")
        console.say(f"merged {count(r['episodes'], 'episode')} of {r['game']} into {r['output']} ({per}; {how}, "
                    f"{r['bytes'] / 1e6:.1f} MB)")
        if r["duplicates"]:
            console.note(f"{count(r['duplicates'], 'episode')} found in two stores taken once")
        if r["unfinished_not_merged"]:
            console.note(f"{count(r['unfinished_not_merged'], 'unfinished episode')} (partial/) not merged: only "
                         f"finished episodes are")
        if r["held_out"] is not None:
            console.note(f"held-out records carried over: {count(r['held_out'], 'episode')} held out in {r['output']} "
                         f"(from {', '.join(r['held_out_from'])}); the other episodes train")


@store_app.command("split")
def store_split(
    path: Annotated[Path, typer.Argument(metavar="STORE", help="Store folder.")],
    held_out: Annotated[
        Optional[float], typer.Option(help="Fraction of the finished episodes to hold out, drawn "
                                                              "at random (whole episodes; at least 1 of 2 or more).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the draw: the same store and seed draw the same episodes.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Draw again over a recorded split.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the recorded split (back to the hash split).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record the held-out episodes that train-wm, distill and eval --store use.

    The list is written to STORE/held-out.json; from then on those exact episodes are held out
    (train_wm.val_fraction is not used) and episodes added later train. Without --held-out or
    --clear: show the recorded split.
    """
    with _user_errors("store split"):
        from wmcli.data.shaping import clear_split, record_split, split_summary
        from wmcli.data.store import Store

        if clear and held_out is not None:
            raise WmcliError("give --held-out or --clear, not both")
        st = Store.open(path)
        if clear:
            had = clear_split(st)
            console.say(f"removed the held-out record of {st.path}" if had else f"{st.path} records no split")
            return
        r = record_split(st, held_out, seed, overwrite) if held_out is not None else split_summary(st)
        if as_json:
            console.print_json(r)
        elif not r["recorded"]:
            console.say(f"{st.path} records no split: train-wm holds out train_wm.val_fraction of it by a hash of "
                        f"each file name (record one with --held-out 0.1)")
        else:
            console.print_table(f"held-out split of {st.path}", [
                ("held out", f"{count(r['held_out'], 'episode')}" + (f" ({r['missing']} recorded ones gone)"
                                                                     if r["missing"] else "")),
                ("training", f"{count(r['training'], 'episode')}"),
                ("drawn", _how_drawn(r) + f", of {r['episodes_at_split']} episodes"),
                ("record", r["file"]),
            ])


@store_app.command("import")
def store_import(
    src: Annotated[str, typer.Argument(metavar="SRC", help="Folder or file of recorded episodes, or a local Minari dataset id.")],
    store: Annotated[Path, typer.Option(help="Store folder to create or append to.")],
    format: Annotated[
        Optional[str], typer.Option("--format", help="diamond, csgo, minari, arrays or videos (default: told from SRC).")
    ] = None,
    game: Annotated[
        Optional[str], typer.Option(help="The real game the data is of (Breakout, minatar:Breakout): its action set "
                                         "and protocol, so agents trained on the store can play it.")
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Without --game: the game name the store records.")] = None,
    frame_size: Annotated[
        Optional[int], typer.Option(min=8, help="Resize frames to SIZE x SIZE (default: the store's, else the source's).")
    ] = None,
    num_actions: Annotated[
        Optional[int], typer.Option(min=1, help="Without --game: the size of the action set (default: the largest seen + 1).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Import at most this many new episodes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import recorded trajectories into a store: DIAMOND's dataset folders, the CS:GO dataset's HDF5
    files, local Minari datasets, .npz/.h5 files of arrays (one per episode), or videos with an
    actions.csv (docs/data.md).

    Each episode lands whole (a kill keeps the finished ones); running again skips what is there.
    """
    with _user_errors("store import"):
        from wmcli.data.importers import import_episodes

        with console.progress() as report:
            result = import_episodes(src, store, format, game, name, frame_size, num_actions, limit, report)
        rate = f", {result['frames_per_s']:.0f} frames/s" if result["frames_per_s"] else ""
        _filled_store(result, as_json, f"imported {count(result['episodes_imported'], 'episode')} "
                      f"({result['frames_imported']:,} frames{rate}) from {result['source']} ({result['format']}); "
                      f"{result['episodes_skipped']} already there",
                      "every finished episode is in the store, and running again goes on")


@app.command()
def envs(as_json: JsonOpt = False) -> None:
    """List the games wmcli can play: every ALE ROM shipped with ale-py, and MinAtar's games."""
    with _user_errors("envs"):
        from wmcli.data.env import all_game_names

        names = all_game_names()
        if as_json:
            console.print_json(names)
        else:
            console.say("\n".join(names))


@recipes_app.callback()
def recipes(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the built-in recipes (`wmcli recipes show NAME` prints one as YAML)."""
    if ctx.invoked_subcommand is not None:
        return
    with _user_errors("recipes"):
        from wmcli.base.recipe import recipe_summaries

        rows = recipe_summaries()
        if as_json:
            console.print_json(rows)
        else:
            console.print_table("recipes (wmcli recipes show NAME)", [(r["name"], r["about"]) for r in rows])


@recipes_app.command("show")
def recipes_show(
    name: Annotated[str, typer.Argument(metavar="NAME", help=f"A built-in recipe ({RECIPES}) or a YAML file.")],
    resolved: Annotated[bool, typer.Option(help="Every value, defaults and `base:` included (default: the file as written).")] = False,
) -> None:
    """Print a recipe as YAML, to start your own from: wmcli recipes show minatar > mine.yaml."""
    with _user_errors("recipes show"):
        from wmcli.base.recipe import recipe_text

        console.say(recipe_text(name, resolved=resolved).rstrip("\n"))


@import_app.command("diamond")
def import_diamond(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A DIAMOND agent checkpoint, e.g. "
                                                                           "atari_100k/models/Breakout.pt.")],
    game: Annotated[str, typer.Option(help="The Atari game it was trained on, e.g. Breakout.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Folder for wm.pt and agent.pt "
                                                                            "(default: diamond-<Game>).")] = None,
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace wm.pt and agent.pt already in the folder.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a trained DIAMOND agent into a wmcli world model (wm.pt) and agent (agent.pt).

    DIAMOND publishes one for each Atari 100k game: the files atari_100k/models/<Game>.pt of the
    Hugging Face repository eloialonso/diamond (download them yourself; wmcli never downloads).
    The file is read without running code from it; the networks' sizes are read off its
    tensors, DIAMOND's other settings come from the atari100k recipe (--set changes them).
    """
    with _user_errors("import diamond"):
        from wmcli.world.diamond import default_import_dir, import_rows
        from wmcli.world.diamond import import_diamond as run_import

        out = output if output is not None else default_import_dir(game)
        result = run_import(checkpoint, game, out, overrides=set_ or [], overwrite=overwrite)
        if as_json:
            console.print_json(result)
        else:
            console.print_table(f"imported {checkpoint}", import_rows(result))


def main() -> None:
    app()
