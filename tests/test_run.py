"""`wmcli run`: the whole loop on MinAtar Breakout with micro networks, killed and resumed."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from conftest import popen_wmcli, run_wmcli

from wmcli.data.store import Store
from wmcli.run import rare_reward_steps

# MinAtar Breakout at 10x10, micro networks, 2 epochs: seconds, not minutes.
MICRO_RUN = [
    "env.game=minatar:Breakout", "denoiser.unet.channels=[8,8]", "denoiser.unet.cond_channels=16",
    "denoiser.action_emb_dim=4", "denoiser.unet.attn_head_dim=4", "reward_end.channels=[8,8]",
    "reward_end.cond_channels=8", "reward_end.lstm_dim=16", "reward_end.attn_head_dim=4",
    "train_wm.batch_size=4", "train_wm.rew_end_batch_size=2", "train_wm.rew_end_seq_len=6",
    "train_wm.val_batches=1", "train_wm.val_every=10", "actor_critic.channels=[4,4]", "actor_critic.lstm_dim=8",
    "train_agent.batch_size=2", "train_agent.horizon=4",
    "run.initial_collect_steps=200", "run.collect_steps=40", "run.eval_every=1", "run.eval_episodes=2",
    "run.final_eval_episodes=3", "run.eval_num_envs=2", "run.wm_steps=10", "run.agent_steps=4",
    "run.initial_collect_min_rewards=0",  # exactly 200 random steps (the reward rule has its own test)
]


def sets(*extra: str) -> list[str]:
    return [a for s in (*MICRO_RUN, *extra) for a in ("--set", s)]


def test_run_makes_the_whole_loop_in_one_folder(tmp_path):
    d = tmp_path / "run"
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d), "--json",
                  *sets("run.epochs=2", "train_wm.steps=20", "train_agent.steps=4"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["epochs_done"] == 2 and out["final_eval"]["episodes"] == 3
    for name in ("recipe.yaml", "state.json", "metrics.jsonl", "wm.pt", "agent.pt", "wm.metrics.jsonl",
                 "agent.metrics.jsonl", "store/wmcli-store.json", "videos/eval_epoch_0001.mp4", "videos/eval_epoch_0002.mp4"):
        assert (d / name).exists(), name
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    assert [x["env_steps"] for x in lines] == [200, 200, 240]  # epoch 2 collects 40 steps with the agent
    assert [x.get("wm_steps") for x in lines] == [None, 20, 30] and [x.get("agent_steps") for x in lines] == [None, 4, 8]
    store = Store.open(d / "store")
    policies = {store.read_episode(p, frames=False).attrs["policy"] for p in store.episode_paths()}
    assert policies == {"random", "agent:agent.pt epsilon=0.01"}
    assert store.partial_paths() == []  # the episodes under way at the end landed as cut ones
    assert json.loads((d / "state.json").read_text())["epoch_done"] == 2
    # The evaluation episodes: the last evaluation's, in test_store/ (not in the training store);
    # the world model validated on them once there were any (epoch 2), and said so before (epoch 1).
    test = Store.open(d / "test_store")
    assert len(test.episode_paths()) == 3 and all(Store.open(d / "test_store").read_episode(p).attrs["collector"]
                                                  == "wmcli eval" for p in test.episode_paths())
    assert "no validation episodes yet" in lines[1]["wm_val_skipped"] and lines[1]["wm_val"] == {}
    assert "wm_val_skipped" not in lines[2] and "val/psnr_1step" in lines[2]["wm_val"]
    wm_lines = [json.loads(x) for x in (d / "wm.metrics.jsonl").read_text().splitlines()]
    assert "val/skipped" in wm_lines[0] and "val/psnr_1step" in wm_lines[-1]
    # The curves of the run, drawn from its metrics.
    r = run_wmcli("plot", str(d), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["panels"][0] == "real-game return (evaluation)" and len(res["panels"]) == 5
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_with_distillation_trains_the_agent_in_the_student(tmp_path):
    from wmcli.base.checkpoint import load_checkpoint

    d = tmp_path / "run"
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d), "--json",
                  *sets("run.epochs=2", "train_wm.steps=10", "train_agent.steps=2", "run.distill=true",
                        "distill.steps=4", "run.distill_steps=2", "distill.batch_size=4", "distill.val_batches=1",
                        "run.eval_every=2", "run.final_eval_episodes=2"))
    assert r.returncode == 0, r.stderr
    assert "distillation" in r.stderr and "student at step 4" in r.stderr
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("distill_steps") for x in lines] == [None, 4, 6]  # cumulative, as the other trainings
    student = load_checkpoint(d / "wm_student.pt", "world_model")
    assert student["recipe"]["sampler"]["num_steps"] == 1 and student["distilled"]["teacher"] == str(d / "wm.pt")
    assert student["distilled"]["teacher_step"] == 20  # distilled from epoch 2's world model
    agent = load_checkpoint(d / "agent.pt", "agent")
    assert agent["world_model"]["path"] == str(d / "wm_student.pt")
    assert agent["recipe"]["sampler"]["num_steps"] == 1  # it dreamed with the student's sampler, not the run recipe's


def test_plot_bad_inputs(tmp_path):
    r = run_wmcli("plot", str(tmp_path))
    assert r.returncode == 1 and "no metrics" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_wmcli("plot", str(tmp_path / "missing"))
    assert r.returncode == 1 and "not found" in r.stderr


@pytest.mark.slow
def test_run_killed_and_resumed_loses_nothing(tmp_path):
    d = tmp_path / "run"
    args = ["run", "--recipe", "minatar", "--run-dir", str(d), *sets("run.epochs=2", "train_wm.steps=400",
                                                                       "train_wm.checkpoint_every=5", "train_agent.steps=4")]
    p = popen_wmcli(*args)
    deadline = time.time() + 120
    while not (d / "wm.pt").exists() and time.time() < deadline:  # killed inside epoch 1's world-model training
        time.sleep(0.2)
    assert (d / "wm.pt").exists()
    p.send_signal(signal.SIGKILL)
    p.wait()
    episodes_before = set(Store.open(d / "store").episode_paths())
    assert json.loads((d / "state.json").read_text())["epoch_done"] == 0
    r = run_wmcli("run", "--resume", str(d), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs_done"] == 2
    assert episodes_before <= set(Store.open(d / "store").episode_paths())  # every episode kept
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    assert lines[1]["wm_steps"] == 400 and lines[2]["wm_steps"] == 410


def test_rare_reward_steps_counts_the_two_rarer_signs():
    assert rare_reward_steps(np.array([0, 0, 1, -1, 0, 2.5])) == 3
    assert rare_reward_steps(np.array([1, 1, 1, 0])) == 1  # +1 is the common sign here
    assert rare_reward_steps(np.zeros(0)) == 0


@pytest.mark.slow
def test_initial_collection_goes_on_until_rewards_are_seen(tmp_path):
    """DIAMOND's rule: after initial_collect_steps, random play continues collect_steps at a time
    until the two rarer reward signs count initial_collect_min_rewards steps, within a cap."""

    def epoch0(name: str, *extra: str) -> tuple[int, int]:
        d = tmp_path / name
        r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d),
                      *sets("run.epochs=0", "run.initial_collect_steps=30", "run.collect_steps=20", *extra))
        assert r.returncode == 0, r.stderr
        line = json.loads((d / "metrics.jsonl").read_text())
        store = Store.open(d / "store")
        rew = np.concatenate([store.read_episode(p, frames=False).rew for p in store.episode_paths()])
        assert line["env_steps"] == len(rew) and json.loads((d / "state.json").read_text())["initial_steps"] == len(rew)
        return len(rew), rare_reward_steps(rew)

    # MinAtar Breakout at random: a reward every ~25 steps. 30 steps rarely hold 4.
    steps, rare = epoch0("four", "run.initial_collect_min_rewards=4", "run.initial_collect_max_steps=10000")
    assert rare >= 4 and steps > 30 and (steps - 30) % 20 == 0
    # Later epochs count from what epoch 0 collected: epoch 2 adds collect_steps to it.
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(tmp_path / "later"),
                  *sets("run.epochs=2", "run.initial_collect_steps=30", "run.collect_steps=20", "train_wm.steps=2",
                        "train_agent.steps=2", "run.initial_collect_min_rewards=4", "run.initial_collect_max_steps=10000"))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "later" / "metrics.jsonl").read_text().splitlines()]
    assert [x["env_steps"] for x in lines] == [steps, steps, steps + 20]
    steps, rare = epoch0("capped", "run.initial_collect_min_rewards=1000", "run.initial_collect_max_steps=95")
    assert steps == 95 and rare < 1000  # 30, then 20, 20, 20 and the 5 left under the cap
    steps, _ = epoch0("off", "run.initial_collect_min_rewards=0")
    assert steps == 30


def test_run_bad_inputs(tmp_path):
    r = run_wmcli("run", "--resume", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "nothing to resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(tmp_path / "full"), *sets("run.epochs=1"))
    assert r.returncode == 1 and "--resume" in r.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(tmp_path / "x"), "--set", "run.epoks=1")
    assert r.returncode == 1 and "run.epochs" in r.stderr
    r = run_wmcli("run", "--resume")
    assert r.returncode == 1 and "run folder" in r.stderr


# ---- what a user sees: the plan, each phase's result, the final line in context, Ctrl-C ------------------


def test_run_shows_plan_progress_results_and_a_final_line_in_context(tmp_path):
    d = tmp_path / "run"
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d),
                  *sets("run.epochs=2", "train_wm.steps=20", "train_agent.steps=4", "run.final_eval_episodes=6"))
    assert r.returncode == 0, r.stderr
    err = r.stderr
    assert "plan: 2 epochs of minatar:Breakout: 240 real steps, 30 world-model and 8 agent training steps, " \
           "2 evaluations (8 episodes)" in err
    assert "random policy: mean return" in err
    # Epoch 1's world model has no test episodes to validate on yet; epoch 2's has epoch 1's evaluation.
    assert "world model at step 20: validation skipped, no validation episodes yet" in err
    assert "world model at step 30: held-out PSNR" in err and "dB vs copy-last" in err
    assert "agent: mean return" in err and "(random: " in err
    assert "for the last epoch (training rates of epoch 1" in err
    # stderr is a pipe here: progress comes as plain lines, one per task at least when it completes
    assert "train-wm: 20/20 steps (100%)" in err and "collect minatar:Breakout: 200/200 steps (100%)" in err
    out = r.stdout
    assert f"run {d}: 2 of 2 epochs" in out and "random policy:" in out and "over 6 episodes" in out
    assert f"wmcli plot {d}" in out and "--compare" in out
    imagine = next(line.strip() for line in out.splitlines() if "--compare" in line).split()
    r = run_wmcli(*imagine[1:], "--steps", "1")  # the suggested command works as printed
    assert r.returncode == 0, r.stderr


def test_first_ctrl_c_in_run_keeps_everything_and_says_how_to_go_on(tmp_path):
    d = tmp_path / "run"
    p = popen_wmcli("run", "--recipe", "minatar", "--run-dir", str(d),
                    *sets("run.epochs=2", "train_wm.steps=100000", "train_wm.log_every=1", "train_agent.steps=4"))
    deadline = time.time() + 120
    while not (d / "wm.metrics.jsonl").exists() and time.time() < deadline:  # inside epoch 1's world-model training
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert f"interrupted in epoch 1 (train-wm); what was finished is kept; continue with: wmcli run --resume {d}" in err
    assert (d / "wm.pt").exists()  # saved on the way out, before any periodic checkpoint
    assert json.loads((d / "state.json").read_text())["epoch_done"] == 0


def test_train_wm_ctrl_c_saves_and_names_the_resume_command(tmp_path):
    from conftest import MICRO

    store = tmp_path / "s"
    assert run_wmcli("collect", "--env", "minatar:Breakout", "--env-steps", "300", "--store", str(store)).returncode == 0
    out = tmp_path / "wm.pt"
    args = ["train-wm", "--store", str(store), "-o", str(out), "--steps", "100000",
            *[a for s in (*MICRO, "train_wm.log_every=1", "train_wm.val_every=100000",
                          "train_wm.checkpoint_every=100000") for a in ("--set", s)]]
    p = popen_wmcli(*args)
    deadline = time.time() + 120
    while not (out.with_suffix(".metrics.jsonl").exists() and out.with_suffix(".metrics.jsonl").read_text()) \
            and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    line = next(x for x in err.splitlines() if "interrupted at step" in x)
    assert f"the world model {out} holds it; continue with: wmcli train-wm" in line and line.endswith("--resume")
    from wmcli.base.checkpoint import load_checkpoint

    step = load_checkpoint(out, "world_model")["step"]
    assert f"interrupted at step {step};" in line and 1 <= step < 100000


def test_a_run_that_failed_before_it_started_can_start_again(tmp_path):
    d = tmp_path / "run"
    r = run_wmcli("run", "--recipe", "minatar", "--env", "minatar:Breakuot", "--run-dir", str(d))
    assert r.returncode == 1 and "unknown game" in r.stderr and not d.exists()  # checked before the folder is made
    # A folder left before any episode was collected (recipe and state written, store empty) is taken again.
    d.mkdir()
    (d / "recipe.yaml").write_text("{}\n")
    (d / "state.json").write_text(json.dumps({"epoch_done": -1}))
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d), "--json", *sets("run.epochs=0"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs_done"] == 0
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d), *sets("run.epochs=0"))
    assert r.returncode == 1 and "pass --resume" in r.stderr  # but not a run that got going


def test_default_recipe_fits_the_machine_and_the_game():
    import pytest

    from wmcli.base.errors import WmcliError
    from wmcli.run import default_recipe, run_setup

    assert default_recipe(None) == default_recipe("minatar:Asterix") == "minatar"
    assert default_recipe("Pong", "cuda") == "atari100k"
    with pytest.raises(WmcliError, match="no recipe fits Atari's Pong on a CPU"):
        default_recipe("Pong", "cpu")
    rec, folder = run_setup(None)
    assert rec.run.epochs == 6 and str(folder) == "runs/minatar-Breakout-minatar"


# ---- DIAMOND's real-step budget (total_real_steps) ---------------------------------------------------------


def test_the_atari100k_schedule_plays_exactly_100k_real_steps_whatever_the_initial_collection_took():
    from wmcli.base.recipe import load_recipe
    from wmcli.run import collect_target, num_epochs

    cfg = load_recipe("atari100k").run
    for initial, collecting in ((5000, 950), (7300, 927), (10000, 900)):  # dense, in between, sparse game
        epochs = num_epochs(cfg, initial)
        assert epochs == collecting + 50
        targets = [collect_target(cfg, e, initial) for e in range(epochs + 1)]
        assert targets[0] == initial and targets[1] == initial + 100  # epoch 1 collects too, as DIAMOND's
        assert targets[collecting] == 100_000 and targets[-1] == 100_000  # and the last 50 epochs do not
        assert all(b - a in (0, 100) for a, b in zip(targets, targets[1:]))


def test_a_budgeted_run_plays_exactly_its_real_steps(tmp_path):
    d = tmp_path / "run"
    r = run_wmcli("run", "--recipe", "minatar", "--run-dir", str(d), "--json",
                  *sets("run.total_real_steps=320", "run.final_epochs=1", "run.eval_every=100",
                        "train_wm.steps=4", "train_agent.steps=2", "run.wm_steps=2", "run.agent_steps=1",
                        "run.eval_video=false"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["env_steps"] == 320 and out["epochs"] == 4 and out["epochs_done"] == 4  # 3 collecting + 1
    assert out["final_eval"] is not None and not list(d.glob("videos/*"))  # evaluated, no video written
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["env_steps"] for x in lines] == [200, 240, 280, 320, 320]
    assert "the initial collection took 200 steps: 4 epochs in all, 320 real steps" in r.stderr


def test_a_budget_smaller_than_the_initial_collection_is_refused():
    import pytest

    from wmcli.base.errors import WmcliError
    from wmcli.base.recipe import load_recipe

    with pytest.raises(WmcliError, match="run.total_real_steps must cover the longest initial collection \\(10,000 steps"):
        load_recipe("atari100k", ["run.total_real_steps=8000"])


def test_a_resumed_run_keeps_the_episode_a_kill_left_under_way_as_a_cut_one(tmp_path):
    """The game of an unfinished episode is gone after a kill: the resumed run seals it as a cut
    episode, its steps counted once in the real-step budget."""
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.data.collect import Collector
    from wmcli.run import _store_steps, run_loop

    d = tmp_path / "run"
    recipe = load_recipe("minatar", [*MICRO_RUN, "run.epochs=0", "run.initial_collect_steps=40"])
    run_loop(recipe, d, make_runtime("cpu"))
    store = Store.open(d / "store")
    assert _store_steps(store) == 40
    c = Collector(store.spec, store, seed=1)  # a collector killed after writing its game so far
    c.play(7)
    c.write_partial()
    assert _store_steps(store) == 47 and len(store.partial_paths()) == 1
    r = run_loop(None, d, make_runtime("cpu"), resume=True)
    assert r["env_steps"] == 47 and store.partial_paths() == []
    sealed = store.read_episode(store.episode_paths()[-1])
    assert len(sealed) == 7 and sealed.trunc[-1] and not sealed.end.any()
