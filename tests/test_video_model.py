"""The video world model (denoiser.kind: video): its window, per-frame noise levels and actions,
the joint and staggered samplers, the training regime (stages, curriculum, joint loss) and its
use by the imagination env, `imagine`, `train-agent` and `eval` (docs/video_model.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO, run_wmcli

from wmcli.base.config import SamplerConfig, TrainWMConfig, VideoStage
from wmcli.base.errors import WmcliError
from wmcli.base.recipe import load_recipe
from wmcli.base.runtime import make_runtime
from wmcli.data.buffer import EpisodeBuffer, Segments
from wmcli.models.video_denoiser import VideoDenoiser
from wmcli.models.video_sampler import new_window, next_frames, positions, sample_window, timing
from wmcli.training.train_wm import stage_plan, train_world_model
from wmcli.world.batches import VideoLoss, motion, stillest, video_inputs, video_noise, video_request
from wmcli.world.imagination import WorldModelEnv
from wmcli.world.world_model import NextFrame, load_world_model, rollout

VIDEO = ["denoiser.kind=video", "denoiser.video.window=4", "denoiser.video.temporal_attn=[false,true]"]


def micro_video(**video) -> VideoDenoiser:
    """A micro video denoiser as if trained: every weight moved off its initial value (a fresh
    one's zero output projections and second convs would hide the conditioning and every effect
    across frames)."""
    recipe = load_recipe("tiny", [*MICRO, *VIDEO, *[f"denoiser.video.{k}={v}".lower() for k, v in video.items()]])
    torch.manual_seed(0)
    den = VideoDenoiser(recipe.denoiser, num_actions=4).eval()
    with torch.no_grad():
        for p in den.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return den


def context(B=2, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand((B, 4, 3, 64, 64), generator=g) * 2 - 1
    x = torch.randn((B, T, 3, 64, 64), generator=g)
    act = torch.randint(0, 4, (B, 4 + T - 1), generator=g)
    return obs, x, act


# ---- the network ---------------------------------------------------------------------------------


def test_window_shapes_and_each_frame_at_its_own_noise_level():
    den = micro_video()
    obs, x, act = context()
    sigma = torch.tensor([[0.1, 0.5, 1.0, 5.0], [0.2, 0.2, 0.2, 0.2]])
    with torch.no_grad():
        out = den.denoise(x, sigma, obs, act)
        assert out.shape == x.shape
        # Causal: changing frame 2's noise level changes frames 2 and 3 only.
        s2 = sigma.clone()
        s2[:, 2] = 3.0
        out2 = den.denoise(x, s2, obs, act)
    diff = (out2 - out).abs().amax(dim=(2, 3, 4))  # (B, T)
    assert (diff[:, :2] == 0).all() and (diff[:, 2:] > 1e-4).all()


def test_each_frame_sees_its_own_actions_and_causal_is_a_switch():
    obs, x, act = context()
    sigma = torch.full((2, 4), 0.7)
    for causal in (True, False):
        den = micro_video(causal=causal)
        with torch.no_grad():
            out = den.denoise(x, sigma, obs, act)
            a2 = act.clone()
            a2[:, 5] = (a2[:, 5] + 1) % 4  # the action at window frame 1: before frames 2 and 3
            out2 = den.denoise(x, sigma, obs, a2)
        diff = (out2 - out).abs().amax(dim=(2, 3, 4))
        assert (diff[:, 2:] > 1e-4).all()
        if causal:  # frames 0 and 1 came before that action
            assert (diff[:, :2] == 0).all()
        else:  # they attend to frames 2 and 3, which saw it
            assert (diff[:, :2] > 0).all()


def test_the_unknown_action_is_its_own_embedding():
    den = micro_video()
    obs, x, act = context()
    with torch.no_grad():
        known = den.denoise(x, torch.full((2, 4), 0.7), obs, act)
        unknown = act.clone()
        unknown[:, 4:] = den.null_action
        hidden = den.denoise(x, torch.full((2, 4), 0.7), obs, unknown)
    assert den.null_action == 4 and den.act_emb.num_embeddings == 5
    assert (hidden - known).abs().amax(dim=(0, 2, 3, 4))[1:].min() > 1e-4


def test_loss_counts_only_real_frames_of_the_window():
    den = micro_video()
    obs, x, act = context()
    x0 = x.clamp(-1, 1)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x0.shape, generator=g)
    sigma = torch.full((2, 4), 0.5)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    with torch.no_grad():
        loss, denoised = den.loss(x0, obs, act, noise, sigma, mask)
        x_changed = x0.clone()
        x_changed[0, 2:] = 0.3  # padding past an episode's end
        loss2, _ = den.loss(x_changed, obs, act, noise, sigma, mask)
        x_changed[1, 3] = 0.3  # a real frame
        loss3, _ = den.loss(x_changed, obs, act, noise, sigma, mask)
    assert denoised.shape == x0.shape
    assert torch.allclose(loss, loss2) and not torch.allclose(loss, loss3)


# ---- the samplers --------------------------------------------------------------------------------


def test_schedules_in_flight_and_evaluations_per_frame():
    cfg = SamplerConfig()
    assert timing(cfg, 4) == timing(replace(cfg, video_schedule="staggered"), 4)
    t = timing(cfg, 4)
    assert (t.m, t.s, t.frames, t.evals_per_frame) == (1, 1, 3, 1.0)
    assert timing(replace(cfg, evals_per_frame=3), 4).frames == 1  # frame by frame
    half = timing(replace(cfg, num_steps=2, evals_per_frame=0.5), 4)
    assert (half.m, half.frames, half.evals_per_frame) == (2, 4, 0.5)
    joint = timing(replace(cfg, video_schedule="joint"), 4)
    assert (joint.m, joint.s, joint.frames, joint.evals_per_frame) == (4, 3, 4, 0.75)
    with pytest.raises(WmcliError, match="evals_per_frame 0.5 keeps 6 frames.*use at least 0.75"):
        timing(replace(cfg, evals_per_frame=0.5), 4)


def test_staggered_window_emits_clean_frames_in_order():
    den = micro_video()
    obs, _, act = context(B=2)
    cfg = SamplerConfig()
    t = timing(cfg, 4)
    win = new_window(2, (3, 64, 64), t, cfg, torch.Generator().manual_seed(0))
    evals = []
    with torch.no_grad():
        for k in range(5):
            before = positions(win, t)
            # Later frames are never further along than earlier ones (a staircase).
            assert (before[:, :-1] >= before[:, 1:]).all()
            frame, win, row_evals = next_frames(den, win, obs, act[:, :4], t, cfg, torch.Generator().manual_seed(k))
            evals.append(row_evals / 2)
            assert frame.shape == (2, 3, 64, 64) and frame.abs().max() <= 1
            assert (win.first == k + 1).all()
    # The first frame waits for its whole schedule, then one evaluation a frame.
    assert evals == [3, 1, 1, 1, 1]


def test_frame_by_frame_and_joint_schedules_match_the_plain_window_sampler():
    den = micro_video()
    obs, _, act = context(B=2)
    with torch.no_grad():
        # evals_per_frame = num_steps: one frame in flight, each through the whole schedule.
        cfg = SamplerConfig(evals_per_frame=3)
        nf = NextFrame(den, cfg, 2, torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        got = [nf(obs, act[:, :4], g) for _ in range(2)]
        g = torch.Generator().manual_seed(5)
        first = sample_window(den, obs, act[:, :4], cfg, noise=torch.randn((2, 1, 3, 64, 64), generator=g))
        second = sample_window(den, obs, act[:, :4], cfg, noise=torch.randn((2, 1, 3, 64, 64), generator=g))
        assert torch.equal(got[0], first[:, 0]) and torch.equal(got[1], second[:, 0])
        assert nf.evaluations / nf.frames == 3

        # Joint, with the window's actions known: its 4 frames, handed out one by one in order.
        cfg = SamplerConfig(video_schedule="joint")
        nf = NextFrame(den, cfg, 2, torch.Generator().manual_seed(6))
        got = torch.stack([nf(obs, act[:, :4], None, future_act=act[:, 4 + i:]) for i in range(4)], dim=1)
        g = torch.Generator().manual_seed(6)
        joint = sample_window(den, obs, act, cfg, noise=torch.randn((2, 4, 3, 64, 64), generator=g))
        assert torch.equal(got, joint)
        assert nf.evaluations == 3 and nf.frames == 4
        assert nf.frame_passes == 12  # every frame still passes 3 times through the U-Net


def test_rows_and_resets_leave_other_dreams_alone():
    den = micro_video()
    obs, _, act = context(B=3)
    nf = NextFrame(den, SamplerConfig(), 3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        nf(obs, act[:, :4])
        x_before = nf.win.x.clone()
        nf.reset(torch.tensor([True, False, False]))
        assert (nf.win.clock == torch.tensor([0, 3, 3])).all() and (nf.win.first == torch.tensor([0, 1, 1])).all()
        out = nf(obs, act[:, :4], rows=torch.tensor([True, True, False]))
        assert (out[2] == 0).all() and (out[:2] != 0).any(dim=(1, 2, 3)).all()
        assert torch.equal(nf.win.x[2], x_before[2]) and nf.win.clock[2] == 3
        assert (nf.win.first == torch.tensor([1, 2, 1])).all()
        # Only the restarted dream pays for its whole schedule: 3 + 1 row evaluations, of 3 dreams
        # (dream 0: 3; the first call: 3 each).
        assert nf.win.clock.tolist() == [3, 4, 3] and nf.evaluations == pytest.approx(3 + (3 + 1) / 3)


# ---- the training regime -------------------------------------------------------------------------


def segments(motions: list[float], T=3) -> Segments:
    """Segments whose frames change by the given number of levels per step."""
    B = len(motions)
    obs = np.zeros((B, 4 + T, 2, 2, 3), dtype=np.uint8)
    for i, m in enumerate(motions):
        obs[i] = (np.arange(4 + T) * m % 256)[:, None, None, None].astype(np.uint8)
    z = np.zeros((B, 4 + T))
    return Segments(obs, z.astype(np.int64), z.astype(np.float32), z.astype(bool), z.astype(bool), z.astype(bool),
                    np.ones((B, 4 + T), dtype=bool))


def test_curriculum_keeps_the_stillest_segments_in_drawn_order():
    seg = segments([9, 1, 30, 0, 4])
    assert np.allclose(motion(seg, 4), [9, 1, 30, 0, 4])
    kept = stillest(seg, 4, 3)
    assert np.allclose(motion(kept, 4), [1, 0, 4])
    assert stillest(seg, 4, 5) is seg
    # Padding does not count as motion: a segment that ends after its first future frame.
    seg.mask[2, 5:] = False
    assert motion(seg, 4)[2] == 30
    # The request draws enough segments for the kept share.
    assert video_request(4, 3, 16, 0.25).batch_size == 64 and video_request(4, 3, 16).batch_size == 16
    r = video_request(4, 3, 16)
    assert (r.seq_len, r.pad_before, r.pad_after) == (7, 3, 2)


def test_stage_plan_runs_stages_in_turn_and_the_last_to_the_end():
    stages = (VideoStage(10, 2, 0.5), VideoStage(20, 4, 0.75), VideoStage(5, 4))
    cfg = TrainWMConfig(steps=100, video=replace(TrainWMConfig().video, stages=stages))
    plan = stage_plan(cfg, 4)
    assert [(r.start, r.stop, st.window) for r, st in plan] == [(0, 10, 2), (10, 30, 4), (30, 100, 4)]
    short = stage_plan(replace(cfg, steps=15), 4)
    assert [(r.start, r.stop) for r, _ in short] == [(0, 10), (10, 15)]
    assert [(r.start, r.stop, st.window, st.still_fraction) for r, st in stage_plan(TrainWMConfig(steps=7), 4)] == [
        (0, 7, 4, 1.0)]


def test_joint_loss_is_the_weighted_sum_of_its_terms(breakout_store):
    recipe = load_recipe("tiny", [*MICRO, *VIDEO])
    from wmcli.world.world_model import build_networks

    torch.manual_seed(0)
    den, rew_end = build_networks(recipe, 4)
    rt = make_runtime("cpu")
    buf = EpisodeBuffer(breakout_store)
    seg = buf.sample(np.random.default_rng(0), *video_request(4, 3, 4))
    batch = video_inputs(seg, recipe.train_wm, rt)
    draws = video_noise(den, 4, 3, (3, 64, 64), torch.Generator().manual_seed(0), rt)
    totals = {}
    for w_r, w_a in ((0.0, 0.0), (0.1, 0.05), (1.0, 2.0)):
        cfg = replace(recipe.train_wm.video, rew_end_weight=w_r, action_weight=w_a)
        total, terms = VideoLoss(den, rew_end, cfg)(batch["obs"], batch["act"], batch["mask"], **draws,
                                                   rew=batch["rew"], end=batch["end"])
        d, r, a = terms.tolist()
        assert d > 0 and a > 0 and (r > 0) == (w_r > 0)
        assert total.item() == pytest.approx(d + w_r * r + w_a * a, rel=1e-5)
        totals[(w_r, w_a)] = total
    # The reward/end term moves the denoiser, never the reward/end model's weights.
    rew_end.zero_grad()
    den.zero_grad()
    totals[(1.0, 2.0)].backward()
    assert all(p.grad is None for p in rew_end.parameters())
    assert den.inverse_dynamics.net[0].weight.grad.abs().sum() > 0


def test_video_noise_hides_a_suffix_of_the_window_actions():
    recipe = load_recipe("tiny", [*MICRO, *VIDEO, "denoiser.video.unknown_action_prob=1.0"])
    den = VideoDenoiser(recipe.denoiser, 4)
    rt = make_runtime("cpu")
    draws = video_noise(den, 256, 4, (3, 8, 8), torch.Generator().manual_seed(0), rt)
    assert draws["sigma"].shape == (256, 4) and (draws["sigma"][:, 0] != draws["sigma"][:, 1]).any()
    assert set(draws["hide"].tolist()) == {0, 1, 2}  # always hidden from some window frame on
    never = video_noise(VideoDenoiser(replace(recipe.denoiser, video=replace(recipe.denoiser.video, unknown_action_prob=0.0,
                                                                              per_frame_noise=False)), 4),
                        8, 4, (3, 8, 8), torch.Generator().manual_seed(0), rt)
    assert (never["hide"] == 3).all() and (never["sigma"] == never["sigma"][:, :1]).all()


def test_gradient_checkpointing_gives_the_same_gradients():
    den = micro_video()
    den.train()
    obs, x, act = context(T=3)
    sigma = torch.tensor([[0.1, 1.0, 3.0], [0.5, 0.5, 0.5]])
    grads = []
    for checkpointing in (False, True):
        den.unet.cfg = replace(den.unet.cfg, grad_checkpointing=checkpointing)
        den.zero_grad()
        loss, _ = den.loss(x.clamp(-1, 1), obs, act[:, :6], torch.ones_like(x), sigma, torch.ones(2, 3, dtype=torch.bool))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in den.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_ddp_trains_a_video_model_on_two_cpu_processes(breakout_store, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import free_port

    out = tmp_path / "ddp.pt"
    sets = [*MICRO, "denoiser.video.temporal_attn=[false,true]", "train_wm.log_every=2", "train_wm.checkpoint_every=2",
            "train_wm.video.stages=[{steps: 2, window: 2, still_fraction: 0.5}, {steps: 2, window: 3}]"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", free_port(),
           "-m", "wmcli", "train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "4",
           "--recipe", "video-tiny", "--device", "cpu", "--json", *[x for s in sets for x in ("--set", s)]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["world_size"] == 2
    lines = [json.loads(x) for x in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert [m["charts/window"] for m in lines] == [2, 3]


def test_bad_video_recipes_name_the_key():
    with pytest.raises(WmcliError, match="denoiser.formulation"):
        load_recipe("tiny", [*VIDEO, "denoiser.formulation=ddpm", "sampler.name=ddim"])
    with pytest.raises(WmcliError, match=r"train_wm.video.stages\[0\].window"):
        load_recipe("tiny", [*MICRO, *VIDEO, "train_wm.video.stages=[{steps: 5, window: 8}]"])
    with pytest.raises(WmcliError, match="sampler.evals_per_frame"):
        load_recipe("tiny", [*MICRO, *VIDEO, "sampler.evals_per_frame=0.5"])
    with pytest.raises(WmcliError, match="sampler.evals_per_frame"):
        load_recipe("tiny", [*MICRO, *VIDEO, "sampler.evals_per_frame=0.4"])
    with pytest.raises(WmcliError, match="run.distill"):
        load_recipe("video-minatar", ["run.distill=true"])
    with pytest.raises(WmcliError, match="denoiser.video.temporal_attn needs one entry per level"):
        load_recipe("tiny", [*MICRO, "denoiser.kind=video"])  # 2 U-Net levels, the default flags 3


# ---- a trained micro video model, used like any world model ---------------------------------------


@pytest.fixture(scope="module")
def video_wm(tmp_path_factory, breakout_store):
    out = tmp_path_factory.mktemp("video") / "wm.pt"
    recipe = load_recipe("video-tiny", [*MICRO, "denoiser.video.temporal_attn=[false,true]", "train_wm.steps=40",
                                        "train_wm.log_every=10", "train_wm.val_every=40",
                                        "train_wm.video.stages=[{steps: 20, window: 2, still_fraction: 0.5}, "
                                        "{steps: 20, window: 4}]"])
    train_world_model(recipe, breakout_store.path, out, make_runtime("cpu"))
    return out


@pytest.mark.slow
def test_micro_video_model_learns_through_its_stages(video_wm):
    lines = [json.loads(x) for x in video_wm.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert [m["charts/window"] for m in lines] == [2, 2, 4, 4]
    assert [m["charts/still_fraction"] for m in lines] == [0.5, 0.5, 1.0, 1.0]
    assert lines[-1]["losses/diffusion"] < 0.5 * lines[0]["losses/diffusion"]
    assert all(m["losses/joint_rew_end"] > 0 and m["losses/action"] > 0 for m in lines)
    assert np.isfinite(lines[-1]["val/psnr_1step"])
    wm = load_world_model(video_wm)
    assert isinstance(wm.denoiser, VideoDenoiser) and wm.recipe.denoiser.kind == "video"


@pytest.mark.slow
def test_resume_replays_a_straight_run_across_a_stage_boundary(breakout_store, tmp_path):
    sets = [*MICRO, "denoiser.video.temporal_attn=[false,true]", "train_wm.log_every=1", "train_wm.val_every=100",
            "train_wm.checkpoint_every=3", "train_wm.video.stages=[{steps: 2, window: 2, still_fraction: 0.5}, {steps: 3, window: 3}]"]
    rt = make_runtime("cpu")
    train_world_model(load_recipe("video-tiny", [*sets, "train_wm.steps=5"]), breakout_store.path, tmp_path / "a.pt", rt)
    train_world_model(load_recipe("video-tiny", [*sets, "train_wm.steps=3"]), breakout_store.path, tmp_path / "b.pt", rt)
    train_world_model(load_recipe("video-tiny", [*sets, "train_wm.steps=5"]), breakout_store.path, tmp_path / "b.pt", rt,
                      resume=True)
    a = torch.load(tmp_path / "a.pt", weights_only=True)["models"]["denoiser"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["models"]["denoiser"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_imagination_env_dreams_with_a_video_model(video_wm, breakout_store):
    wm = load_world_model(video_wm)
    env = WorldModelEnv(wm, EpisodeBuffer(breakout_store).contexts(wm.num_context), num_envs=3, horizon=4, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3, 3, 64, 64)
    for t in range(4):
        nxt, rew, end, trunc, _ = env.step(torch.tensor([0, 1, 2]), active=torch.tensor([True, True, t % 2 == 0]))
        assert nxt.shape == (3, 3, 64, 64) and set(rew.tolist()) <= {-1.0, 0.0, 1.0}
    assert env.next_frame.frames == 4 and env.next_frame.win.first.tolist() == [4, 4, 2]
    env.reset(torch.tensor([False, True, False]))
    assert env.next_frame.win.first.tolist() == [4, 0, 2]


@pytest.mark.slow
def test_rollouts_with_actions_ahead_or_one_at_a_time(video_wm, breakout_store):
    wm = load_world_model(video_wm)
    seg = EpisodeBuffer(breakout_store).sample(np.random.default_rng(0), 2, 4 + 5)
    from wmcli.base.frames import to_float

    obs = to_float(torch.from_numpy(seg.obs))
    act = torch.from_numpy(seg.act)[:, : 4 + 4]
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ahead = rollout(wm.denoiser, obs[:, :4], act, wm.recipe.sampler, g())
    blind = rollout(wm.denoiser, obs[:, :4], act, wm.recipe.sampler, g(), actions_ahead=False)
    assert ahead.shape == blind.shape == (2, 5, 3, 64, 64)
    assert torch.equal(ahead[:, 0], blind[:, 0])  # the first frame's actions are all known either way


@pytest.mark.slow
def test_cli_imagine_train_agent_and_eval_take_a_video_model(video_wm, breakout_store, tmp_path):
    r = run_wmcli("imagine", str(video_wm), "--horizon", "5", "-o", str(tmp_path / "v.gif"), "--json", "--seed", "0")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["imagined_frames"] == 5
    r = run_wmcli("imagine", str(video_wm), "--horizon", "6", "--video-schedule", "joint", "--actions", "1,2,3,0,1,2",
                  "-o", str(tmp_path / "j.gif"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sampler"]["video_schedule"] == "joint" and out["imagined_frames"] == 6
    r = run_wmcli("imagine", str(video_wm), "--horizon", "2", "--evals-per-frame", "0.4", "-o", str(tmp_path / "k.gif"))
    assert r.returncode != 0 and "--evals-per-frame must be a whole number" in r.stderr
    r = run_wmcli("imagine", str(video_wm), "--horizon", "2", "--steps", "9", "-o", str(tmp_path / "w.gif"))
    assert r.returncode != 0 and "more than the video model's window (4)" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_wmcli("imagine", str(video_wm), "--horizon", "2", "--show-denoising", str(tmp_path / "d.png"),
                  "-o", str(tmp_path / "x.gif"))
    assert r.returncode != 0 and "drop --show-denoising" in r.stderr
    r = run_wmcli("train-agent", str(video_wm), "-o", str(tmp_path / "agent.pt"), "--steps", "2", "--json",
                  *[x for s in MICRO if s.startswith(("actor_critic", "train_agent"))
                    for x in ("--set", s)])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["imagined_frames"] == 2 * 2 * 3
    r = run_wmcli("eval", str(video_wm), "--store", str(breakout_store.path), "--segments", "4", "--horizon", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["psnr_per_step"]) == 3


@pytest.mark.slow
def test_play_headless_with_a_video_model_and_a_restart(video_wm, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("RIGHT *3\nrestart\nsteps 9\nLEFT *2\n")  # 9 steps: more than 4 frames in flight can take
    r = run_wmcli("play", str(video_wm), "--headless", "--keys", str(keys), "-o", str(tmp_path / "p.gif"), "--seed", "1",
                  "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["frames"] == 5 and out["sampler"]["num_steps"] == 4


def test_video_options_are_refused_for_a_frame_model(micro_wm, tmp_path):
    r = run_wmcli("imagine", str(micro_wm), "--horizon", "2", "--video-schedule", "joint", "-o", str(tmp_path / "a.gif"))
    assert r.returncode != 0 and "--video-schedule sets a video world model's schedule" in r.stderr


def test_run_makes_the_whole_loop_with_a_video_model(tmp_path):
    from test_run import MICRO_RUN

    d = tmp_path / "run"
    extra = ["run.epochs=2", "train_wm.steps=6", "train_agent.steps=2",
             "train_wm.video.stages=[{steps: 3, window: 2, still_fraction: 0.5}, {steps: 3, window: 4}]"]
    r = run_wmcli("run", "--recipe", "video-minatar", "--run-dir", str(d), "--json",
                  *[x for s in (*MICRO_RUN, *extra) for x in ("--set", s)])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["epochs_done"] == 2
    lines = [json.loads(x) for x in (d / "wm.metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 6 + 10 and lines[-1]["charts/window"] == 4  # epoch 2 runs on in the last stage
    assert load_world_model(d / "wm.pt").denoiser.kind == "video"


@pytest.mark.slow
def test_distill_refuses_a_video_model(video_wm, tmp_path):
    r = run_wmcli("distill", str(video_wm), "-o", str(tmp_path / "s.pt"))
    assert r.returncode != 0 and "video world model" in r.stderr and "evals_per_frame" in r.stderr
    assert not (tmp_path / "s.pt").exists()


def test_recipes_ship_a_cpu_and_an_atari_video_model():
    tiny, atari = load_recipe("video-tiny"), load_recipe("video-atari")
    assert tiny.denoiser.kind == atari.denoiser.kind == "video"
    assert tiny.env.frame_size == 64 and tiny.denoiser.unet.channels == load_recipe("tiny").denoiser.unet.channels
    assert atari.denoiser.unet == replace(load_recipe("atari100k").denoiser.unet, grad_checkpointing=True)
    assert [s.window for s in atari.train_wm.video.stages] == [4, 8, 16] and atari.denoiser.video.window == 16
    assert Path(__file__).parents[1].joinpath("docs", "video_model.md").exists()
