"""The runtime's automatic precision: bf16 autocast where the CPU has bf16 matrix units, fp32 elsewhere.

The suite runs with WMCLI_PRECISION=fp32 (conftest) so its numbers do not depend on the CPU;
these tests take that override away to see the automatic choice, on whatever CPU runs them.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MICRO, run_wmcli

from wmcli.base.errors import WmcliError
from wmcli.base.runtime import auto_precision, cpu_bf16_units, make_runtime


@pytest.fixture
def auto_env(monkeypatch):
    monkeypatch.delenv("WMCLI_PRECISION", raising=False)


def test_auto_precision_follows_what_torch_says_of_this_cpu(auto_env):
    units = cpu_bf16_units()
    # The answer is torch's own reading of the CPU's instruction sets.
    assert units in (None, "AMX", "AVX512-BF16")
    if units == "AMX":
        assert torch.cpu._is_amx_tile_supported()
    elif units is not None:
        assert torch.cpu._is_avx512_bf16_supported()
    rt = make_runtime("cpu")
    assert rt.precision == ("bf16" if units else "fp32")
    assert rt.why.startswith("auto: ") and (units or "no bf16") in rt.why
    assert rt.precision in rt.describe() and "cpu" in rt.describe()
    assert rt.record()["precision"] == rt.precision


def test_the_rule_on_each_kind_of_cpu(monkeypatch):
    # Other CPUs than this one: torch's capability checks answer as each kind of CPU would.
    for amx, avx, expected in ((True, True, ("bf16", "AMX")), (False, True, ("bf16", "AVX512-BF16")),
                               (False, False, ("fp32", "no bf16 matrix units"))):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda avx=avx: avx)
        precision, why = auto_precision("cpu")
        assert precision == expected[0] and expected[1] in why


def test_the_override_and_an_explicit_choice(monkeypatch):
    monkeypatch.setenv("WMCLI_PRECISION", "fp32")
    rt = make_runtime("cpu")
    assert rt.precision == "fp32" and rt.why == "WMCLI_PRECISION=fp32"
    assert make_runtime("cpu", "bf16").precision == "bf16"  # --precision beats the variable
    monkeypatch.setenv("WMCLI_PRECISION", "half")
    with pytest.raises(WmcliError, match="WMCLI_PRECISION"):
        make_runtime("cpu")


def test_training_records_the_precision_it_chose(breakout_store, tmp_path, monkeypatch):
    # The real command, as a user gets it: no --precision, no WMCLI_PRECISION.
    env_precision = auto_precision("cpu")[0]
    monkeypatch.delenv("WMCLI_PRECISION")
    out = tmp_path / "wm.pt"
    sets = [x for s in [*MICRO, "train_wm.val_every=1000"] for x in ("--set", s)]
    r = run_wmcli("train-wm", "--store", str(breakout_store.path), "-o", str(out), "--steps", "2", *sets, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["precision"] == env_precision and "auto:" in result["runtime"]
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["runtime"]["precision"] == env_precision
    lines = [json.loads(x) for x in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["precision"] == env_precision


def test_wmcli_processes_share_the_cores(tmp_path):
    import subprocess
    import sys

    from wmcli.base.cores import CoreShare

    before = torch.get_num_threads()
    try:
        share = CoreShare(tmp_path, every=0.0, other_load=lambda: 0.0)  # nothing else running
        share.cores = 4  # as on a 4-core machine, whatever this one has
        assert share.adjust(force=True) == 4  # alone: every core
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            (tmp_path / str(other.pid)).touch()  # a second wmcli process registers
            assert share.adjust() == 2 and torch.get_num_threads() == 2
        finally:
            other.kill()
            other.wait()
        assert share.adjust() == 4 and not (tmp_path / str(other.pid)).exists()  # it ended: its file goes
        share.leave()
        assert not list(tmp_path.iterdir())
    finally:
        torch.set_num_threads(before)


def test_cores_busy_with_other_programs_are_left_to_them(tmp_path):
    import subprocess
    import sys
    import time

    from wmcli.base.cores import CoreShare, OtherLoad

    before = torch.get_num_threads()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # not a wmcli process: it does not register
    try:
        load = OtherLoad()
        time.sleep(1.5)
        assert load() >= 0.7  # the spinner's core (and whatever else runs here)
        assert load() is None  # too soon after the last look
        share = CoreShare(tmp_path, every=0.0, other_load=lambda: 1.0)
        share.cores = 4
        assert share.adjust(force=True) == 3  # alone among wmcli processes, one core busy elsewhere
        share.cores = 2
        assert share.adjust(force=True) == 1
        share.leave()
    finally:
        spin.kill()
        spin.wait()
        torch.set_num_threads(before)


def test_a_fixed_thread_count_turns_sharing_off(monkeypatch):
    import wmcli.base.cores as cores

    monkeypatch.setattr(cores, "_share", None)
    monkeypatch.setenv("WMCLI_THREADS", "1")
    assert cores.share_cores() is None


def test_weights_cast_for_inference_dream_the_same_frames_under_autocast():
    """Runtime.cast_for_inference stores conv and linear weights in bf16 once: under autocast the
    dream and the reward/end logits are the same, bit for bit (autocast rounds the weights so on
    every call); fp32 leaves the module as it is."""
    from conftest import MICRO

    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import Runtime
    from wmcli.models.sampler import sample_next_obs
    from wmcli.world.world_model import build_networks

    recipe = load_recipe("tiny", MICRO)
    torch.manual_seed(0)
    den, rew_end = build_networks(recipe, 4)
    den2, rew_end2 = build_networks(recipe, 4)
    den2.load_state_dict(den.state_dict())
    rew_end2.load_state_dict(rew_end.state_dict())
    rt = Runtime(torch.device("cpu"), "bf16", False)
    for m in (den2, rew_end2):
        rt.cast_for_inference(m.eval())
    den.eval(), rew_end.eval()
    assert den2.unet.conv_in.weight.dtype == torch.bfloat16 and den2.act_emb.weight.dtype == torch.float32
    obs, act = torch.rand(2, 4, 3, 64, 64) * 2 - 1, torch.randint(0, 4, (2, 4))
    out = []
    for d, r in ((den, rew_end), (den2, rew_end2)):
        with torch.no_grad(), rt.autocast():
            nxt = sample_next_obs(d, obs, act, recipe.sampler, torch.Generator().manual_seed(0)).float()
            logits = r(obs[:, -2:], act[:, -2:], torch.cat([obs[:, -1:], nxt[:, None]], 1))[:2]
        out.append((nxt, *logits))
    for a, b in zip(*out):
        assert torch.equal(a, b)
    fp32 = Runtime(torch.device("cpu"), "fp32", False)
    assert fp32.cast_for_inference(den).unet.conv_in.weight.dtype == torch.float32
