"""Shaping stores: preview videos, merging stores, recording a held-out split (real stores of
synthetic episodes written by the store's own writer)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import MICRO, random_episode
from typer.testing import CliRunner

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.cli import app
from wmcli.data import shaping
from wmcli.data.env import make_spec
from wmcli.data.shaping import merge_stores, pick_episodes, record_split
from wmcli.data.store import STEP_KEYS, Store, split_episodes
from wmcli.outputs.preview import PreviewConfig, preview_store
from wmcli.outputs.video import BAND_HEIGHT, read_video

runner = CliRunner()


def make_store(path, spec, lengths, seed=0, **attrs) -> Store:
    """A store of len(lengths) synthetic episodes (the even ones complete, the odd ones cut)."""
    store = Store.create_or_open(path, spec.to_dict())
    w = store.writer({"policy": "random", **attrs})
    for i, T in enumerate(lengths):
        w.write(random_episode(T, seed=seed + i, end=i % 2 == 0))
    return store


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---- picking episodes ---------------------------------------------------------------------


def test_pick_episodes_reads_indices_ranges_and_negatives():
    assert pick_episodes("0,3,5-8", 10) == [0, 3, 5, 6, 7, 8]
    assert pick_episodes("-1", 10) == [9]
    assert pick_episodes("-3--1", 10) == [7, 8, 9]
    assert pick_episodes("2, 0, 2, 1-2", 5) == [2, 0, 1]  # order kept, each once
    for bad, words in [("x", "cannot read 'x'"), ("1,,2", "cannot read ''"), ("3-", "cannot read '3-'"),
                       ("5-2", "runs backwards"), ("10", "no episode 10; the store has 10"), ("-11", "no episode -11"),
                       ("", "cannot read")]:
        with pytest.raises(WmcliError, match=words):
            pick_episodes(bad, 10)


# ---- preview ------------------------------------------------------------------------------


def test_preview_grid_holds_finished_episodes_and_captions_every_frame(tmp_path, breakout_spec):
    store = make_store(tmp_path / "s", breakout_spec, [4, 12, 7, 3])
    r = preview_store(store.path, tmp_path / "p.mp4", PreviewConfig(episodes="0-2", max_steps=10, scale=2))
    assert r["episodes"] == [0, 1, 2] and r["steps_shown"] == [4, 10, 7] and r["capped"] == [1]
    assert r["frames"] == 11  # the longest shown: 10 steps, 11 frames
    frames = read_video(tmp_path / "p.mp4")
    tile_h, tile_w = 2 * 64 + BAND_HEIGHT, 2 * 64
    assert frames.shape == (11, 2 * (tile_h + 2) - 2, 2 * (tile_w + 2) - 2, 3) and list(frames.shape[1:3]) == r["size"]
    band = frames[:, 2 * 64:tile_h, :tile_w].astype(int)  # episode 0's caption strip
    assert band.max() > 200 and np.median(band) < 80  # white text on a dark grey strip
    assert np.abs(band[1] - band[2]).max() > 100  # "t 1" -> "t 2": the text changed
    # Episode 0 (4 steps) ends at frame 4 and holds it: its picture stays, its caption is marked (red).
    held = frames[4:, :2 * 64, :tile_w].astype(int)
    assert np.abs(held - held[0]).mean() < 2
    red, grey = frames[6, 2 * 64 + 2, tile_w - 4].astype(int), frames[2, 2 * 64 + 2, tile_w - 4].astype(int)
    assert red[0] > 100 and red[1] < 40 and abs(grey[0] - grey[1]) < 15
    truth = store.read_episode(store.episode_paths()[0]).obs[4].repeat(2, 0).repeat(2, 1).astype(int)
    assert np.abs(frames[8, :128, :128].astype(int) - truth).mean() < 12  # the frame itself, through H.264


def test_preview_sequence_gif_reads_only_what_is_shown(tmp_path, breakout_spec, monkeypatch):
    store = make_store(tmp_path / "s", breakout_spec, [3, 5, 2, 6])
    read = []
    real = Store.read_episode
    monkeypatch.setattr(Store, "read_episode", lambda self, p, *a, **k: read.append(p.name) or real(self, p, *a, **k))
    r = preview_store(store.path, tmp_path / "p.gif", PreviewConfig(episodes="-1,1", layout="sequence", scale=1,
                                                                     max_steps=4))
    assert read == [store.episode_paths()[3].name, store.episode_paths()[1].name]
    assert r["episodes"] == [3, 1] and r["steps_shown"] == [4, 4] and r["capped"] == [3, 1]
    frames = read_video(tmp_path / "p.gif")
    assert frames.shape == (5 + 5, 64 + BAND_HEIGHT, 64, 3) and r["frames"] == 10


def test_preview_errors_are_one_line_and_write_nothing(tmp_path, breakout_spec):
    store = make_store(tmp_path / "s", breakout_spec, [3, 4])
    with pytest.raises(WmcliError, match="use .mp4 or .gif"):
        preview_store(store.path, tmp_path / "p.png")
    with pytest.raises(WmcliError, match="no episode 5; the store has 2"):
        preview_store(store.path, tmp_path / "p.mp4", PreviewConfig(episodes="5"))
    with pytest.raises(WmcliError, match="--layout 'row'"):
        PreviewConfig(layout="row")
    empty = Store.create_or_open(tmp_path / "e", breakout_spec.to_dict())
    with pytest.raises(WmcliError, match="no finished episodes"):
        preview_store(empty.path, tmp_path / "p.mp4")
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".tmp-*"))


def test_preview_cli(tmp_path, breakout_spec):
    store = make_store(tmp_path / "s", breakout_spec, [3, 4, 2])
    r = runner.invoke(app, ["store", "preview", str(store.path), "-o", str(tmp_path / "v.mp4"), "--scale", "1"])
    assert r.exit_code == 0, r.output
    assert "3 episodes of Breakout (0, 1, 2) as a grid, 5 frames" in r.stdout and (tmp_path / "v.mp4").is_file()
    r = runner.invoke(app, ["store", "preview", str(store.path), "--episodes", "1-0"])
    assert r.exit_code == 1 and "runs backwards" in r.stderr and "Traceback" not in r.output


# ---- merge --------------------------------------------------------------------------------


def test_merge_has_every_episode_identical_and_leaves_the_sources(tmp_path, breakout_spec):
    a = make_store(tmp_path / "a", breakout_spec, [5, 3, 8], seed=0, collector="a")
    b = make_store(tmp_path / "b", breakout_spec, [4, 6], seed=10, collector="b")
    b.writer().write_partial(random_episode(3, seed=99, end=False), "feed-000000")
    before = listing(tmp_path)
    r = merge_stores([a.path, b.path], tmp_path / "c")
    assert [x for x in listing(tmp_path) if not x.startswith("c")] == before  # sources as they were
    c = Store.open(tmp_path / "c")
    assert r["episodes"] == 5 and r["unfinished_not_merged"] == 1 and r["linked"] == 5 and r["copied"] == 0
    assert c.meta["merged_from"] == [str(a.path), str(b.path)] and c.env == a.env and c.partial_paths() == []
    sources = {p.name: (s, p) for s in (a, b) for p in s.episode_paths()}
    assert [p.name for p in c.episode_paths()] == sorted(sources)  # names kept: still in landing order
    for p in c.episode_paths():
        st, src = sources[p.name]
        mine, theirs = c.read_episode(p), st.read_episode(src)
        for k in ("obs", *STEP_KEYS):
            np.testing.assert_array_equal(getattr(mine, k), getattr(theirs, k))
        assert mine.attrs == theirs.attrs and os.path.samefile(p, src)  # a hard link
    # --copy: own files, same bytes.
    r = merge_stores([a.path, b.path], tmp_path / "d", copy=True)
    assert r["copied"] == 5 and r["linked"] == 0
    for p in Store.open(tmp_path / "d").episode_paths():
        src = sources[p.name][1]
        assert not os.path.samefile(p, src) and p.read_bytes() == src.read_bytes()


def test_merge_refuses_mismatched_stores_and_leaves_nothing(tmp_path, breakout_spec):
    a = make_store(tmp_path / "a", breakout_spec, [3])
    pong = Store.create_or_open(tmp_path / "pong", make_spec(EnvConfig(game="Pong")).to_dict())
    small = Store.create_or_open(tmp_path / "small", make_spec(EnvConfig(game="Breakout", frame_size=32)).to_dict())
    with pytest.raises(WmcliError) as e:
        merge_stores([a.path, pong.path], tmp_path / "c")
    line = str(e.value)
    assert "\n" not in line and str(a.path) in line and str(pong.path) in line and "name, num_actions" in line
    assert '"Breakout" vs "Pong"' in line
    with pytest.raises(WmcliError, match="differ in frame_shape, protocol"):
        merge_stores([a.path, small.path], tmp_path / "c")
    with pytest.raises(WmcliError, match="given twice"):
        merge_stores([a.path, tmp_path / "a" / "."], tmp_path / "c")
    with pytest.raises(WmcliError, match="is one of the stores to merge"):
        merge_stores([a.path], a.path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "pong", "small"]
    r = runner.invoke(app, ["store", "merge", str(a.path), str(pong.path), "-o", str(tmp_path / "c")])
    assert r.exit_code == 1 and "cannot merge" in r.stderr and not (tmp_path / "c").exists()


def test_an_interrupted_merge_leaves_no_output_and_no_temporary_folder(tmp_path, breakout_spec, monkeypatch):
    a = make_store(tmp_path / "a", breakout_spec, [3, 4])
    b = make_store(tmp_path / "b", breakout_spec, [2], seed=5)
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.path.basename(src).startswith(".tmp-merge-"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(shaping.os, "rename", failing_rename)
    with pytest.raises(WmcliError, match="nothing was written"):
        merge_stores([a.path, b.path], tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    # Ctrl-C in the middle of the files: the same.
    monkeypatch.setattr(shaping.os, "rename", real_rename)
    calls = []

    def interrupted_link(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return os.link(src, dst) is None

    monkeypatch.setattr(shaping, "_link", interrupted_link)
    with pytest.raises(KeyboardInterrupt):
        merge_stores([a.path, b.path], tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert len(a.episode_paths()) == 2 and len(b.episode_paths()) == 1


def test_merge_replaces_an_existing_store_only_when_nothing_is_lost(tmp_path, breakout_spec):
    a = make_store(tmp_path / "a", breakout_spec, [3, 4])
    b = make_store(tmp_path / "b", breakout_spec, [2], seed=5)
    merge_stores([a.path], tmp_path / "c")
    with pytest.raises(WmcliError, match="already exists; pass --overwrite"):
        merge_stores([a.path, b.path], tmp_path / "c")
    r = merge_stores([a.path, b.path], tmp_path / "c", overwrite=True)  # c's episodes are all in a: fine
    assert r["episodes"] == 3 and len(Store.open(tmp_path / "c").episode_paths()) == 3
    Store.open(tmp_path / "c").writer().write(random_episode(2, seed=77))  # collected into c directly
    with pytest.raises(WmcliError, match="1 episode.* found in none of the stores merged"):
        merge_stores([a.path, b.path], tmp_path / "c", overwrite=True)
    assert len(Store.open(tmp_path / "c").episode_paths()) == 4
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("mine")
    with pytest.raises(WmcliError, match="not a wmcli store; not replacing it"):
        merge_stores([a.path], tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "x.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---- the recorded held-out split ----------------------------------------------------------


def test_split_is_whole_episodes_reproducible_and_later_episodes_train(tmp_path, breakout_spec):
    store = make_store(tmp_path / "s", breakout_spec, [2] * 20)
    names = [p.name for p in store.episode_paths()]
    r = record_split(store, 0.1, seed=3)
    assert r["held_out"] == 2 and r["training"] == 18 and set(r["held_out_episodes"]) <= set(names)
    record = json.loads((store.path / "held-out.json").read_text())
    assert record["held_out"] == r["held_out_episodes"] and record["seed"] == 3 and record["fraction"] == 0.1
    train, val = store.split(0.5)  # the record wins over any val_fraction
    assert [p.name for p in val] == r["held_out_episodes"] and len(train) == 18 and not set(train) & set(val)
    with pytest.raises(WmcliError, match="already records 2 held-out episodes"):
        record_split(store, 0.1, seed=3)
    assert record_split(store, 0.1, seed=3, overwrite=True)["held_out_episodes"] == r["held_out_episodes"]
    assert record_split(store, 0.1, seed=4, overwrite=True)["held_out_episodes"] != r["held_out_episodes"]
    held = store.held_out()
    new = store.writer().write(random_episode(2, seed=50))  # landed after the split: trains
    train, val = store.split(0.1)
    assert new in train and [p.name for p in val] == held
    # Small stores: at least one held out of two, never all; fraction 0 holds none out.
    two = make_store(tmp_path / "two", breakout_spec, [2, 2])
    assert record_split(two, 0.01)["held_out"] == 1
    assert record_split(two, 0.9, overwrite=True)["held_out"] == 1
    assert record_split(two, 0.0, overwrite=True)["held_out"] == 0 and two.split(0.5)[1] == []
    # Without a record: today's hash split.
    plain = make_store(tmp_path / "plain", breakout_spec, [2] * 5)
    assert plain.split(0.3) == split_episodes(plain.episode_paths(), 0.3)


def test_a_corrupt_record_is_one_clear_error_naming_the_fix(tmp_path, breakout_spec):
    store = make_store(tmp_path / "s", breakout_spec, [2, 2, 2])
    for text in ("{not json", json.dumps({"format": "wmcli-held-out/1", "held_out": "a.h5"}), "[]"):
        (store.path / "held-out.json").write_text(text)
        with pytest.raises(WmcliError) as e:
            store.split(0.1)
        assert "held-out.json: unreadable held-out record" in str(e.value) and "--clear" in str(e.value)
        assert "--overwrite" in str(e.value)
    r = runner.invoke(app, ["store", "info", str(store.path)])
    assert r.exit_code == 0 and "unreadable" in r.stdout  # info still shows the store
    r = runner.invoke(app, ["store", "split", str(store.path), "--held-out", "0.3"])
    assert r.exit_code == 1 and "--clear" in r.stderr
    r = runner.invoke(app, ["store", "split", str(store.path), "--clear"])
    assert r.exit_code == 0 and not (store.path / "held-out.json").exists()


def test_split_cli_info_and_merge_carry_the_record(tmp_path, breakout_spec):
    a = make_store(tmp_path / "a", breakout_spec, [2] * 10)
    b = make_store(tmp_path / "b", breakout_spec, [2] * 3, seed=20)
    r = runner.invoke(app, ["store", "split", str(a.path), "--held-out", "0.2", "--seed", "1", "--json"])
    assert r.exit_code == 0, r.output
    held = json.loads(r.stdout)["held_out_episodes"]
    r = runner.invoke(app, ["store", "info", str(a.path), "--json"])
    assert json.loads(r.stdout)["held_out_recorded"]["held_out"] == 2
    r = runner.invoke(app, ["store", "info", str(a.path)])
    assert "held out (recorded)" in r.stdout and "fraction 0.2, seed 1" in r.stdout
    r = runner.invoke(app, ["store", "merge", str(a.path), str(b.path), "-o", str(tmp_path / "c")])
    assert r.exit_code == 0 and "merged 13 episodes" in r.stdout and "carried over: 2 episodes" in r.stderr
    c = Store.open(tmp_path / "c")
    train, val = c.split(0.1)
    assert [p.name for p in val] == held and len(train) == 11  # b's episodes train
    r = runner.invoke(app, ["store", "split", str(c.path)])
    assert r.exit_code == 0 and "carried over by a merge" in r.stdout


def test_train_wm_validates_on_the_recorded_episodes(tmp_path, breakout_spec):
    """The library function train-wm uses, and one real micro training on a split store."""
    from wmcli.base.recipe import load_recipe
    from wmcli.base.runtime import make_runtime
    from wmcli.training.train_wm import train_world_model

    store = make_store(tmp_path / "s", breakout_spec, [12] * 6)
    r = record_split(store, 0.3, seed=0)
    assert r["held_out"] == 2
    recipe = load_recipe("tiny", [*MICRO, "train_wm.steps=1", "train_wm.val_every=1", "train_wm.val_fraction=0.9"])
    out = train_world_model(recipe, store.path, tmp_path / "wm.pt", make_runtime("cpu"))
    assert out["val_episodes"] == 2 and out["train_episodes"] == 4 and "val/psnr_1step" in out["val"]
