"""CLI wiring through typer's CliRunner, plus what only a real process shows (imports, exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import run_wmcli
from typer.testing import CliRunner

from wmcli import __version__
from wmcli.cli import app

runner = CliRunner()


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wmcli: error: ")
    return lines[0]


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"wmcli {__version__}"
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "collect" in r.stdout and "store" in r.stdout


def test_help_imports_nothing_heavy():
    """`wmcli --help` stays instant: torch, h5py, ale-py and gymnasium load inside commands only."""
    code = (
        "import sys; from wmcli.cli import app\n"
        "heavy = [m for m in ('torch', 'h5py', 'ale_py', 'gymnasium', 'numpy') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    r = run_wmcli("--help")
    assert r.returncode == 0 and "collect" in r.stdout


def test_collect_json_and_store_info(tmp_path):
    path = tmp_path / "st"
    r = runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "120", "--store", str(path), "--seed", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["game"] == "Pong" and out["env_steps"] == 120 and out["seed"] == 3
    assert out["store_summary"]["steps"] == 120
    r = runner.invoke(app, ["store", "info", str(path), "--json"])
    assert r.exit_code == 0
    info = json.loads(r.stdout)
    assert info["steps"] == 120 and info["game"] == "Pong" and len(info["action_histogram"]) == 6
    assert info["protocol"]["frame_skip"] == 4
    r = runner.invoke(app, ["store", "info", str(path)])
    assert r.exit_code == 0 and "Pong" in r.stdout


def test_default_store_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["collect", "--env", "minatar:Freeway", "--env-steps", "30", "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["store"] == os.path.join("runs", "minatar-Freeway", "store")


def test_envs_lists_games():
    r = runner.invoke(app, ["envs", "--json"])
    names = json.loads(r.stdout)
    assert "Asterix" in names and "minatar:Breakout" in names and len(names) > 100


def test_unknown_game():
    r = runner.invoke(app, ["collect", "--env", "Astrix", "--env-steps", "10"])
    assert r.exit_code == 1
    assert "Asterix" in _one_error_line(r)


def test_unknown_policy(tmp_path):
    r = runner.invoke(app, ["collect", "--env", "Pong", "--policy", "greedy", "--store", str(tmp_path / "s")])
    assert r.exit_code == 1 and "random" in _one_error_line(r)


def test_unwritable_store(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    target = locked / "s"
    if os.access(locked, os.W_OK):  # root writes anywhere; /sys refuses even root
        if not os.path.isdir("/sys"):
            pytest.skip("no unwritable folder to try as this user")
        target = "/sys/wmcli-test-store"
    try:
        r = runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "10", "--store", str(target)])
        line = _one_error_line(r)
        assert r.exit_code == 1 and str(target) in line and "writable --store" in line
    finally:
        locked.chmod(0o700)


def test_store_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "10", "--store", str(blocker / "s")])
    assert r.exit_code == 1 and "cannot create a store" in _one_error_line(r)


def test_other_game_into_a_store_is_refused(tmp_path):
    path = str(tmp_path / "s")
    assert runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "20", "--store", path]).exit_code == 0
    r = runner.invoke(app, ["collect", "--env", "Breakout", "--env-steps", "20", "--store", path])
    assert r.exit_code == 1 and "holds Pong episodes" in _one_error_line(r)
    assert runner.invoke(app, ["store", "info", path, "--json"]).exit_code == 0  # nothing lost


def test_corrupt_episode_file(tmp_path):
    path = tmp_path / "s"
    assert runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "60", "--store", str(path)]).exit_code == 0
    before = json.loads(runner.invoke(app, ["store", "info", str(path), "--json"]).stdout)
    bad = path / "episodes" / "00000000000000000001-bad-000000.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(500))
    r = runner.invoke(app, ["store", "info", str(path)])
    assert r.exit_code == 1 and bad.name in _one_error_line(r)
    r = runner.invoke(app, ["store", "info", str(path), "--skip-bad", "--json"])
    assert r.exit_code == 0 and bad.name in r.stderr
    assert json.loads(r.stdout)["steps"] == before["steps"]


def test_not_a_store(tmp_path):
    r = runner.invoke(app, ["store", "info", str(tmp_path)])
    assert r.exit_code == 1 and "not a wmcli store" in _one_error_line(r)
    r = runner.invoke(app, ["store", "info", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "no store at" in _one_error_line(r)


def test_bad_usage_exit_code_2():
    r = runner.invoke(app, ["collect", "--env", "Pong", "--env-steps", "0"])
    assert r.exit_code == 2


@pytest.mark.parametrize("num_envs", ["1", "2"])
def test_ctrl_c_keeps_finished_episodes(tmp_path, num_envs):
    """SIGINT ends collect (after the current step) with exit 130 and every finished episode in the store."""
    import signal
    import time

    from conftest import popen_wmcli

    from wmcli.data.store import Store

    path = tmp_path / "s"
    proc = popen_wmcli("collect", "--env", "Breakout", "--env-steps", "1000000", "--store", str(path), "--num-envs", num_envs)
    t0 = time.time()
    def finished():  # episode files that landed (not a writer's hidden temporary file)
        return [p for p in (path / "episodes").glob("*.h5") if not p.name.startswith(".")]

    while not (path / "episodes").is_dir() or len(finished()) < 2:
        assert time.time() - t0 < 120 and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    st = Store.open(path)
    assert st.bad_files() == [] and len(st.episode_paths()) >= 2
    with h5py.File(st.episode_paths()[0]) as f:
        assert f["obs"].shape[0] == f["act"].shape[0] + 1 and np.asarray(f["end"])[-1]
