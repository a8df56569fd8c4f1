"""What a new user meets first (issue 11): mismatches and mistakes end in one clear line, a bug
in one line that says how to see its traceback, outputs go only where folders exist, and help
texts list what exists."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from wmcli.base.checkpoint import load_checkpoint, save_checkpoint
from wmcli.base.recipe import list_recipes
from wmcli.cli import app

runner = CliRunner()


def one_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("wmcli: error: "), result.stderr
    return lines[0]


def test_an_unexpected_error_is_one_line_that_says_how_to_see_it(monkeypatch):
    import wmcli.data.env

    def broken():
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(wmcli.data.env, "all_game_names", broken)  # a bug, injected where no input can cause one
    monkeypatch.delenv("WMCLI_DEBUG", raising=False)
    line = one_error(runner.invoke(app, ["envs"]))
    assert "wmcli envs failed unexpectedly: RuntimeError: boom" in line and "--debug" in line
    assert "second line" not in line
    r = runner.invoke(app, ["--debug", "envs"])
    assert isinstance(r.exception, RuntimeError)  # the traceback is there when asked for
    monkeypatch.setenv("WMCLI_DEBUG", "1")
    assert isinstance(runner.invoke(app, ["envs"]).exception, RuntimeError)


def test_a_folder_where_a_checkpoint_is_expected(micro_wm):
    line = one_error(runner.invoke(app, ["eval", str(micro_wm.parent)]))
    assert "is a folder, not a checkpoint file" in line and "wm.pt" in line


def test_a_missing_world_model_names_train_wm(tmp_path):
    line = one_error(runner.invoke(app, ["imagine", str(tmp_path / "wm.pt")]))
    assert "not found" in line and "train-wm" in line and "train-agent" not in line


def test_outputs_go_only_into_folders_that_exist(micro_wm, tmp_path):
    target = tmp_path / "missing" / "deeper" / "out.mp4"
    line = one_error(runner.invoke(app, ["imagine", str(micro_wm), "-o", str(target), "--horizon", "2"]))
    assert f"the folder {target.parent} does not exist" in line and "mkdir -p" in line
    assert not (tmp_path / "missing").exists()


def test_a_checkpoint_whose_weights_do_not_fit(micro_wm, tmp_path):
    ckpt = load_checkpoint(micro_wm, "world_model")
    ckpt["models"]["denoiser"]["unet.conv_in.weight"] = torch.zeros(3, 3)
    del ckpt["format_version"], ckpt["wmcli_version"]
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, ckpt)
    line = one_error(runner.invoke(app, ["imagine", str(bad), "-o", str(tmp_path / "x.mp4"), "--horizon", "2"]))
    assert "denoiser weights do not fit" in line and "unet.conv_in.weight" in line


@pytest.mark.parametrize("command", [["train-wm"], ["train-agent"], ["run"], ["recipes", "show"]])
def test_recipe_help_lists_the_recipes_that_exist(command):
    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    text = re.sub(r"-\n\s*", "-", r.stdout)  # a name wrapped at its hyphen (video-\n atari) is still there
    for name in list_recipes():
        assert name in text


def test_eval_of_a_world_model_on_another_games_store(micro_wm, tmp_path):
    store = tmp_path / "pong"
    assert runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "40", "--store", str(store)]).exit_code == 0
    line = one_error(runner.invoke(app, ["eval", str(micro_wm), "--store", str(store)]))
    assert "Pong" in line and "Breakout" in line and "pass a store of its game" in line


def test_counts_read_right():
    from wmcli.base.progress import count

    assert count(1, "episode") == "1 episode" and count(3, "episode") == "3 episodes"
    assert count(1200, "step") == "1,200 steps" and count(0, "epoch") == "0 epochs"


def test_store_summary_of_minatar_and_lengths_of_whole_games(tmp_path):
    import numpy as np
    from conftest import random_episode

    from wmcli.base.config import EnvConfig
    from wmcli.data.env import make_spec
    from wmcli.data.store import Store
    from wmcli.data.store_summary import summarize, summary_rows

    spec = make_spec(EnvConfig(game="minatar:Breakout"))
    store = Store.create_or_open(tmp_path / "s", spec.to_dict())
    w = store.writer()
    w.write(random_episode(10, end=True))
    w.write(random_episode(30, end=True))
    w.write(random_episode(100, end=False))  # cut: its length and return are partial
    s = summarize(store)
    assert s["length_mean"] == 20.0 and s["complete_episodes"] == 2
    assert np.isfinite(s["return_mean"])
    rows = dict(summary_rows(s))
    assert "nearest upscaling" in rows["protocol"] and "noop_max" not in rows["protocol"]
    assert rows["episode length (complete)"] == "mean 20.00 steps"
    assert "noop_max" in s["protocol"]  # the recorded protocol itself is unchanged (--json)


def test_compare_png_labels_its_rows_and_columns(micro_wm, breakout_store, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "cmp.png"
    r = runner.invoke(app, ["imagine", str(micro_wm), "--store", str(breakout_store.path), "--episode", "-1",
                            "--compare", "--horizon", "3", "-o", str(out), "--seed", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    image = iio.imread(out)
    scale, n, T = 4, 4, 3  # 64x64 frames are shown 4x by default; 4 context frames, 3 imagined
    grid_w, grid_h = (n + T) * 65 * scale - scale, 2 * 65 * scale - scale
    assert image.shape[0] == grid_h + 18 and image.shape[1] > grid_w  # a header row and a left margin of words
    margin, header = image[18:, : image.shape[1] - grid_w], image[:18]
    assert margin.max() >= 200 and header.max() >= 200  # "real", "dream"; "real context", "imagined" and rules


def test_small_frames_are_shown_large(tmp_path):
    from wmcli.outputs.video import default_scale

    assert default_scale(64) == 4 and default_scale(10) == 26 and default_scale(512) == 1


def test_help_wraps_plainly_without_type_noise():
    r = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "<bool>" not in r.stdout and "│" not in r.stdout
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    assert "--set SECTION.KEY=VALUE" in r.stdout


def test_threads_are_a_setting(micro_wm, tmp_path, monkeypatch):
    import json

    from conftest import MICRO

    sets = [a for s in (*MICRO, "train_agent.checkpoint_every=1000") for a in ("--set", s)]
    r = runner.invoke(app, ["train-agent", str(micro_wm), "-o", str(tmp_path / "a.pt"), "--steps", "1", "--threads", "2",
                            "--json", *sets])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["threads"] == 2
    monkeypatch.setenv("WMCLI_THREADS", "many")
    line = one_error(runner.invoke(app, ["train-agent", str(micro_wm), "-o", str(tmp_path / "b.pt"), "--steps", "1", *sets]))
    assert "WMCLI_THREADS must be a whole number" in line
    torch.set_num_threads(1)  # as conftest keeps it for the rest of the suite


def test_train_agent_ctrl_c_saves_and_names_the_resume_command(micro_wm, tmp_path):
    import signal
    import time

    from conftest import MICRO, popen_wmcli

    out = tmp_path / "agent.pt"
    p = popen_wmcli("train-agent", str(micro_wm), "-o", str(out), "--steps", "100000",
                    *[a for s in (*MICRO, "train_agent.log_every=1", "train_agent.checkpoint_every=100000")
                      for a in ("--set", s)])
    deadline = time.time() + 120
    metrics = out.with_suffix(".metrics.jsonl")
    while not (metrics.exists() and metrics.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    step = load_checkpoint(out, "agent")["step"]
    assert f"interrupted at step {step}; the agent {out} holds it; continue with: wmcli train-agent" in err
    assert err.rstrip().endswith("--resume")


def test_plain_progress_lines_for_logs(capsys):
    """Without a terminal, progress is a line per task now and then and when it completes; a task
    that runs again (the next epoch of a run) reports again."""
    from wmcli import console
    from wmcli.base.progress import Progress

    with console.progress(every=3600) as report:
        for done in (10, 20, 30):
            report(Progress("train-wm", done, 30, "steps", {"denoiser": 0.5}, seconds=done / 10))
        report(Progress("train-wm", 30, 30, "steps", {"denoiser": 0.5}, seconds=3.0))  # said once only
        report(Progress("train-wm", 5, 40, "steps", {"denoiser": 0.4}, seconds=4.0))  # the next epoch
        report(Progress("train-agent", 60, 60, "steps", {"loss": 0.3}, seconds=7.0))
        report(Progress("train-agent", 90, 90, "steps", {"loss": 0.2}, seconds=2.0))  # again: only its last report
        report(Progress("eval", 4, 4, "episodes", {}, seconds=1.0))
        report(Progress("eval", 4, 4, "episodes", {}, seconds=0.5))  # same total, a new run (its clock restarted)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "train-wm: 10/30 steps (33%), 1s elapsed  denoiser 0.5000",
        "train-wm: 30/30 steps (100%), 3s elapsed  denoiser 0.5000",
        "train-wm: 5/40 steps (12%), 4s elapsed, eta 28s  denoiser 0.4000",
        "train-agent: 60/60 steps (100%), 7s elapsed  loss 0.3000",
        "train-agent: 90/90 steps (100%), 2s elapsed  loss 0.2000",
        "eval: 4/4 episodes (100%), 1s elapsed",
        "eval: 4/4 episodes (100%), 0s elapsed",
    ]
