"""`wmcli distill`: a few-step student of a trained world model, and what uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import MICRO, free_port, run_wmcli
from typer.testing import CliRunner

from wmcli.base.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from wmcli.base.config import DistillConfig, SamplerConfig
from wmcli.base.errors import WmcliError
from wmcli.base.recipe import load_recipe
from wmcli.base.runtime import make_runtime
from wmcli.cli import app
from wmcli.models.denoiser import Denoiser
from wmcli.models.sampler import sample_next_obs
from wmcli.training.distill import distill_world_model
from wmcli.training.train_wm import train_world_model
from wmcli.world.batches import student_sampler
from wmcli.world.world_model import load_world_model

SMALL = ["distill.batch_size=4", "distill.val_batches=2", "distill.warmup_steps=2", "distill.lr=0.001",
         "distill.log_every=5", "distill.val_every=1000"]


def sets(*extra: str) -> list[str]:
    return [a for s in (*SMALL, *extra) for a in ("--set", s)]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, breakout_store):
    """A micro world model trained 40 steps: its 1-step and 3-step samples differ visibly."""
    out = tmp_path_factory.mktemp("teacher") / "wm.pt"
    recipe = load_recipe("tiny", [*MICRO, "train_wm.steps=40", "train_wm.val_every=1000"])
    train_world_model(recipe, breakout_store.path, out, make_runtime("cpu"))
    return out


runner = CliRunner()


@pytest.mark.slow
def test_the_students_error_against_the_teacher_falls(teacher, tmp_path):
    out = tmp_path / "wm1.pt"
    r = distill_world_model(teacher, out, make_runtime("cpu"), overrides=SMALL, steps=40)
    v = r["val"]
    # The student starts as the teacher's own 1-step sample; 40 steps bring it closer to the 3-step one.
    assert v["val/psnr_vs_teacher"] > v["val/psnr_teacher_short_vs_teacher"] + 1.0, v
    lines = [json.loads(x) for x in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert lines[-1]["losses/distill"] < lines[0]["losses/distill"]


def test_the_student_is_a_world_model_that_records_its_sampler_and_teacher(teacher, tmp_path):
    out = tmp_path / "wm1.pt"
    distill_world_model(teacher, out, make_runtime("cpu"), overrides=SMALL, steps=2)
    ckpt, t = load_checkpoint(out, "world_model"), load_checkpoint(teacher, "world_model")
    assert ckpt["recipe"]["sampler"]["num_steps"] == 1 and ckpt["recipe"]["sampler"]["name"] == "euler"
    d = ckpt["distilled"]
    assert d["teacher"] == str(teacher) and d["teacher_sha256"] == file_sha256(teacher)
    assert d["teacher_sampler"]["num_steps"] == 3 and d["student_steps"] == 1 and d["steps"] == 2
    for k, v in t["models"]["rew_end"].items():  # the reward/end model is the teacher's
        assert torch.equal(ckpt["models"]["rew_end"][k], v)
    assert any(not torch.equal(ckpt["models"]["denoiser"][k], v) for k, v in t["models"]["denoiser"].items())
    assert load_world_model(out).recipe.sampler.num_steps == 1
    # Commands that dream take the student's sampler from it, without flags.
    r = run_wmcli("imagine", str(out), "--horizon", "2", "-o", str(tmp_path / "d.mp4"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sampler"]["num_steps"] == 1


def test_straight_through_sampling_computes_the_same_frame_and_has_gradients():
    torch.manual_seed(0)
    recipe = load_recipe("tiny", MICRO)
    den = Denoiser(recipe.denoiser, 4)
    for p in den.parameters():
        torch.nn.init.normal_(p, std=0.05)
    obs, act = torch.rand(2, 4, 3, 64, 64) * 2 - 1, torch.randint(0, 4, (2, 4))
    noise = torch.randn(2, 3, 64, 64)
    for cfg in (SamplerConfig(num_steps=1), SamplerConfig(num_steps=3), SamplerConfig(num_steps=2, quantize="truncate",
                                                                                     start_noise="unit")):
        plain = sample_next_obs(den, obs, act, cfg, noise=noise)
        x = sample_next_obs(den, obs, act, cfg, noise=noise, differentiable=True)
        assert torch.equal(plain, x.detach())
        x.pow(2).mean().backward()
        assert den.unet.conv_out.weight.grad.abs().sum() > 0
        den.zero_grad()
    # One Euler step from sigma_max lands on D(x; sigma_max), quantised: the student's whole sampler.
    cfg = SamplerConfig(num_steps=1)
    d = den.denoise(noise * cfg.sigma_max, torch.full((2,), cfg.sigma_max), obs, act)
    one = sample_next_obs(den, obs, act, cfg, noise=noise)
    assert torch.equal(one, ((d.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1)


def test_student_samplers():
    teacher = SamplerConfig(name="heun", num_steps=3, s_churn=0.5)
    one = student_sampler(teacher, DistillConfig())
    assert (one.name, one.num_steps, one.s_churn, one.sigma_max) == ("euler", 1, 0.0, teacher.sigma_max)
    two = student_sampler(teacher, DistillConfig(student_steps=2, sigma_mid=0.3))
    assert two.num_steps == 2 and two.sigma_min == 0.3
    from wmcli.models.sampler import karras_sigmas
    assert karras_sigmas(2, two.sigma_min, two.sigma_max, two.rho).tolist() == pytest.approx([5.0, 0.3, 0.0])


@pytest.mark.slow
def test_two_step_student(teacher, tmp_path):
    out = tmp_path / "wm2.pt"
    r = run_wmcli("distill", str(teacher), "-o", str(out), "--steps", "2", "--student-steps", "2", "--json", *sets())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["student_steps"] == 2
    s = load_checkpoint(out, "world_model")["recipe"]["sampler"]
    assert (s["num_steps"], s["sigma_min"]) == (2, 0.3)


def test_resume_gives_identical_weights(teacher, tmp_path):
    rt = make_runtime("cpu")
    straight, split = tmp_path / "a.pt", tmp_path / "b.pt"
    distill_world_model(teacher, straight, rt, overrides=SMALL, steps=6)
    distill_world_model(teacher, split, rt, overrides=SMALL, steps=3)
    r = distill_world_model(teacher, split, rt, steps=6, resume=True)  # the student's own distill section
    assert r["resumed_from"] == 3 and r["steps"] == 6
    a, b = load_checkpoint(straight, "world_model"), load_checkpoint(split, "world_model")
    for k, v in a["models"]["denoiser"].items():
        assert torch.equal(v, b["models"]["denoiser"][k]), k


def test_bad_inputs(teacher, tmp_path, breakout_store):
    student = tmp_path / "wm1.pt"
    # In process (typer's runner): the refusals need no fresh interpreter each, and this test ran
    # 46 s as 12 subprocesses on a 2-core Zen 1 machine.
    r = runner.invoke(app, ["distill", str(teacher), "-o", str(student), "--steps", "1", *sets()])
    assert r.exit_code == 0, r.stderr

    def fails(*args: str) -> str:
        r = runner.invoke(app, ["distill", *args])
        assert r.exit_code != 0 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        return lines[0]

    assert "already a student" in fails(str(student), "-o", str(tmp_path / "x.pt"))
    assert "is the teacher itself" in fails(str(teacher), "-o", str(teacher))
    assert "exists; pass --resume" in fails(str(teacher), "-o", str(student))
    assert "not found" in fails(str(tmp_path / "nope.pt"), "-o", str(tmp_path / "x.pt"))
    assert "only distill.* settings" in fails(str(teacher), "-o", str(tmp_path / "x.pt"), "--set", "train_wm.lr=1")
    assert "distill.student_steps must be 1 or 2" in fails(str(teacher), "-o", str(tmp_path / "x.pt"), "--set",
                                                             "distill.student_steps=3")
    assert "nothing to resume" in fails(str(teacher), "-o", str(tmp_path / "x.pt"), "--resume")
    # An agent checkpoint is not a teacher.
    agent = tmp_path / "agent.pt"
    save_checkpoint(agent, {"kind": "agent", "recipe": {}, "env": {}, "step": 0, "models": {}})
    assert "agent" in fails(str(agent), "-o", str(tmp_path / "x.pt"))
    # A store of another game.
    other = tmp_path / "pong"
    assert runner.invoke(app, ["collect", "--env", "Pong", "--store", str(other), "--env-steps", "30"]).exit_code == 0
    assert "distil on a store of the teacher's game" in fails(str(teacher), "-o", str(tmp_path / "x.pt"), "--store",
                                                               str(other))
    # The teacher's own sampler must take more steps than the student.
    ckpt = load_checkpoint(teacher, "world_model")
    ckpt["recipe"]["sampler"]["num_steps"] = 1
    one = tmp_path / "one.pt"
    save_checkpoint(one, ckpt)
    assert "samples in 1 step(s) already" in fails(str(one), "-o", str(tmp_path / "x.pt"))
    # train-wm refuses to go on training a student with the diffusion loss.
    r = runner.invoke(app, ["train-wm", "--store", str(breakout_store.path), "-o", str(student), "--resume"])
    assert r.exit_code != 0 and "distilled student" in r.stderr
    # Nothing was written by the refusals.
    assert not (tmp_path / "x.pt").exists()


def test_resuming_a_world_model_that_is_not_a_student_is_refused(teacher, tmp_path):
    plain = tmp_path / "plain.pt"
    plain.write_bytes(teacher.read_bytes())
    with pytest.raises(WmcliError, match="not a distilled student"):
        distill_world_model(teacher, plain, make_runtime("cpu"), resume=True)


def test_ddpm_teacher_is_refused(breakout_store, tmp_path):
    out = tmp_path / "ddpm.pt"
    recipe = load_recipe("tiny", [*MICRO, "denoiser.formulation=ddpm", "sampler.name=ddim", "train_wm.steps=1",
                                  "train_wm.val_every=1000"])
    train_world_model(recipe, breakout_store.path, out, make_runtime("cpu"))
    with pytest.raises(WmcliError, match="needs an EDM one"):
        distill_world_model(out, tmp_path / "s.pt", make_runtime("cpu"))


def test_ddp_two_cpu_processes(teacher, tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port(),
           "-m", "wmcli", "distill", str(teacher), "-o", str(out), "--steps", "4", "--device", "cpu", "--json",
           *sets("distill.checkpoint_every=2")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["world_size"] == 2  # rank 0 alone prints and writes
    assert load_checkpoint(out, "world_model")["step"] == 4
