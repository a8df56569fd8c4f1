"""Recipes: every shipped recipe loads, overrides are typed and checked, checkpoints round-trip them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from wmcli.base.errors import WmcliError
from wmcli.base.recipe import list_recipes, load_recipe, recipe_from_dict


def test_shipped_recipes_load_and_round_trip():
    assert {"tiny", "atari100k"} <= set(list_recipes())
    for name in list_recipes():
        r = load_recipe(name)
        assert recipe_from_dict(r.to_dict()) == r


def test_atari100k_is_diamonds():
    r = load_recipe("atari100k")
    assert r.denoiser.unet.channels == (64, 64, 64, 64) and r.denoiser.sigma_offset_noise == 0.3
    assert (r.sampler.name, r.sampler.num_steps, r.sampler.sigma_max) == ("euler", 3, 5.0)
    assert (r.train_wm.lr, r.train_wm.batch_size, r.train_wm.autoregressive_steps) == (1e-4, 32, 1)


def test_atari100k_freeway_is_atari100k_with_a_cold_actor():
    """DIAMOND's Freeway: IRIS's low actor temperature (eloialonso/diamond#34), the rest atari100k."""
    import dataclasses

    base, freeway = load_recipe("atari100k"), load_recipe("atari100k-freeway")
    assert (freeway.env.game, freeway.run.actor_temperature, base.run.actor_temperature) == ("Freeway", 0.01, 1.0)
    same = dataclasses.replace(freeway, env=base.env, run=dataclasses.replace(freeway.run, actor_temperature=1.0))
    assert same == base


def test_overrides_are_typed():
    r = load_recipe("tiny", ["train_wm.lr=1e-4", "train_wm.steps=7", "sampler.s_tmax=inf",
                             "denoiser.unet.channels=[8, 16]", "denoiser.unet.depths=[1,1]",
                             "denoiser.unet.attn_depths=[false,true]", "env.mode=2"])
    assert r.train_wm.lr == 1e-4 and r.train_wm.steps == 7 and r.sampler.s_tmax == float("inf")
    assert r.denoiser.unet.channels == (8, 16) and r.denoiser.unet.attn_depths == (False, True)
    assert r.env.mode == 2
    assert load_recipe("tiny", ["env.mode=null"]).env.mode is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("train_wm.stepz=3", "did you mean train_wm.steps"),
        ("trian_wm.steps=3", "did you mean train_wm"),
        ("train_wm.steps=many", "should be int"),
        ("train_wm.steps=2.5", "should be int"),
        ("train_wm.end_on_life_loss=3", "true or false"),
        ("denoiser.unet.channels=8", "should be a list"),
        ("sampler.name=rk4", "sampler.name must be one of"),
        ("denoiser.unet.depths=[1]", "one entry per level"),
        ("train_wm.steps", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(WmcliError, match=message):
        load_recipe("tiny", [override])


def test_recipe_files(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("train_wm:\n  steps: 3\n")
    assert load_recipe(str(f)).train_wm.steps == 3
    f.write_text("train_wm: [unclosed\n")
    with pytest.raises(WmcliError, match="not valid YAML"):
        load_recipe(str(f))
    with pytest.raises(WmcliError, match="not found"):
        load_recipe(str(tmp_path / "missing.yaml"))


def test_base_recipe_is_overridden_key_by_key(tmp_path):
    from wmcli.base.recipe import load_recipe

    child = tmp_path / "child.yaml"
    child.write_text("base: minatar\ntrain_wm:\n  steps: 7\nrun:\n  epochs: 3\n")
    r, base = load_recipe(str(child)), load_recipe("minatar")
    assert r.train_wm.steps == 7 and r.run.epochs == 3
    assert r.train_wm.batch_size == base.train_wm.batch_size and r.denoiser == base.denoiser
    assert r.env.game == "minatar:Breakout"
    # A base given as a file next to the recipe, and a loop.
    (tmp_path / "grand.yaml").write_text("base: child.yaml\nrun:\n  seed: 5\n")
    g = load_recipe(str(tmp_path / "grand.yaml"))
    assert g.run.seed == 5 and g.run.epochs == 3 and g.train_wm.steps == 7
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(WmcliError, match="loops back"):
        load_recipe(str(tmp_path / "a.yaml"))
    (tmp_path / "bad.yaml").write_text("base: minatar\nrun:\n  epoks: 3\n")
    with pytest.raises(WmcliError, match="run.epochs"):
        load_recipe(str(tmp_path / "bad.yaml"))


def test_every_shipped_recipe_loads():
    from wmcli.base.recipe import list_recipes, load_recipe

    assert {"tiny", "atari100k", "minatar", "quick"} <= set(list_recipes())
    for name in list_recipes():
        load_recipe(name)


# ---- validated completely on load, with the recipe's own key --------------------------------------


@pytest.mark.parametrize("override, message", [
    ("run.epsilon=2", "run.epsilon must be between 0 and 1, got 2"),
    ("run.num_envs=0", "run.num_envs must be at least 1, got 0"),
    ("run.eval_episodes=0", "run.eval_episodes must be at least 1"),
    ("run.actor_temperature=0", "run.actor_temperature must be above 0"),
    ("train_wm.lr=0", "train_wm.lr must be greater than 0"),
    ("train_wm.val_fraction=1.5", "train_wm.val_fraction must be in [0, 1)"),
    ("train_agent.horizon=0", "train_agent.horizon must be at least 1"),
    ("actor_critic.gamma=1.5", "actor_critic.gamma must be in (0, 1]"),
    ("env.sticky_prob=1", "env.sticky_prob must be in [0, 1)"),
    ("env.frame_size=4", "env.frame_size must be at least 8"),
    ("denoiser.unet.depths=[1]", "denoiser.unet.depths needs one entry per level"),
    ("sampler.sigma_max=0.001", "sampler.sigma_max must exceed sigma_min"),
    ("train_wm.sample_weights=[0.5, 0.6]", "train_wm.sample_weights must be non-negative and sum to 1"),
    ("env.frame_size=62", "env.frame_size must be divisible by 4"),
    ("denoiser.formulation=ddpm", "sampler.name works only with an edm denoiser"),
])
def test_every_value_is_checked_when_the_recipe_loads(override, message):
    """A bad value fails at load time, naming the recipe key (not a flag the user never typed)."""
    with pytest.raises(WmcliError) as e:
        load_recipe("tiny", [override])
    assert message in str(e.value) and f"--set {message.split()[0]}=" in str(e.value)


def test_run_checks_the_recipe_before_anything_is_written(tmp_path):
    from typer.testing import CliRunner

    from wmcli.cli import app

    r = CliRunner().invoke(app, ["run", "--recipe", "quick", "--run-dir", str(tmp_path / "run"),
                                 "--set", "run.epsilon=2"])
    assert r.exit_code == 1 and "run.epsilon must be between 0 and 1" in r.stderr
    assert not (tmp_path / "run").exists()


def test_configs_check_themselves_for_python_users():
    from wmcli.base.config import ConfigValueError, RunConfig

    with pytest.raises(ConfigValueError) as e:
        RunConfig(epsilon=2.0)
    assert e.value.key == "epsilon" and "between 0 and 1" in str(e.value)


# ---- built-in recipes ship inside the package ---------------------------------------------------------


def test_recipes_live_in_the_package():
    import wmcli
    from wmcli.base.recipe import RECIPES_DIR

    assert RECIPES_DIR.parent == Path(wmcli.__file__).parent
    assert {"tiny", "quick", "minatar", "atari100k"} <= set(list_recipes())


def test_cli_lists_and_shows_recipes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from wmcli.cli import app

    monkeypatch.chdir(tmp_path)  # any folder: the recipes come with the package
    runner = CliRunner()
    r = runner.invoke(app, ["recipes", "--json"])
    assert r.exit_code == 0
    names = {x["name"]: x for x in json.loads(r.stdout)}
    assert {"tiny", "quick", "minatar", "atari100k"} <= set(names) and names["atari100k"]["about"]
    r = runner.invoke(app, ["recipes", "show", "quick"])
    assert r.exit_code == 0 and r.stdout.startswith("#") and "base: minatar" in r.stdout
    (tmp_path / "mine.yaml").write_text(r.stdout)  # a user's own recipe, started from a built-in one
    assert load_recipe(str(tmp_path / "mine.yaml")).run.epochs == load_recipe("quick").run.epochs
    r = runner.invoke(app, ["recipes", "show", "quick", "--resolved"])
    resolved = yaml.safe_load(r.stdout)
    assert r.exit_code == 0 and resolved["env"]["game"] == "minatar:Breakout" and "base" not in resolved
    r = runner.invoke(app, ["recipes", "show", "tinyy"])
    assert r.exit_code == 1 and "did you mean tiny" in r.stderr


def test_a_wheel_carries_the_recipes(tmp_path):
    """`pip install .` or a wheel finds the recipes: they are package data."""
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(repo)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("wmcli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("tiny", "quick", "minatar", "atari100k"):
        assert f"wmcli/recipes/{name}.yaml" in names
    assert "wmcli/base/config.py" in names and "wmcli/world/measure.py" in names
