"""`wmcli eval`: the score table, whole-game evaluation in real ALE games, and the CLI for agents
and world models (real torch, micro networks)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from conftest import MICRO, run_wmcli
from typer.testing import CliRunner

from wmcli.base.config import EnvConfig
from wmcli.cli import app
from wmcli.data.env import make_spec
from wmcli.outputs.evaluate import ATARI_100K, HUMAN_RANDOM, evaluate_policy, human_normalized

runner = CliRunner()


# --------------------------------------------------------------------------------------------
# The table and the human-normalized score.


def test_hns_arithmetic():
    # Breakout: random 1.7, human 30.5 -> (16.1 - 1.7) / (30.5 - 1.7) = 14.4 / 28.8 = 0.5
    assert human_normalized("Breakout", 16.1) == pytest.approx(0.5)
    assert human_normalized("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("minatar:Breakout", 10.0) is None
    # DIAMOND's mean HNS over the 26 games, as its paper reports it.
    diamond = [human_normalized(g, HUMAN_RANDOM[g].diamond) for g in ATARI_100K]
    assert np.mean(diamond) == pytest.approx(1.459, abs=1e-3)


def test_table_covers_the_27_games_under_their_canonical_names():
    assert len(ATARI_100K) == 26 and len(HUMAN_RANDOM) == 27 and "SpaceInvaders" in HUMAN_RANDOM
    for game in HUMAN_RANDOM:
        assert make_spec(EnvConfig(game=game)).name == game
    assert make_spec(EnvConfig(game="ms_pacman")).name in HUMAN_RANDOM


# --------------------------------------------------------------------------------------------
# evaluate_policy in the real game.


def test_whole_games_life_loss_is_not_an_end(breakout_spec, tmp_path):
    r = evaluate_policy(breakout_spec, None, episodes=3, num_envs=2, seed=0, video_path=tmp_path / "first.mp4")
    eps = r["per_episode"]
    assert r["episodes"] == r["episodes_requested"] == 3 and len(eps) == 3 and not r["interrupted"]
    for e in eps:  # Breakout has 5 lives: a random game ends at the 5th life lost, not the 1st
        assert not e["truncated"] and e["life_losses"] == 5 and e["length"] > 100
        assert e["hns"] == pytest.approx(human_normalized("Breakout", e["return"]))
    assert r["return_mean"] == pytest.approx(np.mean([e["return"] for e in eps]))
    assert r["hns"] == pytest.approx(human_normalized("Breakout", r["return_mean"]))
    assert r["reference"] == {"random": 1.7, "human": 30.5, "diamond": 132.5}
    import imageio.v3 as iio

    assert len(iio.imread(r["video"], index=None)) == eps[0]["length"] + 1  # reset frame + one per step

    again = evaluate_policy(breakout_spec, None, episodes=3, num_envs=2, seed=0)
    assert again["per_episode"] == eps
    other = evaluate_policy(breakout_spec, None, episodes=3, num_envs=2, seed=1)
    assert [e["length"] for e in other["per_episode"]] != [e["length"] for e in eps]


def test_frame_cap_truncates_and_step_budget_cuts():
    spec = make_spec(EnvConfig(game="Breakout", max_episode_frames=400))
    r = evaluate_policy(spec, None, episodes=3, num_envs=2, seed=0)
    assert [(e["length"], e["truncated"]) for e in r["per_episode"]] == [(100, True)] * 3  # 400 frames / skip 4
    assert r["truncated_episodes"] == 3
    cut = evaluate_policy(spec, None, episodes=3, num_envs=2, seed=0, max_steps=50)
    assert [(e["length"], e["truncated"]) for e in cut["per_episode"]] == [(25, True), (25, True)]


def test_first_ctrl_c_reports_finished_episodes(breakout_spec):
    sent = []

    def interrupt(p):  # Ctrl-C once the first episode is in
        if p.done >= 1 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    r = evaluate_policy(breakout_spec, None, episodes=1000, num_envs=1, seed=0, on_progress=interrupt)
    assert r["interrupted"] and 1 <= r["episodes"] < 1000
    assert all(not e["truncated"] and e["life_losses"] == 5 for e in r["per_episode"])


# --------------------------------------------------------------------------------------------
# The CLI.


def test_cli_random_policy_json():
    r = run_wmcli("eval", "--policy", "random", "--env", "Breakout", "--episodes", "3", "--num-envs", "2",
                  "--seed", "0", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["episodes"] == 3 and len(out["per_episode"]) == 3 and out["game"] == "Breakout"
    assert out["policy"] == "random" and out["seed"] == 0 and out["hns"] is not None


@pytest.mark.parametrize("args, words", [
    (["--env", "Breakoutt"], ["unknown game", "Breakout"]),
    (["--env", "Breakout", "--mode", "99"], ["no mode 99", "modes are"]),
    (["--env", "Breakout", "--video", "out.avi"], ["out.avi", ".mp4"]),
])
def test_cli_bad_input_is_one_line(args, words):
    r = runner.invoke(app, ["eval", "--episodes", "1", *args])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wmcli: error:") and all(w in lines[0] for w in words)


@pytest.fixture(scope="module")
def agent_ckpt(tmp_path_factory):
    """An untrained micro agent (uniform policy) for Breakout with a 400-frame cap."""
    from wmcli.base.checkpoint import save_checkpoint
    from wmcli.base.recipe import load_recipe
    from wmcli.models.actor_critic import ActorCritic

    recipe = load_recipe("tiny", MICRO)
    spec = make_spec(EnvConfig(game="Breakout", max_episode_frames=400))
    net = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    path = tmp_path_factory.mktemp("agents") / "agent.pt"
    save_checkpoint(path, {"kind": "agent", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                           "models": {"actor_critic": net.state_dict()}, "resume": {}})
    return path


def test_cli_agent_plays_its_own_game_and_protocol(agent_ckpt):
    r = runner.invoke(app, ["eval", str(agent_ckpt), "--episodes", "2", "--num-envs", "2", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["policy"] == "agent:agent.pt" and out["game"] == "Breakout" and out["episodes"] == 2
    assert out["protocol"]["max_episode_frames"] == 400 and all(e["length"] <= 100 for e in out["per_episode"])
    r = runner.invoke(app, ["eval", str(agent_ckpt), "--episodes", "2", "--num-envs", "2", "--seed", "3"])
    assert r.exit_code == 0 and "human-normalized" in r.stdout and "agent:agent.pt" in r.stdout
    # Greedy: an untrained agent's logits are all 0, so argmax is NOOP: no ball, no point, until the cap.
    r = runner.invoke(app, ["eval", str(agent_ckpt), "--greedy", "--episodes", "2", "--num-envs", "1", "--json"])
    out = json.loads(r.stdout)
    assert out["greedy"] and [(e["return"], e["length"], e["truncated"]) for e in out["per_episode"]] == [(0.0, 100, True)] * 2


def test_cli_agent_for_another_action_count_is_refused(agent_ckpt):
    r = runner.invoke(app, ["eval", str(agent_ckpt), "--env", "Pong", "--episodes", "1"])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Breakout (64x64x3 frames, 4 actions)" in lines[0]
    assert "Pong (64x64x3 frames, 6 actions)" in lines[0] and "use an agent trained on this game" in lines[0]


def test_cli_wrong_kind_names_the_fix(micro_wm, agent_ckpt, breakout_store):
    r = runner.invoke(app, ["eval", str(micro_wm), "--episodes", "1"])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "world-model checkpoint" in lines[0] and "--store" in lines[0]
    r = runner.invoke(app, ["eval", str(agent_ckpt), "--store", str(breakout_store.path)])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent checkpoint" in lines[0] and "drop --store" in lines[0]


def test_cli_world_model_on_held_out_episodes(micro_wm, breakout_store):
    from wmcli.base.checkpoint import load_checkpoint
    from wmcli.data.store import split_episodes

    r = runner.invoke(app, ["eval", str(micro_wm), "--store", str(breakout_store.path), "--segments", "4",
                            "--horizon", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("loss_denoiser", "psnr_1step", "psnr_1step_copy_last", "psnr_rollout", "psnr_rollout_copy_last",
                "reward", "end", "held_out_episodes"):
        assert key in out
    assert out["game"] == "Breakout" and out["horizon"] == 3 and len(out["psnr_per_step"]) == 3
    assert set(out["reward"]) == {"precision", "recall", "f1", "support"}
    val_fraction = load_checkpoint(micro_wm, "world_model")["recipe"]["train_wm"]["val_fraction"]
    held_out = split_episodes(breakout_store.episode_paths(), val_fraction)[1]
    nonzero = sum(int(np.count_nonzero(breakout_store.read_episode(p, frames=False).rew)) for p in held_out)
    assert out["held_out_episodes"] == len(held_out) and out["reward"]["support"] == nonzero
    r = runner.invoke(app, ["eval", str(micro_wm), "--store", str(breakout_store.path), "--segments", "4",
                            "--horizon", "3"])
    assert r.exit_code == 0 and "copy-last" in r.stdout


def test_cli_missing_checkpoint_names_it(tmp_path):
    r = run_wmcli("eval", str(tmp_path / "nope.pt"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.pt not found" in lines[0] and "train-agent" in lines[0]
