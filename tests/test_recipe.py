"""Recipes: every shipped recipe loads, overrides are typed and checked, checkpoints round-trip them."""

from __future__ import annotations

import pytest

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
