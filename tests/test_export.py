"""`wmcli export`: a checkpoint as a Hugging Face model folder (model.safetensors, config.json,
README.md), read back by every command as the .pt file it came from, with no code run on loading,
one clear line for a damaged folder, and nothing half-written left by a failed export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO
from typer.testing import CliRunner

from wmcli.base.checkpoint import checkpoint_to_resume, file_sha256, read_checkpoint
from wmcli.base.errors import WmcliError
from wmcli.base.model_folder import join_checkpoint, read_model_folder, split_checkpoint
from wmcli.cli import app
from wmcli.data.store import Store
from wmcli.outputs.export import export

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [*args])


def one_line_error(r, *words: str) -> None:
    assert r.exit_code == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def micro_agent(tmp_path_factory, micro_wm):
    """A micro agent trained 2 steps in micro_wm's dreams (its checkpoint, resume state and all)."""
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.training.train_agent import train_agent

    out = tmp_path_factory.mktemp("agents") / "agent.pt"
    recipe = load_recipe("tiny", [*MICRO, "train_agent.steps=2", "train_agent.log_every=1"])
    train_agent(recipe, micro_wm, out, make_runtime("cpu"))
    return out


@pytest.fixture(scope="module")
def wm_folder(tmp_path_factory, micro_wm):
    out = tmp_path_factory.mktemp("exported") / "breakout-wm"
    export(micro_wm, out)
    return out


def test_export_writes_three_files_that_plain_tools_read(micro_wm, tmp_path):
    out = tmp_path / "breakout-wm"
    r = cli("export", str(micro_wm), "-o", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert res["kind"] == "world_model" and res["game"] == "Breakout" and res["folder"] == str(out)
    assert res["files"]["model.safetensors"] == (out / "model.safetensors").stat().st_size
    # safetensors and json alone, in a process that never imports wmcli (nor torch: numpy arrays).
    code = ("import json, sys\nfrom safetensors import safe_open\n"
            f"f = safe_open({str(out / 'model.safetensors')!r}, framework='np')\n"
            "names = list(f.keys())\nx = f.get_tensor(names[0])\n"
            f"cfg = json.load(open({str(out / 'config.json')!r}))\n"
            "print(json.dumps({'names': names, 'kind': cfg['kind'], 'game': cfg['env']['name'], "
            "'wmcli': [m for m in sys.modules if m.startswith('wmcli')], 'meta': f.metadata()}))")
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert got["wmcli"] == [] and got["kind"] == "world_model" and got["game"] == "Breakout"
    assert got["meta"] == {"format": "pt"}
    assert {n.split(".")[0] for n in got["names"]} == {"denoiser", "rew_end"}
    ckpt = torch.load(micro_wm, weights_only=True)
    assert len(got["names"]) == sum(len(s) for s in ckpt["models"].values())
    config = json.loads((out / "config.json").read_text())
    assert "resume" not in config and config["model_folder"]["left_out"] == ["resume"]
    assert config["recipe"] == ckpt["recipe"] | {"sampler": {**ckpt["recipe"]["sampler"], "s_tmax": "inf"}}
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: wmcli\ntags:\n") and "- world-model" in card and "- atari" in card
    assert "Breakout" in card and f"{sum(t.numel() for t in ckpt['models']['denoiser'].values()):,}" in card
    assert f"wmcli imagine {out.name}" in card and "hf upload" in card
    # Measured: the checkpoint's own held-out validation, and nothing else (no run folder around it).
    assert f"{ckpt['val_metrics']['val/psnr_1step']:.2f} dB" in card and "real game" not in card
    assert res["results"]["held_out"]["psnr_1step"] == ckpt["val_metrics"]["val/psnr_1step"]


def test_the_folder_loads_to_the_same_checkpoint_and_dreams_the_same_frames(micro_wm, wm_folder, tmp_path):
    a, b = read_checkpoint(micro_wm), read_checkpoint(wm_folder)
    assert set(a) - set(b) == {"resume"} and set(b) <= set(a)
    for net in a["models"]:
        assert list(a["models"][net]) == list(b["models"][net])
        for k, t in a["models"][net].items():
            assert torch.equal(t, b["models"][net][k]) and t.dtype == b["models"][net][k].dtype, (net, k)
    assert {k: v for k, v in a.items() if k not in ("models", "resume")} == {k: v for k, v in b.items() if k != "models"}
    for src, name in ((micro_wm, "pt.npz"), (wm_folder, "folder.npz")):
        r = cli("imagine", str(src), "--horizon", "2", "--steps", "2", "--seed", "3", "--scale", "1",
                "-o", str(tmp_path / name))
        assert r.exit_code == 0, r.stderr
    with np.load(tmp_path / "pt.npz") as x, np.load(tmp_path / "folder.npz") as y:
        assert np.array_equal(x["videos"], y["videos"]) and np.array_equal(x["context"], y["context"])


def test_an_agent_folder_plays_as_its_checkpoint(micro_agent, micro_wm, tmp_path):
    folder = tmp_path / "agent"
    res = export(micro_agent, folder)
    assert res["kind"] == "agent" and list(res["parameters"]) == ["actor_critic"]
    assert "- actor-critic" in (folder / "README.md").read_text()
    actions = []
    for src, store in ((micro_agent, "a"), (folder, "b")):
        r = cli("collect", "--policy", str(src), "--env-steps", "20", "--seed", "5", "--store", str(tmp_path / store),
                "--json")
        assert r.exit_code == 0, r.stderr
        st = Store.open(tmp_path / store)
        actions.append(np.concatenate([st.read_episode(p, frames=False).act for p in st.training_paths()]))
    assert len(actions[0]) == 20 and np.array_equal(*actions)
    # The world-model commands still tell the kinds apart.
    one_line_error(cli("imagine", str(folder), "-o", str(tmp_path / "x.npz")), "agent checkpoint")


class RunsCode:
    """Unpickled, this would create the file `marker`: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_never_runs_code_from_a_file(tmp_path):
    import pickle

    marker, control = tmp_path / "ran", tmp_path / "control"
    pickle.loads(pickle.dumps(RunsCode(control)))  # the payload does run when unpickled plainly
    assert control.exists()
    evil = tmp_path / "evil.pt"
    torch.save({"kind": "world_model", "format_version": 2, "models": {"x": RunsCode(marker)}}, evil)
    for args in (["imagine", str(evil), "-o", str(tmp_path / "d.npz")], ["eval", str(evil), "--episodes", "1"],
                 ["export", str(evil), "-o", str(tmp_path / "out")],
                 ["import", "diamond", str(evil), "--game", "Breakout", "-o", str(tmp_path / "imp")]):
        r = cli(*args)
        one_line_error(r, "not a readable")
    with pytest.raises(WmcliError):
        read_checkpoint(evil)
    assert not marker.exists() and not (tmp_path / "out").exists()


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


@pytest.mark.parametrize("damage, words", [
    ("no_config", ["has no config.json"]),
    ("no_weights", ["has no model.safetensors"]),
    ("foreign_config", ["not wmcli's", "'model_folder'"]),
    ("no_kind", ["not wmcli's", "'kind'"]),
    ("bad_json", ["not readable JSON"]),
    ("truncated", ["not a readable safetensors file", "truncated"]),
    ("unlisted", ["does not hold the weights config.json lists", "denoiser.ghost"]),
])
def test_a_damaged_folder_is_one_clear_error(wm_folder, tmp_path, damage, words):
    d = _copy(wm_folder, tmp_path / "d")
    config = json.loads((d / "config.json").read_text())
    if damage == "no_config":
        (d / "config.json").unlink()
    elif damage == "no_weights":
        (d / "model.safetensors").unlink()
    elif damage == "foreign_config":
        (d / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    elif damage == "no_kind":
        del config["kind"]
        (d / "config.json").write_text(json.dumps(config))
    elif damage == "bad_json":
        (d / "config.json").write_text("{not json")
    elif damage == "truncated":
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "unlisted":
        config["model_folder"]["weights"]["denoiser"]["tensors"].append("ghost")
        (d / "config.json").write_text(json.dumps(config))
    one_line_error(cli("imagine", str(d), "-o", str(tmp_path / "x.npz")), str(d), *words)


def test_a_folder_that_is_no_model_folder_keeps_its_message(micro_wm, tmp_path):
    shutil.copy(micro_wm, tmp_path / "wm.pt")
    one_line_error(cli("imagine", str(tmp_path), "-o", str(tmp_path / "x.npz")), "is a folder", "wm.pt")


def test_an_interrupted_export_leaves_no_folder_and_keeps_the_old_one(micro_wm, tmp_path, monkeypatch):
    real_rename = os.rename
    fails = {"left": 1}

    def rename_fails_once(src, dst):  # the final step: the temporary folder renamed into place
        if Path(src).name.startswith(".tmp-") and fails["left"]:
            fails["left"] -= 1
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    out = tmp_path / "wm"
    monkeypatch.setattr(os, "rename", rename_fails_once)
    with pytest.raises(WmcliError, match="cannot write"):
        export(micro_wm, out)
    assert list(tmp_path.iterdir()) == []  # no DIR, no temporary folder
    export(micro_wm, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("export", str(micro_wm), "-o", str(out))
    one_line_error(r, str(out), "--overwrite")
    fails["left"] = 1
    with pytest.raises(WmcliError, match="cannot write"):
        export(micro_wm, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old folder, whole
    assert [p.name for p in tmp_path.iterdir()] == ["wm"]
    (out / "README.md").write_text("old card")
    export(micro_wm, out, overwrite=True)
    assert (out / "README.md").read_text() != "old card" and [p.name for p in tmp_path.iterdir()] == ["wm"]


def test_training_does_not_resume_from_a_folder(wm_folder, breakout_store, tmp_path):
    with pytest.raises(WmcliError, match="cannot resume from .*optimizer state"):
        checkpoint_to_resume(wm_folder, "world_model", resume=True, overwrite=False)
    r = cli("train-wm", "--store", str(breakout_store.path), "-o", str(wm_folder), "--resume", "--steps", "1")
    one_line_error(r, "cannot resume", "model folder")
    one_line_error(cli("train-wm", "--store", str(breakout_store.path), "-o", str(tmp_path), "--steps", "1"),
                   "is a folder", "wm.pt")


def test_a_distilled_student_records_the_folder_weights_digest(wm_folder):
    digest = hashlib.sha256((wm_folder / "model.safetensors").read_bytes()).hexdigest()
    assert file_sha256(wm_folder) == digest


def test_nested_tensors_shared_storage_and_infinities_go_through():
    base = torch.arange(12.0)
    ckpt = {"kind": "world_model", "format_version": 2, "step": 3, "limits": {"hi": float("inf"), "lo": [float("-inf"), 1]},
            "models": {"a": {"w": base[:6].view(2, 3), "v": base[6:], "t": base.view(3, 4).t()},
                       "deep": {"inner": {"b": torch.ones(2, dtype=torch.bfloat16)}}},
            "stats": {"n": torch.tensor(7), "name": "x"}, "resume": {"opt": {"lr": 1.0}}}
    tensors, config = split_checkpoint(ckpt)
    assert json.loads(json.dumps(config, allow_nan=False)) == config  # strict JSON
    assert set(tensors) == {"a.w", "a.v", "a.t", "inner.b", "stats.n"}
    ptrs = [t.untyped_storage().data_ptr() for t in tensors.values()]
    assert len(set(ptrs)) == len(ptrs) and all(t.is_contiguous() for t in tensors.values())
    back = join_checkpoint(tensors, config)
    assert back["limits"] == {"hi": float("inf"), "lo": [float("-inf"), 1]} and back["stats"]["name"] == "x"
    assert "resume" not in back and torch.equal(back["models"]["a"]["t"], base.view(3, 4).t())
    assert back["models"]["deep"]["inner"]["b"].dtype == torch.bfloat16 and torch.equal(back["stats"]["n"], torch.tensor(7))


def test_read_model_folder_needs_no_checkpoint_module(wm_folder):
    ckpt = read_model_folder(wm_folder)
    assert ckpt["kind"] == "world_model" and "resume" not in ckpt


def test_an_agent_card_gives_its_runs_evaluation_of_this_agent_only(micro_agent, tmp_path):
    """In a run folder, the card takes the last real-game evaluation whose agent is this checkpoint
    (its agent_steps) and the random policy's return; lines as `wmcli run` writes them."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(micro_agent, run / "agent.pt")
    step = torch.load(micro_agent, weights_only=True)["step"]
    ev = {"return_std": 1.0, "return_min": 0.0, "return_max": 3.0, "hns": None, "length_mean": 40.0}
    lines = [{"epoch": 0, "env_steps": 200, "seconds": 0.6},
             {"epoch": 1, "env_steps": 200, "wm_steps": 20, "wm_val": {}, "agent_steps": step,
              "eval": {"return_mean": 1.25, "episodes": 4, "return_sem": 0.5, **ev}, "seconds": 6.7},
             {"epoch": 2, "env_steps": 240, "wm_steps": 30, "agent_steps": step + 4,  # a later agent's
              "eval": {"return_mean": 9.0, "episodes": 3, "return_sem": 0.1, **ev}, "seconds": 10.2}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run / "state.json").write_text(json.dumps({"epoch_done": 2, "random_return": {"mean": 0.33, "sem": 0.13,
                                                                                  "episodes": 21}}))
    res = export(run / "agent.pt", tmp_path / "out")
    assert res["results"]["evaluation"]["return_mean"] == 1.25 and res["results"]["evaluation"]["epoch"] == 1
    card = (tmp_path / "out" / "README.md").read_text()
    assert "1.25 ± 0.50 (standard error) over 4 episodes" in card and "9.00" not in card
    assert "random policy in the same run: 0.33 ± 0.13 over 21 episodes" in card
    assert "Human-normalized" not in card  # no score of it was recorded
    export(micro_agent, tmp_path / "alone")  # outside a run folder: no result is made up
    assert "No measured results" in (tmp_path / "alone" / "README.md").read_text()
