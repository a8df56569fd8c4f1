"""`wmcli imagine`: dreams of the micro world model written as mp4/gif/png/npz, streamed as y4m
through a real pipe, compared with the real frames, and the sampler's steps shown."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import MICRO
from typer.testing import CliRunner

from wmcli.base.config import EnvConfig
from wmcli.cli import app
from wmcli.data.env import make_spec
from wmcli.outputs.video import read_y4m, rgb_to_yuv444

runner = CliRunner()


def imagine(*args: str):
    r = runner.invoke(app, ["imagine", *args])
    return r


@pytest.fixture(scope="module")
def agent_ckpt(tmp_path_factory):
    """An untrained micro agent for Breakout (a real checkpoint, as train-agent writes it)."""
    from wmcli.base.checkpoint import save_checkpoint
    from wmcli.base.recipe import load_recipe
    from wmcli.models.actor_critic import ActorCritic

    recipe = load_recipe("tiny", MICRO)
    spec = make_spec(EnvConfig(game="Breakout"))
    net = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    path = tmp_path_factory.mktemp("agents") / "agent.pt"
    save_checkpoint(path, {"kind": "agent", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                           "models": {"actor_critic": net.state_dict()}, "resume": {}})
    return path


@pytest.mark.slow
def test_mp4_and_gif_hold_context_then_dream_at_the_scaled_size(micro_wm, tmp_path):
    # The command line, as is: 25 denoising steps a frame; 25 imagined frames (the default
    # horizon) after the 4 real context frames.
    r = imagine(str(micro_wm), "--steps", "25", "-o", str(tmp_path / "out.mp4"), "--seed", "0", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sampler"]["num_steps"] == 25
    assert out["imagined_frames"] == 25 and out["context_frames"] == 4 and out["frames"] == 29
    assert out["context"]["kind"] == "game" and out["imagined_frames_per_s"] > 0
    assert iio.imread(tmp_path / "out.mp4", index=None).shape == (29, 256, 256, 3)  # 64 x scale 4

    # --batch 2: the two rollouts side by side (a grid of ceil(sqrt(2)) = 2 columns, 1-pixel gap).
    gif = tmp_path / "out.gif"
    r = imagine(str(micro_wm), "--horizon", "3", "--batch", "2", "--scale", "2", "--fps", "10", "-o", str(gif))
    assert r.exit_code == 0, r.stderr
    assert "imagined frames/s" in r.stdout
    frames = iio.imread(gif, index=None)
    assert frames.shape[1:] == (128, (2 * 64 + 1) * 2, 3)
    # GIF (Pillow) merges identical consecutive frames (the first frames after a reset may be) into
    # one longer frame: the timing still holds all 4 + 3 frames of 100 ms.
    assert sum(iio.immeta(gif, index=i)["duration"] for i in range(len(frames))) == 700


def test_y4m_streams_through_a_pipe_frame_by_frame(micro_wm):
    cmd = [sys.executable, "-m", "wmcli", "imagine", str(micro_wm), "--scale", "1", "--seed", "0", "--horizon", "3",
           "-o", "-"]
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"YUV4MPEG2 W64 H64 ")  # nothing but y4m on stdout
    planes = read_y4m(done.stdout)
    assert planes.shape == (4 + 3, 3, 64, 64)
    assert b"imagined 3 frames" in done.stderr  # the summary went to stderr

    # Frames arrive while the dream goes on: read the context and the first dreamed frame, then
    # see the process still running (97 more frames to sample), and stop it.
    proc = subprocess.Popen(cmd[:-4] + ["--horizon", "100", "-o", "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        header = proc.stdout.readline()
        frame_bytes = len(b"FRAME\n") + 3 * 64 * 64
        first = proc.stdout.read(5 * frame_bytes)
        assert header.startswith(b"YUV4MPEG2") and len(first) == 5 * frame_bytes
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_compare_from_a_store_gives_per_step_psnr(micro_wm, breakout_store, tmp_path):
    png = tmp_path / "cmp.png"
    r = imagine(str(micro_wm), "--store", str(breakout_store.path), "--episode", "0", "--start", "5", "--compare",
                "--horizon", "4", "--steps", "2", "--scale", "1", "-o", str(png), "--json", "--seed", "1")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    cmp = out["compare"]
    assert out["imagined_frames"] == 4 and out["sampler"]["num_steps"] == 2  # --horizon frames, --steps each
    assert len(cmp["psnr_per_step"]) == 4 and len(cmp["psnr_per_step_copy_last"]) == 4
    assert all(isinstance(v, float) for v in cmp["psnr_per_step"]) and cmp["psnr"] > 0
    ep = breakout_store.read_episode(breakout_store.episode_paths()[0])
    assert out["actions"] == [ep.act[5 + 3 : 5 + 3 + 4].tolist()]  # the real actions, from the last context frame
    assert out["context"] == {**out["context"], "kind": "store", "episode": 0, "start": 5}
    # Two strips of 8 frames: real above, dream below; the context frames are real in both.
    r = imagine(str(micro_wm), "--store", str(breakout_store.path), "--episode", "0", "--start", "5", "--compare",
                "--horizon", "4", "--steps", "2", "-o", str(tmp_path / "cmp.npz"), "--seed", "1")
    assert r.exit_code == 0, r.stderr
    labelled = iio.imread(png)
    top, left = 18, labelled.shape[1] - (8 * 65 - 1)  # words above the columns and left of the rows
    assert labelled.shape[0] == top + 2 * 65 - 1 and 20 <= left <= 60
    img = labelled[top:, left:]
    assert img.shape == (2 * 65 - 1, 8 * 65 - 1, 3)
    assert (img[:64, :64] == ep.obs[5]).all() and (img[65:, :64] == ep.obs[5]).all()
    assert (img[:64, 4 * 65 : 4 * 65 + 64] == ep.obs[5 + 4]).all()  # the real frame after the context
    with np.load(tmp_path / "cmp.npz") as z:  # the same dream (same seed) as raw arrays
        assert (img[65:, 4 * 65 : 4 * 65 + 64] == z["videos"][0, 0]).all() and (z["real"][0, 0] == ep.obs[5 + 4]).all()
    # As a video: 129 pixels wide, an odd width H.264 takes only as yuv444p.
    r = imagine(str(micro_wm), "--store", str(breakout_store.path), "--compare", "--horizon", "2", "--scale", "1",
                "-o", str(tmp_path / "cmp.mp4"))
    assert r.exit_code == 0, r.stderr
    assert iio.imread(tmp_path / "cmp.mp4", index=None).shape == (6, 64, 129, 3)


def test_show_denoising_grid_and_fixed_actions(micro_wm, tmp_path):
    den = tmp_path / "den.png"
    r = imagine(str(micro_wm), "--actions", "1,3,2", "--steps", "2", "--show-denoising", str(den),
                "--scale", "1", "-o", str(tmp_path / "d.npz"), "--json", "--seed", "4")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["imagined_frames"] == 3 and out["actions"] == [[1, 3, 2]] and out["sampler"]["num_steps"] == 2
    # Rows: the 3 imagined frames; columns: the 2 sampler steps' predictions of the clean frame.
    assert iio.imread(den).shape == (3 * 65 - 1, 2 * 65 - 1, 3)
    with np.load(tmp_path / "d.npz") as z:
        videos, context = z["videos"], z["context"]
    assert videos.shape == (1, 3, 64, 64, 3) and context.shape == (1, 4, 64, 64, 3)
    # The last column of the denoising grid is the frame itself (the last step ends at sigma = 0).
    assert (iio.imread(den)[-64:, -64:] == videos[0, -1]).all()
    # The same seed dreams the same frames.
    r = imagine(str(micro_wm), "--actions", "1,3,2", "--denoising-steps", "2", "--scale", "1",
                "-o", str(tmp_path / "e.npz"), "--seed", "4")
    with np.load(tmp_path / "e.npz") as z:
        assert (z["videos"] == videos).all()


def test_agent_picks_actions_and_one_file_per_rollout(micro_wm, agent_ckpt, tmp_path):
    r = imagine(str(micro_wm), "--agent", str(agent_ckpt), "--horizon", "2", "--batch", "2", "--scale", "2",
                "-o", str(tmp_path / "roll{i}.mp4"), "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["policy"] == "agent:agent.pt" and out["output"] == [str(tmp_path / f"roll{i}.mp4") for i in range(2)]
    assert out["frame_size"] == [128, 128] and np.array(out["actions"]).shape == (2, 2)
    for i in range(2):
        assert iio.imread(tmp_path / f"roll{i}.mp4", index=None).shape == (6, 128, 128, 3)


def test_context_frames_are_the_real_game(micro_wm, tmp_path):
    """The first frame streamed is the game's reset frame for the seed."""
    from wmcli.data.env import make_env

    r = runner.invoke(app, ["imagine", str(micro_wm), "--horizon", "1", "--scale", "1", "-o", "-", "--seed", "7"])
    assert r.exit_code == 0, r.stderr
    planes = read_y4m(r.stdout_bytes)
    env = make_env(make_spec(EnvConfig(game="Breakout")))
    first = env.reset(seed=7)[0]
    assert planes[0].tobytes() == rgb_to_yuv444(first)


@pytest.mark.parametrize("args, words", [
    (["--compare"], ["--compare", "--store"]),
    (["-o", "x.avi"], ["x.avi", ".mp4"]),
    (["--actions", "1,9"], ["9", "4 actions"]),
    (["--actions", "1,2", "--horizon", "5"], ["2 actions", "5 steps"]),
    (["--sampler", "ddim"], ["ddim", "euler or heun"]),
    (["--show-denoising", "x.gif"], [".png"]),
])
def test_bad_options_are_one_line(micro_wm, tmp_path, args, words):
    r = imagine(str(micro_wm), "-o", str(tmp_path / "x.mp4"), *args)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wmcli: error:") and all(w in lines[0] for w in words), r.stderr


def test_a_short_episode_error_names_one_that_fits(micro_wm, breakout_store, tmp_path):
    lengths = [len(breakout_store.read_episode(p).obs) for p in breakout_store.episode_paths()]
    short = int(np.argmin(lengths))
    horizon = lengths[short] - 4 + 1  # one frame more than the shortest episode holds after 4 context frames
    fits = [i for i, n in enumerate(lengths) if n >= lengths[short] + 1]
    assert fits, "the fixture store should hold episodes of different lengths"

    def error(*args):
        r = imagine(str(micro_wm), "--store", str(breakout_store.path), "--compare", "-o", str(tmp_path / "x.mp4"), *args)
        assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        return r.stderr

    line = error("--episode", str(short), "--horizon", str(horizon))
    assert f"has {lengths[short]} frames" in line and f"e.g. --episode {fits[0]}, {lengths[fits[0]]} frames" in line
    assert f"{len(fits)} of {len(lengths)} fit" in line
    line = error("--horizon", str(max(lengths)))  # 4 + max frames: no episode holds them
    assert f"the longest has {max(lengths)}" in line and "shorter --horizon" in line


def test_an_agent_checkpoint_is_not_a_world_model(agent_ckpt, tmp_path):
    r = imagine(str(agent_ckpt), "-o", str(tmp_path / "x.mp4"))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent checkpoint" in lines[0] and "--agent" in lines[0]
