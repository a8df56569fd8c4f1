"""`wmcli train-wm` on real stores with micro-sized networks: learning, resume, DDP, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import MICRO, free_port, popen_wmcli, run_wmcli
from typer.testing import CliRunner

from wmcli.base.checkpoint import load_checkpoint, save_checkpoint
from wmcli.cli import app

runner = CliRunner()

def sets(*extra: str) -> list[str]:
    out = []
    for s in (*MICRO, *extra):
        out += ["--set", s]
    return out


def train(store, out, *extra, steps=6, check=True):
    r = runner.invoke(app, ["train-wm", "--store", str(store), "-o", str(out), "--steps", str(steps), "--json",
                            *sets("train_wm.log_every=2", "train_wm.val_every=1000", "train_wm.checkpoint_every=1000"), *extra])
    if check:
        assert r.exit_code == 0, r.stderr + r.stdout
    return r


def metrics(out):
    return [json.loads(line) for line in out.with_suffix(".metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_loss_falls_on_real_frames(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    r = runner.invoke(app, ["train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "60", "--json",
                            *sets("train_wm.log_every=10", "train_wm.val_every=60", "train_wm.checkpoint_every=30",
                                  "train_wm.batch_size=8")])
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    m = metrics(out)
    assert [x["step"] for x in m] == [10, 20, 30, 40, 50, 60]
    assert m[-1]["losses/denoiser"] < 0.5 * m[0]["losses/denoiser"]
    assert m[-1]["losses/rew_end"] < m[0]["losses/rew_end"]
    assert "val/psnr_1step" in m[-1] and summary["val"]["val/psnr_copy_last"] > 0
    ckpt = load_checkpoint(out, "world_model")
    assert ckpt["step"] == 60 and ckpt["env"]["name"] == "Breakout" and ckpt["recipe"]["train_wm"]["steps"] == 60
    assert set(ckpt["models"]) == {"denoiser", "rew_end"}


def test_resume_gives_identical_weights(breakout_store, tmp_path):
    straight, split = tmp_path / "straight.pt", tmp_path / "split.pt"
    train(breakout_store.path, straight, steps=8)
    train(breakout_store.path, split, steps=4)
    r = train(breakout_store.path, split, "--resume", steps=8)
    assert json.loads(r.stdout)["resumed_from"] == 4
    a, b = load_checkpoint(straight, "world_model"), load_checkpoint(split, "world_model")
    for model in ("denoiser", "rew_end"):
        for k, v in a["models"][model].items():
            assert torch.equal(v, b["models"][model][k]), f"{model}.{k}"
    for k in ("opt_denoiser", "opt_rew_end"):
        sa, sb = a["resume"][k]["state"], b["resume"][k]["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_resume_refuses_another_recipe(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    train(breakout_store.path, out, steps=2)
    r = train(breakout_store.path, out, "--resume", "--set", "train_wm.lr=0.5", steps=4, check=False)
    assert r.exit_code == 1 and "train_wm.lr" in r.stderr


def test_existing_output_is_not_overwritten(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    train(breakout_store.path, out, steps=2)
    before = out.read_bytes()
    r = train(breakout_store.path, out, steps=2, check=False)
    assert r.exit_code == 1 and "--resume" in r.stderr and out.read_bytes() == before


def test_ddp_two_cpu_processes(breakout_store, tmp_path):
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port(),
           "-m", "wmcli", "train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "4",
           "--device", "cpu", "--json", *sets("train_wm.log_every=2", "train_wm.checkpoint_every=2")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["world_size"] == 2  # one JSON document: rank 0 alone prints and writes
    ckpt = load_checkpoint(out, "world_model")
    assert ckpt["step"] == 4
    assert len(metrics(out)) == 2


def test_bad_inputs(breakout_store, tmp_path):
    # An empty store.
    from wmcli.base.config import EnvConfig
    from wmcli.data.env import make_spec
    from wmcli.data.store import Store

    empty = Store.create_or_open(tmp_path / "empty", make_spec(EnvConfig(game="Pong")).to_dict())
    r = train(empty.path, tmp_path / "a.pt", check=False)
    assert r.exit_code == 1 and "no episodes" in r.stderr
    # A store of another frame size than the recipe's.
    r = train(breakout_store.path, tmp_path / "b.pt", "--set", "env.frame_size=32", check=False)
    assert r.exit_code == 1 and "env.frame_size=64" in r.stderr
    # A misspelled recipe key, and an unknown recipe.
    r = train(breakout_store.path, tmp_path / "c.pt", "--set", "train_wm.batchsize=3", check=False)
    assert r.exit_code == 1 and "did you mean train_wm.batch_size" in r.stderr
    r = runner.invoke(app, ["train-wm", "--store", str(breakout_store.path), "--recipe", "tinyy"])
    assert r.exit_code == 1 and "did you mean tiny" in r.stderr
    # Resuming from a checkpoint of another kind, and from a file that is not a checkpoint.
    other = tmp_path / "agent.pt"
    save_checkpoint(other, {"kind": "agent", "models": {}})
    r = train(breakout_store.path, other, "--resume", check=False)
    assert r.exit_code == 1 and "agent checkpoint" in r.stderr and "world-model checkpoint" in r.stderr
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    r = train(breakout_store.path, junk, "--resume", check=False)
    assert r.exit_code == 1 and "not a readable wmcli checkpoint" in r.stderr
    for res in (r,):
        assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1


def test_divergence_stops_with_the_last_good_checkpoint(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    r = train(breakout_store.path, out, "--set", "train_wm.lr=1e30", "--set", "train_wm.warmup_steps=1",
              "--set", "train_wm.checkpoint_every=1", "--set", "train_wm.grad_clip_denoiser=1e30", steps=20, check=False)
    assert r.exit_code == 1 and "diverged" in r.stderr and "last good checkpoint" in r.stderr
    ckpt = load_checkpoint(out, "world_model")
    assert 1 <= ckpt["step"] < 20
    assert all(torch.isfinite(v).all() for v in ckpt["models"]["denoiser"].values())


def test_sigkill_during_training_leaves_a_whole_checkpoint(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    proc = popen_wmcli("train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "100000",
                       *sets("train_wm.checkpoint_every=1", "train_wm.log_every=1"))
    t0 = time.time()
    while not out.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < 300
        time.sleep(0.05)
    for _ in range(3):  # let it overwrite the checkpoint a few times, then kill it mid-way
        time.sleep(0.37)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(out, "world_model")
    assert ckpt["step"] >= 1
    r = train(breakout_store.path, out, "--resume", steps=ckpt["step"] + 1)
    assert json.loads(r.stdout)["resumed_from"] == ckpt["step"]


def test_metrics_are_json_lines_and_stdout_is_clean(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    res = run_wmcli("train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "2", "--json",
                    *sets("train_wm.log_every=1"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["steps"] == 2  # stdout is exactly one JSON document
    assert len(metrics(out)) == 2


def test_time_budget_stops_and_saves(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    r = train(breakout_store.path, out, "--max-minutes", "0.0001", steps=1000)
    assert json.loads(r.stdout)["steps"] == 1
    assert load_checkpoint(out, "world_model")["step"] == 1


def test_loaded_world_model_dreams_deterministically(breakout_store, tmp_path):
    import numpy as np

    from wmcli.base.frames import to_float
    from wmcli.data.buffer import EpisodeBuffer
    from wmcli.world.world_model import load_world_model, rollout

    out = tmp_path / "wm.pt"
    train(breakout_store.path, out, steps=2)
    wm = load_world_model(out)
    assert wm.step == 2 and wm.spec.name == "Breakout" and wm.num_context == 4
    seg = EpisodeBuffer(breakout_store).sample(np.random.default_rng(0), 3, 4 + 5)
    obs, act = to_float(torch.from_numpy(seg.obs)), torch.from_numpy(seg.act)

    def dream(seed):
        return rollout(wm.denoiser, obs[:, :4], act[:, :8], wm.recipe.sampler, torch.Generator().manual_seed(seed))

    a = dream(0)
    assert a.shape == (3, 5, 3, 64, 64) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, dream(0)) and not torch.equal(a, dream(1))


def test_bf16_autocast_on_cpu_and_ddpm(breakout_store, tmp_path):
    r = train(breakout_store.path, tmp_path / "bf16.pt", "--precision", "bf16", steps=2)
    assert json.loads(r.stdout)["precision"] == "bf16"
    r = train(breakout_store.path, tmp_path / "ddpm.pt", "--set", "denoiser.formulation=ddpm",
              "--set", "sampler.name=ddim", "--set", "denoiser.context_noise_max=0.1", steps=2)
    assert load_checkpoint(tmp_path / "ddpm.pt", "world_model")["recipe"]["denoiser"]["formulation"] == "ddpm"


def test_resume_without_a_recipe_uses_the_checkpoints(breakout_store, tmp_path):
    out = tmp_path / "wm.pt"
    train(breakout_store.path, out, steps=2)
    r = runner.invoke(app, ["train-wm", "--store", str(breakout_store.path), "-o", str(out), "--resume", "--steps", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    ckpt = load_checkpoint(out, "world_model")
    assert ckpt["step"] == 3 and ckpt["recipe"]["denoiser"]["unet"]["channels"] == [8, 8]


def test_split_holds_out_at_least_one_episode(tmp_path):
    from pathlib import Path

    from wmcli.data.store import split_episodes

    paths = [Path(f"{i:020d}-abcd-000000.h5") for i in range(200)]
    train_p, val_p = split_episodes(paths, 0.1)
    assert 5 <= len(val_p) <= 40 and not set(train_p) & set(val_p) and len(train_p) + len(val_p) == 200
    assert split_episodes(paths + [Path("99999999999999999999-x-000000.h5")], 0.1)[1][: len(val_p)] == val_p
    for n in range(2, 6):  # tiny stores still get a held-out episode
        assert len(split_episodes(paths[:n], 0.1)[1]) >= 1
    assert split_episodes(paths[:1], 0.1) == (paths[:1], [])
    assert split_episodes(paths[:5], 0.0)[1] == []


def test_a_separate_validation_store_takes_no_training_episode(breakout_store, breakout_spec, tmp_path):
    """With val_store (a run's test episodes), training reads every episode of the store and
    validation exactly the val store's; without any val episodes yet it is skipped, and says so."""
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.data.buffer import EpisodeBuffer
    from wmcli.data.collect import collect
    from wmcli.data.store import Store
    from wmcli.training.train_wm import train_world_model
    from wmcli.world.measure import validate
    from wmcli.world.world_model import load_world_model

    val = Store.create_or_open(tmp_path / "val", breakout_spec.to_dict())
    collect(breakout_spec, val, env_steps=150, seed=7)
    recipe = load_recipe("tiny", [*MICRO, "train_wm.steps=2", "train_wm.val_every=1"])
    rt = make_runtime("cpu")
    r = train_world_model(recipe, breakout_store.path, tmp_path / "wm.pt", rt, val_store=val.path)
    assert r["train_episodes"] == len(breakout_store.episode_paths()) >= 3  # none held out
    assert r["val_episodes"] == len(val.episode_paths()) and r["val_skipped"] is None
    wm = load_world_model(tmp_path / "wm.pt")
    on_val = validate(wm.denoiser, wm.rew_end, EpisodeBuffer(val), wm.recipe, rt)
    on_train = validate(wm.denoiser, wm.rew_end, EpisodeBuffer(breakout_store), wm.recipe, rt)
    assert on_val == pytest.approx(r["val"], rel=1e-5) and on_train != pytest.approx(r["val"], rel=1e-5)
    # Before any test episode: validation skipped, in the result and the metrics; no crash.
    r = train_world_model(recipe, breakout_store.path, tmp_path / "wm2.pt", rt, val_store=tmp_path / "none")
    assert r["val"] == {} and r["val_skipped"].startswith("no validation episodes yet")
    lines = [json.loads(x) for x in (tmp_path / "wm2.metrics.jsonl").read_text().splitlines()]
    assert all(x["val/skipped"] == r["val_skipped"] for x in lines)
    # Standalone: --val-store must exist.
    res = CliRunner().invoke(app, ["train-wm", "--store", str(breakout_store.path), "--val-store", str(tmp_path / "none"),
                                   "-o", str(tmp_path / "wm3.pt")])
    assert res.exit_code == 1 and "no store at" in res.output
