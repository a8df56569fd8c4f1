"""Every file a command writes fails cleanly where its place cannot be written: one line on stderr
naming the path and the fix, exit code 1, no traceback, and nothing already written is lost.

A place under a regular file cannot be written by anyone, root included (the tests run as root
on some machines, where permission bits do not stop a write).
"""

from __future__ import annotations

import json

import pytest
from conftest import MICRO
from typer.testing import CliRunner

from wmcli.cli import app

runner = CliRunner()


def sets(*extra: str) -> list[str]:
    return [a for s in (*MICRO, *extra) for a in ("--set", s)]


def refused(result, path) -> str:
    """The one error line of a refused write, which must name `path` and say what to do."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and lines[0].startswith("wmcli: error: "), result.stderr
    assert str(path) in lines[0] and "writable" in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def blocker(tmp_path):
    """A regular file: nothing can be created under it."""
    f = tmp_path / "file"
    f.write_text("a file, not a folder")
    return f


def test_checkpoint_and_metrics_of_train_wm(breakout_store, blocker):
    out = blocker / "wm.pt"
    r = runner.invoke(app, ["train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "1",
                            *sets("train_wm.val_every=1000")])
    refused(r, blocker / "wm.metrics.jsonl")


def test_checkpoint_of_train_agent(micro_wm, blocker):
    r = runner.invoke(app, ["train-agent", str(micro_wm), "-o", str(blocker / "agent.pt"), "--steps", "1",
                            *sets()])
    refused(r, blocker / "agent.metrics.jsonl")


def test_tensorboard_events(breakout_store, tmp_path):
    """The events folder's place taken by a file: refused, and the checkpoint of an earlier run kept."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "wm.pt"
    out.write_bytes(b"an earlier checkpoint")
    (tmp_path / "wm.tensorboard").write_text("a file where the events folder would go")
    r = runner.invoke(app, ["train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "1",
                            "--overwrite", *sets("train_wm.val_every=1000")])
    refused(r, tmp_path / "wm.tensorboard")
    assert out.read_bytes() == b"an earlier checkpoint"


@pytest.mark.parametrize("name", ["dream.mp4", "dream.gif", "dream.png", "dream.npz"])
def test_imagine_outputs(micro_wm, blocker, name):
    r = runner.invoke(app, ["imagine", str(micro_wm), "-o", str(blocker / name), "--horizon", "2", "--device", "cpu"])
    refused(r, blocker / name)


def test_imagine_denoising_grid(micro_wm, tmp_path, blocker):
    r = runner.invoke(app, ["imagine", str(micro_wm), "-o", str(tmp_path / "ok.npz"), "--horizon", "2",
                            "--show-denoising", str(blocker / "steps.png"), "--device", "cpu"])
    refused(r, blocker / "steps.png")


def test_eval_video(blocker):
    r = runner.invoke(app, ["eval", "--policy", "random", "--env", "minatar:Breakout", "--episodes", "1",
                            "--video", str(blocker / "v.mp4")])
    refused(r, blocker / "v.mp4")


def test_run_folder(blocker):
    r = runner.invoke(app, ["run", "--recipe", "quick", "--run-dir", str(blocker / "run")])
    refused(r, blocker / "run")


def test_plot(tmp_path, blocker):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "wm.metrics.jsonl"
    metrics.write_text("\n".join(json.dumps({"step": s, "losses/denoiser": 1 / s, "losses/rew_end": 1.0})
                                 for s in (1, 2, 3)))
    r = runner.invoke(app, ["plot", str(metrics), "-o", str(blocker / "c.png")])
    refused(r, blocker / "c.png")


def test_store(blocker):
    r = runner.invoke(app, ["collect", "--env", "minatar:Breakout", "--env-steps", "5", "--store", str(blocker / "s")])
    line = refused(r, blocker / "s")
    assert "--store" in line
