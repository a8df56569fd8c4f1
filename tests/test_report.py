"""`wmcli report`: run folders (written with run.py's own formats and helpers) aggregated per game and
over games, checked against sums done by hand; the outputs (table, JSON, Markdown, LaTeX, PNG);
the one-line refusals."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import scipy.stats
import yaml
from typer.testing import CliRunner

from wmcli.base.config import EnvConfig
from wmcli.base.recipe import load_recipe
from wmcli.cli import app
from wmcli.data.env import make_spec
from wmcli.data.store import Store
from wmcli.outputs.evaluate import HUMAN_RANDOM
from wmcli.outputs.report import build_report, read_run, split_label, to_latex, to_markdown
from wmcli.training.loop import MetricsLog

pytest.importorskip("rliable")
runner = CliRunner()


def make_run(folder, game: str, seed: int, final_return: float | None, finished: bool = True, store: bool = True):
    """A run folder as `wmcli run` leaves it: the resolved recipe, one metrics line per epoch
    (epoch 0: the initial collection; an evaluation of eval_episodes at epoch 1 and of
    final_eval_episodes at the last epoch, 2), state.json; and the store's record of the game.
    final_return None: the run stopped after epoch 0, before any evaluation."""
    recipe = load_recipe("minatar" if game.startswith("minatar:") else "atari100k",
                         ["run.seed=" + str(seed), "run.total_real_steps=null", "run.epochs=2", "run.eval_every=1"], game=game)
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    if store:
        Store.create_or_open(folder / "store", make_spec(EnvConfig(game=game)).to_dict())
    cfg = recipe.run
    lines = [{"epoch": 0, "env_steps": 5000, "seconds": 1.0}]
    if final_return is not None:
        lines.append({"epoch": 1, "env_steps": 5000, "wm_steps": 10, "agent_steps": 10, "seconds": 2.0,
                      "eval": {"return_mean": final_return / 2, "episodes": cfg.eval_episodes, "hns": None}})
        if finished:
            lines.append({"epoch": 2, "env_steps": 5100, "wm_steps": 20, "agent_steps": 20, "seconds": 3.0,
                          "eval": {"return_mean": final_return, "return_std": 1.0, "episodes": cfg.final_eval_episodes,
                                   "hns": None, "return_sem": 0.1}})
    with MetricsLog(folder / "metrics.jsonl", tensorboard=False) as log:
        for line in lines:
            log.write(line, line["env_steps"])
    (folder / "state.json").write_text(json.dumps({"epoch_done": lines[-1]["epoch"], "initial_steps": 5000}))
    return folder


def hns(game: str, ret: float) -> float:
    s = HUMAN_RANDOM[game]
    return (ret - s.random) / (s.human - s.random)


GAMES = ("Breakout", "Pong", "Boxing", "Freeway")
# 3 seeds x 4 games of final returns.
RETURNS = {"Breakout": [10.0, 20.0, 45.0], "Pong": [-20.0, -5.0, 3.0], "Boxing": [5.0, 12.1, 30.0], "Freeway": [0.0, 21.0, 29.6]}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """3 seeds x 4 Atari games of finished runs."""
    root = tmp_path_factory.mktemp("runs")
    return [make_run(root / f"{g}-{s}", g, s, RETURNS[g][s]) for g in GAMES for s in range(3)]


def test_a_run_gives_its_game_seed_and_final_evaluation(tmp_path):
    d = make_run(tmp_path / "r", "Breakout", 7, 42.5)
    r = read_run(d)
    assert (r.game, r.seed, r.return_mean, r.episodes, r.epoch, r.final) == ("Breakout", 7, 42.5, 100, 2, True)
    assert r.hns == pytest.approx((42.5 - 1.7) / (30.5 - 1.7))
    # Without a store, the game comes from the recipe, named canonically.
    d = make_run(tmp_path / "s", "ALE/MsPacman-v5", 1, 300.0, store=False)
    assert read_run(d).game == "MsPacman"


def test_per_game_means_and_hns_by_hand(grid):
    r = build_report(grid, reps=50)
    assert [g["game"] for g in r["games"]] == list(GAMES)
    for row in r["games"]:
        rets = np.array(RETURNS[row["game"]])
        assert row["runs"] == 3 and row["seeds"] == [0, 1, 2]
        assert row["return_mean"] == pytest.approx(rets.mean())
        assert row["return_sd"] == pytest.approx(rets.std(ddof=1))
        assert row["return_sem"] == pytest.approx(rets.std(ddof=1) / np.sqrt(3))
        assert row["hns"] == pytest.approx(hns(row["game"], rets.mean()))
        assert row["diamond_return"] == HUMAN_RANDOM[row["game"]].diamond
        assert row["diamond_hns"] == pytest.approx(hns(row["game"], HUMAN_RANDOM[row["game"]].diamond))
    assert len(r["runs"]) == 12 and r["notes"] == []


def test_aggregates_by_hand_and_intervals_seeded(grid):
    r = build_report(grid, reps=300, seed=3)
    scores = np.array([[hns(g, RETURNS[g][s]) for g in GAMES] for s in range(3)])  # (runs, games)
    per_game = scores.mean(axis=0)
    flat = np.sort(scores.ravel())  # 12 scores: IQM is the mean of the middle 6
    expected = {"mean": per_game.mean(), "median": np.median(per_game), "iqm": flat[3:9].mean(),
                "optimality_gap": 1 - np.minimum(scores, 1).mean()}
    assert expected["iqm"] == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None))
    agg = r["aggregates"]["wmcli"]
    assert agg["games"] == list(GAMES) and agg["runs_per_game"] == 3
    for name, value in expected.items():
        m = agg["metrics"][name]
        assert m["estimate"] == pytest.approx(value), name
        assert m["ci"][0] <= m["estimate"] + 1e-9 and m["estimate"] - 1e-9 <= m["ci"][1], name
        assert m["ci"][0] < m["ci"][1], name  # three different runs per game: a real interval
    assert build_report(grid, reps=300, seed=3)["aggregates"] == r["aggregates"]  # seeded: the same twice
    assert build_report(grid, reps=300, seed=4)["aggregates"] != r["aggregates"]


def test_groups_unequal_runs_and_partial_runs(tmp_path, grid):
    """LABEL=DIR groups; a game with an extra seed is cut to the common count, and said so."""
    extra = make_run(tmp_path / "extra", "Pong", 9, 10.0)
    r = build_report([f"A={d}" for d in grid] + [f"B={d}" for d in grid[:6]] + [f"B={extra}"], reps=50)
    assert list(r["aggregates"]) == ["A", "B"]
    b = r["aggregates"]["B"]
    assert b["games"] == ["Breakout", "Pong"] and b["runs_per_game"] == 3 and b["dropped"] == [str(extra)]
    assert any("unequal runs per game" in n and "Pong 4" in n for n in r["notes"])
    pong_b = next(g for g in r["games"] if g["label"] == "B" and g["game"] == "Pong")
    assert pong_b["runs"] == 4  # the per-game row keeps every run
    # An unfinished run: refused, or with --allow-partial its last evaluation, noted.
    part = make_run(tmp_path / "part", "Breakout", 5, 30.0, finished=False)
    with pytest.raises(Exception, match="unfinished"):
        build_report([part], reps=10)
    r = build_report([part], reps=10, allow_partial=True)
    assert r["runs"][0]["return_mean"] == 15.0 and r["runs"][0]["final"] is False
    assert any("unfinished" in n for n in r["notes"])
    assert split_label("x=y") == ("x", tmp_path.__class__("y"))


def test_minatar_runs_give_per_game_returns_and_a_note(tmp_path):
    runs = [make_run(tmp_path / f"m{s}", "minatar:Breakout", s, 5.0 + s) for s in range(2)]
    r = build_report(runs, reps=50)
    (row,) = r["games"]
    assert row["game"] == "minatar:Breakout" and row["return_mean"] == 5.5 and row["hns"] is None
    assert r["aggregates"] == {}
    assert any("no human-normalized aggregates" in n and "Atari 100k" in n for n in r["notes"])
    res = runner.invoke(app, ["report", *map(str, runs)])
    assert res.exit_code == 0, res.stderr
    assert "minatar:Breakout" in res.stdout and "Atari 100k" in res.stderr
    res = runner.invoke(app, ["report", *map(str, runs), "--plot", str(tmp_path / "a.png")])
    assert res.exit_code == 1 and "need Atari 100k games" in res.stderr


def test_outputs_json_markdown_latex_and_png(tmp_path, grid):
    args = ["report", *map(str, grid), "--reps", "100"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert {g["game"] for g in out["games"]} == set(GAMES) and out["bootstrap"]["reps"] == 100
    assert set(out["aggregates"]["wmcli"]["metrics"]) == {"mean", "median", "iqm", "optimality_gap"}

    res = runner.invoke(app, [*args, "--format", "markdown"])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert sum(line.startswith("| Breakout |") for line in lines) == 1 and any(line.startswith("| IQM |") for line in lines)
    assert to_markdown(out) == res.stdout

    res = runner.invoke(app, [*args, "--format", "latex"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.count(r"\begin{tabular}") == 2 and res.stdout.count(r"\end{tabular}") == 2
    assert any(line.startswith("Breakout & 3 &") and line.endswith(r"\\") for line in res.stdout.splitlines())
    assert r"$\pm$" in res.stdout and to_latex(out) == res.stdout

    png = tmp_path / "agg.png"
    res = runner.invoke(app, [*args, "--plot", str(png)])
    assert res.exit_code == 0, res.stderr
    assert "Breakout" in res.stdout and "IQM" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def _one_error_line(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("wmcli: error: "), res.stderr
    return lines[0]


def test_not_a_run_and_no_evaluation_yet_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "is not a run folder" in _one_error_line(res)
    res = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "not found" in _one_error_line(res)
    fresh = make_run(tmp_path / "fresh", "Breakout", 0, None)
    res = runner.invoke(app, ["report", str(fresh)])
    line = _one_error_line(res)
    assert res.exit_code == 1 and "no evaluation yet" in line and f"wmcli run --resume {fresh}" in line
    done = make_run(tmp_path / "done", "Breakout", 1, 12.0)
    res = runner.invoke(app, ["report", str(fresh), str(done), "--allow-partial", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["runs"]) == 1


def test_without_rliable_one_line_says_how_to_install(tmp_path, monkeypatch):
    d = make_run(tmp_path / "r", "Breakout", 0, 12.0)
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable raises ImportError
    res = runner.invoke(app, ["report", str(d)])
    assert res.exit_code == 1 and "pip install 'wmcli[report]'" in _one_error_line(res)


def test_a_saved_eval_json_is_a_run(tmp_path):
    saved = tmp_path / "eval.json"
    saved.write_text(json.dumps({"kind": "policy", "game": "Pong", "seed": 4, "return_mean": -3.0, "episodes": 10,
                                 "interrupted": False}))
    r = read_run(saved)
    assert (r.game, r.seed, r.return_mean, r.epoch) == ("Pong", 4, -3.0, None)
