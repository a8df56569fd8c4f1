"""`wmcli import diamond`: DIAMOND's checkpoints become wmcli models that compute DIAMOND's functions.

The fixture (tests/fixtures/diamond/, made by make_fixture.py there from DIAMOND's own modules
at a reduced width, random weights) holds a checkpoint in DIAMOND's format and the outputs of
DIAMOND's modules on fixed inputs; every output of the converted models must match within 1e-5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from wmcli.base.checkpoint import read_checkpoint, save_checkpoint
from wmcli.base.config import ActorCriticConfig, DenoiserConfig, RewEndConfig, SamplerConfig, UNetConfig
from wmcli.cli import app
from wmcli.models.actor_critic import ActorCritic
from wmcli.models.denoiser import Denoiser
from wmcli.models.reward_end import RewEndModel
from wmcli.models.sampler import quantize, sample_next_obs
from wmcli.world.agent import load_agent
from wmcli.world.diamond import import_diamond
from wmcli.world.world_model import load_world_model

FIXTURE = Path(__file__).parent / "fixtures" / "diamond"
CKPT = FIXTURE / "diamond_tiny.pt"
TOL = dict(rtol=0, atol=1e-5)
runner = CliRunner()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    result = import_diamond(CKPT, "Breakout", out)
    return result, load_world_model(result["world_model"]), load_agent(result["agent"])


@pytest.fixture(scope="module")
def ref():
    return torch.load(FIXTURE / "reference.pt", weights_only=True)


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def test_denoiser_computes_diamonds_function(imported, ref):
    _, wm, _ = imported
    r = ref["denoiser"]
    den = wm.denoiser
    c_skip, c_out, c_in, c_noise = den.edm_scalings(r["sigma"])
    F = den(c_in[:, None, None, None] * r["x"], c_noise, r["obs"] / den.cfg.sigma_data, r["act"])
    torch.testing.assert_close(F, r["F"], **TOL)  # the inner network
    D = den.denoise(r["x"], r["sigma"], r["obs"], r["act"])
    torch.testing.assert_close(D, r["D"], **TOL)  # D(x; sigma), EDM's preconditioning included
    # DIAMOND's denoise() also quantises (truncation): the imported recipe's setting does the same.
    torch.testing.assert_close(quantize(D, wm.recipe.sampler.quantize), r["denoised"], **TOL)


@torch.no_grad()
def test_sampler_with_imported_settings_dreams_diamonds_frame(imported, ref):
    _, wm, _ = imported
    r, s = ref["denoiser"], ref["sampler"]
    cfg = wm.recipe.sampler
    assert (cfg.name, cfg.num_steps, cfg.start_noise, cfg.quantize) == ("euler", 3, "unit", "truncate")
    g = torch.Generator().manual_seed(s["seed"])
    assert torch.equal(torch.randn(s["start"].shape, generator=g), s["start"])  # the same start noise
    g = torch.Generator().manual_seed(s["seed"])
    torch.testing.assert_close(sample_next_obs(wm.denoiser, r["obs"], r["act"], cfg, g), s["sample"], **TOL)
    # wmcli's own settings (start at sigma_max, rounding) dream another frame from the same noise.
    g = torch.Generator().manual_seed(s["seed"])
    other = sample_next_obs(wm.denoiser, r["obs"], r["act"], SamplerConfig(), g)
    assert _max_diff(other, s["sample"]) > 1e-2


@torch.no_grad()
def test_reward_end_model_computes_diamonds_logits_and_state(imported, ref):
    _, wm, _ = imported
    r = ref["rew_end"]
    T = r["T"]
    rew, end, (h, c) = wm.rew_end(r["obs"][:, :T], r["act"][:, :T], r["next_obs"][:, :T])
    torch.testing.assert_close(rew, r["logits_rew"], **TOL)
    torch.testing.assert_close(end, r["logits_end"], **TOL)
    torch.testing.assert_close(h, r["h"], **TOL)
    torch.testing.assert_close(c, r["c"], **TOL)
    rew2, end2, _ = wm.rew_end(r["obs"][:, T:], r["act"][:, T:], r["next_obs"][:, T:], (h, c))  # continued
    torch.testing.assert_close(rew2, r["logits_rew_2"], **TOL)
    torch.testing.assert_close(end2, r["logits_end_2"], **TOL)


@torch.no_grad()
def test_actor_critic_computes_diamonds_policy_and_value(imported, ref):
    _, _, agent = imported
    r = ref["actor_critic"]
    state = agent.net.initial_state(2)
    for t in range(3):
        logits, value, state = agent.net(r["obs"][t], state)
        torch.testing.assert_close(logits, r["logits"][t], **TOL)
        torch.testing.assert_close(value, r["values"][t], **TOL)
    torch.testing.assert_close(state[0], r["h"], **TOL)
    torch.testing.assert_close(state[1], r["c"], **TOL)


def test_import_records_diamonds_recipe_protocol_and_source(imported):
    result, wm, agent = imported
    ckpt = read_checkpoint(result["world_model"])
    assert ckpt["kind"] == "world_model" and ckpt["imported"]["from"] == "DIAMOND"
    assert len(ckpt["imported"]["sha256"]) == 64
    rec = wm.recipe
    # Sizes read off the tensors (the fixture's reduced widths), the rest DIAMOND's values.
    assert rec.denoiser.unet.channels == (8, 16, 16) and rec.denoiser.unet.depths == (2, 1, 2)
    assert rec.denoiser.unet.attn_depths == (False, True, False)
    assert rec.reward_end.channels == (8, 8, 16) and rec.reward_end.lstm_dim == 16
    assert rec.actor_critic.channels == (8, 8, 16, 16)
    assert (rec.denoiser.sigma_data, rec.denoiser.sigma_offset_noise) == (0.5, 0.3)
    assert wm.spec.name == "Breakout" and wm.spec.frame_shape == (16, 16, 3) and wm.spec.num_actions == 4
    p = wm.spec.config
    assert (p.frame_skip, p.noop_max, p.sticky_prob, p.max_episode_frames) == (4, 30, 0.0, 108_000)
    assert read_checkpoint(result["agent"])["kind"] == "agent" and agent.spec == wm.spec


def test_imported_agent_plays_the_real_game(imported, tmp_path):
    result, _, _ = imported
    r = runner.invoke(app, ["eval", result["agent"], "--episodes", "1", "--seed", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    assert '"game": "Breakout"' in r.stdout


def _one_error(args: list[str]) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("wmcli: error: "), r.stderr
    return lines[0]


def test_bad_inputs_each_give_one_clear_line(tmp_path):
    sd = torch.load(CKPT, weights_only=True)
    out = ["-o", str(tmp_path / "out")]

    missing = dict(sd)
    del missing["rew_end_model.head.0.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    assert "rew_end_model.head.0.weight" in _one_error(["import", "diamond", str(tmp_path / "missing.pt"), "--game", "Breakout", *out])

    reshaped = dict(sd)
    reshaped["denoiser.inner_model.unet.mid_blocks.resblocks.0.conv1.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save(reshaped, tmp_path / "reshaped.pt")
    line = _one_error(["import", "diamond", str(tmp_path / "reshaped.pt"), "--game", "Breakout", *out])
    assert "mid_blocks.resblocks.0.conv1.weight" in line and "(16, 16, 1, 1)" in line

    assert "closest: Breakout" in _one_error(["import", "diamond", str(CKPT), "--game", "Brekout", *out])
    assert "Pong has 6" in _one_error(["import", "diamond", str(CKPT), "--game", "Pong", *out])
    assert "MinAtar" in _one_error(["import", "diamond", str(CKPT), "--game", "minatar:Breakout", *out])

    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    assert "not a torch.save archive" in _one_error(["import", "diamond", str(tmp_path / "notes.txt"), "--game", "Breakout", *out])
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    assert "not a DIAMOND agent checkpoint" in _one_error(["import", "diamond", str(tmp_path / "other.pt"), "--game", "Breakout", *out])
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other2.pt")
    assert "no denoiser.*" in _one_error(["import", "diamond", str(tmp_path / "other2.pt"), "--game", "Breakout", *out])
    assert "not found" in _one_error(["import", "diamond", str(tmp_path / "nope.pt"), "--game", "Breakout", *out])
    assert not (tmp_path / "out" / "wm.pt").exists()


def test_import_writes_both_checkpoints_and_never_replaces_them_silently(tmp_path):
    shutil.copy(CKPT, tmp_path / "Breakout.pt")
    r = runner.invoke(app, ["import", "diamond", str(tmp_path / "Breakout.pt"), "--game", "breakout",
                            "-o", str(tmp_path / "d"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "d" / "wm.pt").is_file() and (tmp_path / "d" / "agent.pt").is_file()
    before = (tmp_path / "d" / "wm.pt").read_bytes()
    line = _one_error(["import", "diamond", str(tmp_path / "Breakout.pt"), "--game", "Breakout", "-o", str(tmp_path / "d")])
    assert "--overwrite" in line and (tmp_path / "d" / "wm.pt").read_bytes() == before
    # A wmcli checkpoint needs no import.
    assert "wmcli checkpoint already" in _one_error(["import", "diamond", str(tmp_path / "d" / "wm.pt"), "--game", "Breakout",
                                                     "-o", str(tmp_path / "e")])


def test_freeway_imports_with_diamonds_per_game_setting(tmp_path):
    # Freeway has 3 actions: a 4-action checkpoint is refused, so build the recipe directly.
    from wmcli.world.diamond import diamond_recipe, infer_shapes

    shapes = infer_shapes(torch.load(CKPT, weights_only=True))
    assert diamond_recipe(shapes, "Freeway").run.actor_temperature == 0.01
    assert diamond_recipe(shapes, "Breakout").run.actor_temperature == 1.0


def test_format_1_checkpoints_are_refused_with_the_reason(tmp_path):
    ckpt = read_checkpoint(import_diamond(CKPT, "Breakout", tmp_path / "d")["world_model"])
    ckpt["format_version"] = 1
    torch.save(ckpt, tmp_path / "old.pt")
    line = _one_error(["imagine", str(tmp_path / "old.pt"), "-o", str(tmp_path / "x.mp4")])
    assert "checkpoint format 1" in line and "train it again" in line
    save_checkpoint(tmp_path / "new.pt", {k: v for k, v in ckpt.items() if k not in ("format_version", "wmcli_version")})
    assert read_checkpoint(tmp_path / "new.pt")["format_version"] == 2


# ---- DIAMOND's initialisation in wmcli's own fresh networks -------------------------------------------


def _is_orthogonal(w: torch.Tensor) -> bool:
    m = w.flatten(1)
    small, large = (m, m.T) if m.shape[0] <= m.shape[1] else (m.T, m)
    return torch.allclose(small @ small.T, torch.eye(small.shape[0]), atol=1e-5)


def test_fresh_networks_are_initialised_as_diamonds():
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(num_context=2, action_emb_dim=16, unet=UNetConfig(
        channels=(8, 16), depths=(1, 1), attn_depths=(False, False), cond_channels=32)), num_actions=3)
    downs = [m for m in den.unet.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert downs and all(_is_orthogonal(m.weight.detach()) for m in downs)
    block = den.unet.down[0][0]
    assert block.conv2.weight.abs().max() == 0 and block.conv2.bias.abs().max() > 0  # weight only, as DIAMOND
    assert den.unet.conv_out.weight.abs().max() == 0 and den.unet.conv_out.bias.abs().max() > 0
    attn = den.unet.mid[0].attn
    assert attn.out.weight.abs().max() == 0 and attn.out.bias.abs().max() == 0

    rew = RewEndModel(RewEndConfig(channels=(8, 8), depths=(1, 1), cond_channels=16, lstm_dim=12), 3, 16)
    ac = ActorCritic(ActorCriticConfig(channels=(8, 8, 8, 8), lstm_dim=12), 3, 16)
    assert rew.head[2].bias is None  # DIAMOND's logits have no bias
    for lstm, suffix in ((rew.lstm, "_l0"), (ac.lstm, "")):
        b_ih, b_hh = getattr(lstm, "bias_ih" + suffix).detach(), getattr(lstm, "bias_hh" + suffix).detach()
        assert torch.equal(b_ih[12:24], torch.ones(12)) and b_ih[:12].abs().max() == 0 and b_ih[24:].abs().max() == 0
        assert b_hh.abs().max() == 0
        assert _is_orthogonal(getattr(lstm, "weight_hh" + suffix).detach())


def test_attention_adds_its_output_to_the_normalised_input():
    torch.manual_seed(0)
    from wmcli.models.nets import SelfAttention

    attn = SelfAttention(16, 8)
    x = torch.randn(2, 16, 4, 4) * 3 + 1
    with torch.no_grad():  # output projection at zero: the block is the group norm alone
        torch.testing.assert_close(attn(x), attn.norm(x))


def test_quantize_modes():
    levels = torch.arange(256).float() / 255 * 2 - 1
    x = levels[:-1] + 0.9 * (2 / 255)  # 90% of the way to the next level
    torch.testing.assert_close(quantize(x, "round"), levels[1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(quantize(x, "truncate"), levels[:-1], rtol=0, atol=1e-6)
    assert quantize(torch.tensor([3.0, -3.0]), "truncate").tolist() == [1.0, -1.0]


def test_imported_models_collect_and_fine_tune(tmp_path):
    d = tmp_path / "d"
    import_diamond(CKPT, "Breakout", d)
    r = runner.invoke(app, ["collect", "--policy", str(d / "agent.pt"), "--env-steps", "120", "--store", str(tmp_path / "st"),
                            "--seed", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    before = read_checkpoint(d / "wm.pt")["models"]["denoiser"]["unet.conv_in.weight"].clone()
    r = runner.invoke(app, ["train-wm", "--store", str(tmp_path / "st"), "-o", str(d / "wm.pt"), "--resume", "--steps", "2",
                            "--set", "train_wm.val_batches=1", "--json"])
    assert r.exit_code == 0, r.stderr
    after = read_checkpoint(d / "wm.pt")
    assert after["step"] == 2 and "resume" in after and after["imported"]["from"] == "DIAMOND"
    assert not torch.equal(after["models"]["denoiser"]["unet.conv_in.weight"], before)  # trained from the imported weights
    r = runner.invoke(app, ["train-agent", str(d / "wm.pt"), "--store", str(tmp_path / "st"), "-o", str(d / "agent.pt"),
                            "--resume", "--steps", "1", "--json"])
    assert r.exit_code == 0, r.stderr
    assert read_checkpoint(d / "agent.pt")["step"] == 1
