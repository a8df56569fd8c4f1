"""The pipeline from the shell, one command after another, as a user runs it:
collect -> train-wm -> train-agent -> eval (agent, random, world model) -> collect with the agent."""

from __future__ import annotations

import json

import pytest
from conftest import run_wmcli

from wmcli.data.store import Store

NETS = [
    "denoiser.unet.channels=[8,8]", "denoiser.unet.cond_channels=16", "denoiser.action_emb_dim=4",
    "denoiser.unet.attn_head_dim=4", "reward_end.channels=[8,8]", "reward_end.cond_channels=8",
    "reward_end.lstm_dim=16", "reward_end.attn_head_dim=4", "train_wm.batch_size=8", "train_wm.rew_end_batch_size=4",
    "actor_critic.channels=[4,4]", "actor_critic.lstm_dim=8", "train_agent.batch_size=4",
]


def sets(*extra: str) -> list[str]:
    return [a for s in (*NETS, *extra) for a in ("--set", s)]


def ok(*args: str) -> dict:
    r = run_wmcli(*args, "--json")
    assert r.returncode == 0, f"wmcli {' '.join(args)}\n{r.stderr[-2000:]}"
    return json.loads(r.stdout)


@pytest.mark.slow
def test_collect_train_wm_train_agent_eval_collect(tmp_path):
    st, wm, agent = tmp_path / "store", tmp_path / "wm.pt", tmp_path / "agent.pt"
    c = ok("collect", "--env", "minatar:Breakout", "--frame-size", "10", "--env-steps", "1500", "--store", str(st),
           "--seed", "0")
    assert c["env_steps"] == 1500
    t = ok("train-wm", "--store", str(st), "--recipe", "minatar", "-o", str(wm), "--steps", "30",
           *sets("train_wm.val_every=30", "train_wm.log_every=10"))
    assert t["steps"] == 30 and t["val"]["val/psnr_1step"] > 0
    a = ok("train-agent", str(wm), "-o", str(agent), "--steps", "6", *sets("train_agent.log_every=3"))
    assert a["steps"] == 6 and a["store"] == str(st)  # the world model's store by default
    e = ok("eval", str(agent), "--episodes", "5", "--num-envs", "2", "--seed", "1")
    assert e["episodes"] == 5 and e["game"] == "minatar:Breakout" and len(e["per_episode"]) == 5
    r = ok("eval", "--policy", "random", "--env", "minatar:Breakout", "--episodes", "5", "--seed", "1")
    assert r["episodes"] == 5 and r["policy"] == "random"
    w = ok("eval", str(wm), "--store", str(st), "--segments", "8", "--horizon", "3")
    assert len(w["psnr_per_step"]) == 3 and w["reward"]["support"] > 0
    c2 = ok("collect", "--policy", str(agent), "--epsilon", "0.05", "--env-steps", "300", "--store", str(st), "--seed", "2")
    assert c2["env_steps"] == 300 and c2["policy"] == "agent:agent.pt epsilon=0.05"
    store = Store.open(st)
    assert sum(store.episode_length(p) for p in store.episode_paths()) == 1800
