"""The decisions the CLI used to make, now library functions a Python user calls too: which recipe
a training starts from, what a checkpoint is, which game and policy play, default paths, seeds,
the one env compatibility check, progress records and the metrics log (JSON lines + TensorBoard)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import MICRO

from wmcli.base.checkpoint import load_checkpoint, read_checkpoint, recipe_for
from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.base.progress import Every
from wmcli.base.recipe import load_recipe
from wmcli.base.seeds import draw_seed
from wmcli.data.env import default_store_path, make_spec, store_for
from wmcli.data.policy import RandomPolicy
from wmcli.data.spec import EnvSpec
from wmcli.run import default_run_dir, run_setup
from wmcli.training.loop import MetricsLog, scalars, tensorboard_dir
from wmcli.world.agent import AgentPolicy, game_and_policy


def test_recipe_for_prefers_a_name_then_what_it_continues_then_the_default(micro_wm, tmp_path):
    assert recipe_for("minatar").env.game == "minatar:Breakout"
    assert recipe_for(None) == load_recipe("tiny")
    stored = load_checkpoint(micro_wm, "world_model")["recipe"]
    inherited = recipe_for(None, ["train_wm.steps=7"], inherit=((tmp_path / "missing.pt", "agent"), (micro_wm, "world_model")))
    assert inherited.denoiser.unet.channels == tuple(stored["denoiser"]["unet"]["channels"]) == (8, 8)
    assert inherited.train_wm.steps == 7
    with pytest.raises(WmcliError, match="is a world-model checkpoint"):
        recipe_for(None, inherit=((micro_wm, "agent"),))


def test_a_checkpoint_says_what_it_is(micro_wm, tmp_path):
    assert read_checkpoint(micro_wm)["kind"] == "world_model"
    with pytest.raises(WmcliError) as e:
        load_checkpoint(micro_wm, "agent", hint="measure it with --store")
    assert "is a world-model checkpoint" in str(e.value) and str(e.value).endswith("measure it with --store")
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(WmcliError, match="not a readable wmcli checkpoint"):
        read_checkpoint(tmp_path / "x.pt")


def test_game_and_policy(tmp_path, micro_wm):
    play = game_and_policy("minatar:Breakout", "random", seed=5)
    assert play.spec.name == "minatar:Breakout" and isinstance(play.policy, RandomPolicy) and play.seed == 5
    assert game_and_policy("Pong").seed >= 0  # drawn, and returned to be recorded
    with pytest.raises(WmcliError, match="--env is required"):
        game_and_policy(None, "random")
    with pytest.raises(WmcliError, match="neither 'random' nor an existing agent checkpoint"):
        game_and_policy("Pong", str(tmp_path / "nope.pt"))
    with pytest.raises(WmcliError, match="is a world-model checkpoint"):
        game_and_policy(None, str(micro_wm))


def test_game_and_policy_with_an_agent(tmp_path):
    from wmcli.base.checkpoint import save_checkpoint
    from wmcli.models.actor_critic import ActorCritic

    recipe = load_recipe("tiny", MICRO)
    spec = make_spec(EnvConfig(game="Breakout", max_episode_frames=400))
    net = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    path = tmp_path / "agent.pt"
    save_checkpoint(path, {"kind": "agent", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                           "models": {"actor_critic": net.state_dict()}, "resume": {}})
    play = game_and_policy(None, path, seed=1, env_options={"mode": None, "frame_size": 32})
    assert isinstance(play.policy, AgentPolicy) and play.spec.config.max_episode_frames == 400  # its own protocol
    with pytest.raises(WmcliError, match="use an agent trained on this game"):
        game_and_policy("Pong", path)
    with pytest.raises(WmcliError, match="set the frame size to the agent's, 64"):
        game_and_policy("Breakout", path, env_options={"frame_size": 32})


def test_env_spec_round_trips_without_an_emulator_and_checks_fits():
    spec = make_spec(EnvConfig(game="Breakout", sticky_prob=0.25))
    again = EnvSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.to_dict() == spec.to_dict()
    pong = make_spec(EnvConfig(game="Pong"))
    with pytest.raises(WmcliError) as e:
        spec.check_fits(pong, "this model", "that store", "pass a Breakout store")
    assert str(e.value) == ("this model is for Breakout (64x64x3 frames, 4 actions), but that store is for Pong "
                            "(64x64x3 frames, 6 actions); pass a Breakout store")
    spec.check_fits(make_spec(EnvConfig(game="Breakout")), "a", "b", "c")  # same game and shapes: fine
    with pytest.raises(WmcliError):
        spec.check_fits(make_spec(EnvConfig(game="Breakout", frame_size=32)), "a", "b", "c")


def test_default_paths():
    assert default_store_path("minatar:Breakout") == Path("runs/minatar-Breakout/store")
    assert store_for(None, "breakout") == Path("runs/Breakout/store") and store_for("x", None) == Path("x")
    with pytest.raises(WmcliError, match="pass --store PATH"):
        store_for(None, None)
    assert default_run_dir("quick", "minatar:Breakout") == Path("runs/minatar-Breakout-quick")
    rec, folder = run_setup("quick")
    assert folder == Path("runs/minatar-Breakout-quick") and rec == load_recipe("quick")
    assert run_setup(None, run_dir=Path("d"), resume=True) == (None, Path("d"))
    with pytest.raises(WmcliError, match="keeps its own recipe"):
        run_setup(None, ["run.epochs=1"], run_dir=Path("d"), resume=True)


def test_seeds_are_drawn_in_one_place():
    assert draw_seed(7) == 7
    drawn = {draw_seed(None) for _ in range(5)}
    assert len(drawn) > 1 and all(0 <= s < 2**31 for s in drawn)


def test_every_throttles():
    every = Every(3600)
    assert every() and not every()


def test_metrics_log_writes_json_lines_and_the_same_names_to_tensorboard(tmp_path):
    tb = pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    del tb
    path = tmp_path / "wm.metrics.jsonl"
    with MetricsLog(path) as log:
        log.write({"step": 1, "losses/denoiser": 0.5, "charts/lr": 1e-4}, 1)
        log.write({"step": 2, "losses/denoiser": 0.25, "val/psnr_1step": 30.0, "eval": {"return_mean": 2.0}}, 2)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[1]["losses/denoiser"] == 0.25
    events = EventAccumulator(str(tensorboard_dir(path)))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"losses/denoiser", "charts/lr", "val/psnr_1step", "eval/return_mean"} <= tags and "step" not in tags
    assert [(e.step, e.value) for e in events.Scalars("losses/denoiser")] == [(1, 0.5), (2, 0.25)]
    assert tensorboard_dir(path) == tmp_path / "wm.tensorboard"
    assert scalars({"wm_val": {"val/psnr_1step": 3.0}, "epoch": 1}) == {"val/psnr_1step": 3.0, "epoch": 1.0}


def test_metrics_log_without_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setenv("WMCLI_TENSORBOARD", "0")
    with MetricsLog(tmp_path / "a.metrics.jsonl") as log:
        log.write({"step": 1, "losses/total": 1.0}, 1)
    assert not (tmp_path / "a.tensorboard").exists() and (tmp_path / "a.metrics.jsonl").exists()
    with MetricsLog(tmp_path / "b.metrics.jsonl", enabled=False) as log:  # DDP ranks other than 0
        log.write({"step": 1}, 1)
    assert not (tmp_path / "b.metrics.jsonl").exists()


def test_training_writes_tensorboard_events_beside_its_metrics(micro_wm):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = tensorboard_dir(micro_wm.with_suffix(".metrics.jsonl"))
    assert folder == micro_wm.parent / "wm.tensorboard" and any(os.scandir(folder))
    events = EventAccumulator(str(folder))
    events.Reload()
    line = json.loads(micro_wm.with_suffix(".metrics.jsonl").read_text().splitlines()[-1])
    names = {k for k, v in line.items() if isinstance(v, float)}
    assert names and names <= set(events.Tags()["scalars"])
    assert np.isclose(events.Scalars("losses/denoiser")[-1].value, line["losses/denoiser"])


def test_training_recipes(micro_wm, tmp_path):
    from wmcli.training import train_agent, train_wm

    assert train_wm.training_recipe(None, steps=9).train_wm.steps == 9
    assert train_wm.training_recipe(None, out=micro_wm, resume=True).denoiser.unet.channels == (8, 8)
    assert train_wm.training_recipe(None, out=micro_wm, resume=False) == load_recipe("tiny")  # not resuming
    from_wm = train_agent.training_recipe(None, micro_wm, ["train_agent.horizon=3"], tmp_path / "new.pt", steps=2)
    assert from_wm.actor_critic.channels == (4, 4) and from_wm.train_agent.horizon == 3
    assert from_wm.train_agent.steps == 2
    assert train_agent.training_recipe("minatar", micro_wm).env.game == "minatar:Breakout"
