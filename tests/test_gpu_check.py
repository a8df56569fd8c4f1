"""benchmarks/gpu_check.py's dry mode: the GPU check's own functions at tiny sizes on the CPU, so
the script cannot rot between the rare runs on a lent GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_dry_mode_prints_the_table(tmp_path):
    out = tmp_path / "check.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry", "--out", str(out), "--work", str(tmp_path / "w")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "DRY MODE: GPU parts skipped" in p.stdout
    assert "GPU parts skipped: CUDA tests, bf16, fused AdamW, torch.compile, NCCL" in p.stdout
    result = json.loads(out.read_text())
    assert result["mode"] == "dry"
    parts = {r["part"] for r in result["rows"]}
    assert {"a tests", "b burst", "c speed", "d scale", "e estimate"} <= parts
    assert not [r for r in result["rows"] if r["status"] == "FAILED"]
    tests = next(r for r in result["rows"] if r["part"] == "a tests")
    assert tests["status"] == "skipped" and "skipped" in tests["value"]  # the cuda tests ran, and skipped
    assert any("falls" == r["note"] for r in result["rows"] if r["part"] == "b burst")
    assert {"1", "2", "4"} <= set(result["speed"])
    assert result["estimate"]["plan"]["wm_steps"] == 409_600 and result["estimate"]["plan"]["agent_steps"] == 404_600
    assert out.with_suffix(".md").read_text().startswith("| part")


def test_the_wrapper_carries_the_wheels_the_script_names():
    import re

    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    named = re.search(r'^WHEELS="([^"]+)"', text, re.M).group(1).split()
    script = (ROOT / "benchmarks" / "gpu_check.py").read_text()
    assert named == re.findall(r'"([a-z-]+==[0-9.]+)"', script.split("WHEELS = [", 1)[1].split("]", 1)[0])
