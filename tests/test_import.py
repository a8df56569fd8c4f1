"""`wmcli store import`: every format from real files written here in that format (minari's own
writer for Minari, torch.save as DIAMOND's Dataset saves, h5py in the CS:GO dataset's layout, numpy,
imageio's ffmpeg), the exact arrays landing in the store, skipping on a second run, a kill, and
one clear line for each kind of malformed file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import MICRO
from typer.testing import CliRunner

from wmcli.base.errors import WmcliError
from wmcli.cli import app
from wmcli.data.importers import import_episodes, resize
from wmcli.data.importers.csgo import ACTION_MEANINGS, discrete_actions
from wmcli.data.store import Store

runner = CliRunner()


def smooth_frames(T: int, H: int = 64, W: int = 64, seed: int = 0) -> np.ndarray:
    """Frames that differ step to step and survive a lossy codec: shifted colour ramps."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 40, 3)
    ramp = np.linspace(0, 150, W)[None, None, :, None] + np.linspace(0, 40, H)[None, :, None, None]
    frames = ramp + base + 3 * np.arange(T)[:, None, None, None]
    return np.clip(frames, 0, 255).astype(np.uint8) + np.zeros((1, 1, 1, 3), np.uint8)


def arrays_episode(T: int, seed: int, n_actions: int = 4, end: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 256, (T + 1, 64, 64, 3), dtype=np.uint8), "act": rng.integers(0, n_actions, T),
            "rew": rng.choice([0.0, 1.0], T).astype(np.float32), "end": np.eye(1, T, T - 1, dtype=bool)[0] & end,
            "life_loss": rng.random(T) < 0.2}


def episodes(store_path: Path) -> dict[str, object]:
    """The store's episodes by source key."""
    st = Store.open(store_path)
    return {ep.attrs["source_key"]: ep for _, ep in st.iter_episodes()}


# ---- plain arrays --------------------------------------------------------------------------------


def test_npz_and_h5_episodes_land_exactly(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    eps = {f"ep{i}.npz": arrays_episode(10 + i, i) for i in range(3)}
    for name, a in eps.items():
        np.savez(src / name, **a)
    h5 = arrays_episode(7, 9, end=False)
    with h5py.File(src / "more.h5", "w") as f:
        for k, v in h5.items():
            f[k] = v
    eps["more.h5"] = h5
    r = import_episodes(src, tmp_path / "store")
    assert r["format"] == "arrays" and r["episodes_imported"] == 4 and r["frames_imported"] == sum(len(a["obs"]) for a in eps.values())
    got = episodes(tmp_path / "store")
    for key, a in eps.items():
        ep = got[key]
        for k in ("obs", "act", "rew", "end", "life_loss"):
            assert np.array_equal(getattr(ep, k), a[k]), (key, k)
        assert ep.trunc[-1] == (not a["end"][-1])  # an episode that did not end was cut
        assert json.loads(ep.attrs["source_frame_shape"]) == [64, 64, 3]
    st = Store.open(tmp_path / "store")
    assert st.env["kind"] == "imported" and st.env["name"] == "src" and st.env["num_actions"] == 4


def test_a_second_run_skips_what_landed_and_limit_counts_new_episodes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        np.savez(src / f"ep{i}.npz", **arrays_episode(6, i))
    assert import_episodes(src, tmp_path / "store", limit=1)["episodes_imported"] == 1
    r = import_episodes(src, tmp_path / "store")
    assert (r["episodes_imported"], r["episodes_skipped"]) == (3, 1)
    r = import_episodes(src, tmp_path / "store")
    assert (r["episodes_imported"], r["episodes_skipped"]) == (0, 4)
    assert len(Store.open(tmp_path / "store").episode_paths()) == 4
    assert r["store_summary"]["sources"] == {f"arrays:{src.resolve()}": {"episodes": 4, "steps": 24}}


def test_frames_are_resized_to_the_store_and_the_source_size_is_kept(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a = arrays_episode(5, 0)
    a["obs"] = smooth_frames(6, 96, 96)
    np.savez(src / "ep.npz", **a)
    import_episodes(src, tmp_path / "store", frame_size=32)
    ep = episodes(tmp_path / "store")["ep.npz"]
    assert ep.obs.shape == (6, 32, 32, 3)
    assert json.loads(ep.attrs["source_frame_shape"]) == [96, 96, 3]
    # area averaging: each 3x3 block's mean
    block = a["obs"][2, :3, :3].reshape(-1, 3).astype(float).mean(0)
    assert np.abs(ep.obs[2, 0, 0].astype(float) - block).max() <= 1.0
    assert resize(a["obs"], (96, 96)) is a["obs"]


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("act"), "key 'act' is missing"),
    (lambda a: a.update(obs=a["obs"][..., 0]), "'obs' is uint8 of shape (7, 64, 64)"),
    (lambda a: a.update(rew=a["rew"][:-2]), "'rew' has shape (4,), but 'act' has 6 steps"),
    (lambda a: a.update(obs=a["obs"].astype(np.float32)), "'obs' is float32"),
    (lambda a: a.update(act=np.full(6, 0.5)), "'act' holds non-integer values"),
])
def test_a_malformed_array_file_is_one_line_naming_the_key(tmp_path, change, message):
    src = tmp_path / "src"
    src.mkdir()
    a = arrays_episode(6, 0)
    change(a)
    np.savez(src / "bad.npz", **a)
    r = runner.invoke(app, ["store", "import", str(src), "--store", str(tmp_path / "store"), "--num-actions", "4"])
    assert r.exit_code != 0
    line = r.stderr.strip().splitlines()
    assert len(line) == 1 and "bad.npz" in line[0] and message in line[0], r.stderr
    assert not any((tmp_path / "store" / "episodes").glob("*.h5"))


def test_a_pickled_object_array_is_refused_not_run(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a = arrays_episode(4, 0)
    a["act"] = np.array(list(a["act"]), dtype=object)
    np.savez(src / "obj.npz", **a)
    with pytest.raises(WmcliError, match="obj.npz: unreadable array"):
        import_episodes(src, tmp_path / "store", num_actions=4)


# ---- DIAMOND's dataset folders ----------------------------------------------------------------------


def diamond_path(root: Path, episode_id: int) -> Path:
    """Where DIAMOND's Dataset puts episode `episode_id`: hundreds/tens/units folders (123 -> 100/20/3)."""
    h, t, u = episode_id // 100 % 10 * 100, episode_id // 10 % 10 * 10, episode_id % 10
    return root / f"{h:03d}" / f"{t:02d}" / f"{u:01d}" / f"{episode_id}.pt"


def write_diamond_episode(root: Path, episode_id: int, T: int, finished: bool, seed: int, n_actions: int = 5) -> dict:
    """An episode as DIAMOND's Episode.save writes it: obs (T, 3, H, W) bytes, end/trunc uint8,
    info with the final observation in [-1, 1] when the episode is over."""
    g = torch.Generator().manual_seed(seed)
    d = {"obs": torch.randint(0, 256, (T, 3, 64, 64), generator=g, dtype=torch.uint8),
         "act": torch.randint(0, n_actions, (T,), generator=g), "rew": torch.randint(-1, 2, (T,), generator=g).float(),
         "end": torch.zeros(T, dtype=torch.uint8), "trunc": torch.zeros(T, dtype=torch.uint8), "info": {}}
    if finished:
        d["end"][-1] = 1
        d["info"] = {"final_observation": torch.rand(3, 64, 64, generator=g) * 2 - 1}
    path = diamond_path(root, episode_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(d, path)
    return d


def test_diamond_dataset_folders_land_exactly(tmp_path):
    root = tmp_path / "dataset" / "train"
    written = {i: write_diamond_episode(root, i, 8 + i, finished=i != 12, seed=i) for i in (0, 1, 12)}
    torch.save({"num_episodes": 3}, root / "info.pt")  # the dataset's counters: not an episode
    r = import_episodes(tmp_path / "dataset", tmp_path / "store")
    assert r["format"] == "diamond" and r["episodes_imported"] == 3
    got = {ep.attrs["diamond_episode"]: ep for ep in episodes(tmp_path / "store").values()}
    assert set(got) == {0, 1, 12}
    for i, d in written.items():
        ep = got[i]
        frames = d["obs"].permute(0, 2, 3, 1).numpy()
        if i != 12:  # finished: the final observation is the last frame, as DIAMOND turns floats to bytes
            last = d["info"]["final_observation"].add(1).div(2).mul(255).byte().permute(1, 2, 0).numpy()
            assert np.array_equal(ep.obs, np.concatenate([frames, last[None]]))
            assert np.array_equal(ep.act, d["act"].numpy()) and ep.end[-1] and not ep.trunc[-1]
        else:  # under way: no frame after the last action, so that step is dropped and the episode is cut
            assert np.array_equal(ep.obs, frames) and np.array_equal(ep.act, d["act"].numpy()[:-1])
            assert ep.trunc[-1] and not ep.end.any()
        assert np.array_equal(ep.rew, d["rew"].numpy()[: len(ep)])
    assert Store.open(tmp_path / "store").env["name"] == tmp_path.name  # DIAMOND's run folder, above dataset/train


def test_a_diamond_import_for_a_real_game_takes_wmcli_episodes_too(tmp_path):
    root = tmp_path / "train"
    write_diamond_episode(root, 0, 6, True, 0, n_actions=3)  # MinAtar Breakout's 3 actions
    r = runner.invoke(app, ["store", "import", str(root), "--store", str(tmp_path / "store"), "--game", "minatar:Breakout",
                            "--json"])
    assert r.exit_code == 0, r.stderr
    st = Store.open(tmp_path / "store")
    assert st.env["kind"] == "minatar" and st.env["name"] == "minatar:Breakout"
    r = runner.invoke(app, ["collect", "--env", "minatar:Breakout", "--store", str(tmp_path / "store"), "--env-steps", "30",
                            "--seed", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    s = json.loads(runner.invoke(app, ["store", "info", str(tmp_path / "store"), "--json"]).stdout)
    assert s["sources"][f"diamond:{root.resolve()}"]["episodes"] == 1
    assert s["sources"]["collect (random)"]["steps"] >= 1


def test_a_diamond_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    root = tmp_path / "train" / "000" / "00" / "0"
    root.mkdir(parents=True)
    torch.save({"obs": Payload()}, root / "0.pt")
    r = runner.invoke(app, ["store", "import", str(tmp_path / "train"), "--store", str(tmp_path / "store"), "--format", "diamond"])
    assert r.exit_code != 0 and not marker.exists()
    assert "0.pt is not a readable DIAMOND episode file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_diamond_file_without_obs_is_named(tmp_path):
    root = tmp_path / "train"
    d = write_diamond_episode(root, 0, 5, True, 0)
    del d["obs"]
    torch.save(d, diamond_path(root, 0))
    with pytest.raises(WmcliError, match=r"0\.pt: key 'obs' is missing; expected a DIAMOND episode file"):
        import_episodes(root, tmp_path / "store", num_actions=5)


# ---- the CS:GO dataset -------------------------------------------------------------------------------


def csgo_action(keys: str = "", fire: bool = False, mouse_x: int = 0) -> np.ndarray:
    y = np.zeros(51, np.float32)
    for k in keys:
        y["wasd".index(k)] = 1
    y[11] = fire
    y[13 + [-1000, -500, -300, -200, -100, -60, -30, -20, -10, -4, -2, 0, 2, 4, 10, 20, 30, 60, 100, 200, 300, 500,
            1000].index(mouse_x)] = 1
    y[36 + 7] = 1  # mouse y: 0
    return y


def write_csgo_file(path: Path, n: int, seed: int, actions: list[np.ndarray], kills=(), deaths=()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 150, 280, 3), dtype=np.uint8)  # BGR, as recorded
    with h5py.File(path, "w") as f:
        for i in range(n):
            f[f"frame_{i}_x"] = frames[i]
            f[f"frame_{i}_xaux"] = np.zeros(54, np.float32)
            f[f"frame_{i}_y"] = actions[i % len(actions)]
            f[f"frame_{i}_helperarr"] = np.array([i in kills, i in deaths], np.float32)
    return frames


def test_csgo_actions_map_to_the_documented_discrete_set():
    y = np.stack([csgo_action(), csgo_action("w"), csgo_action("ws"), csgo_action("wa", fire=True),
                  csgo_action("sd", mouse_x=-30), csgo_action("d", mouse_x=4), csgo_action("a", fire=True, mouse_x=1000)])
    names = [ACTION_MEANINGS[i] for i in discrete_actions(y)]
    assert names == ["NOOP", "W", "NOOP", "W+A FIRE", "S+D LEFT", "D", "A FIRE RIGHT"]
    assert len(ACTION_MEANINGS) == 54 and len(set(ACTION_MEANINGS)) == 54


def test_csgo_files_land_as_cut_episodes_with_kills_as_rewards(tmp_path):
    src = tmp_path / "csgo"
    src.mkdir()
    acts = [csgo_action("w"), csgo_action("a", fire=True), csgo_action(mouse_x=-60)]
    frames = {n: write_csgo_file(src / f"hdf5_dm_july2021_{n}.hdf5", 9, n, acts, kills=(3,), deaths=(5,)) for n in (10, 2)}
    r = runner.invoke(app, ["store", "import", str(src), "--store", str(tmp_path / "store")])
    assert r.exit_code != 0 and "150x280 frames" in r.stderr and "--frame-size" in r.stderr
    r = import_episodes(src, tmp_path / "store", frame_size=32)
    assert r["format"] == "csgo" and r["episodes_imported"] == 2
    st = Store.open(tmp_path / "store")
    assert st.env["num_actions"] == 54 and st.env["action_meanings"][:2] == ["NOOP", "LEFT"]
    paths = st.episode_paths()
    assert [st.read_episode(p).attrs["source_key"] for p in paths] == ["hdf5_dm_july2021_2.hdf5", "hdf5_dm_july2021_10.hdf5"]
    ep = episodes(tmp_path / "store")["hdf5_dm_july2021_2.hdf5"]
    assert len(ep) == 8 and ep.obs.shape == (9, 32, 32, 3)
    assert ep.rew.tolist() == [0, 0, 1, 0, 0, 0, 0, 0] and ep.life_loss.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert not ep.end.any() and ep.trunc[-1]
    assert [st.env["action_meanings"][a] for a in ep.act[:3]] == ["W", "A FIRE", "LEFT"]
    # BGR -> RGB, then area-resized: the blue channel of the source is the red one here
    rgb = frames[2][0, :, :, ::-1]
    assert np.abs(ep.obs[0].astype(float) - resize(np.ascontiguousarray(rgb[None]), (32, 32))[0]).max() == 0


def test_a_csgo_file_missing_a_frames_action_is_named(tmp_path):
    src = tmp_path / "csgo"
    src.mkdir()
    write_csgo_file(src / "hdf5_dm_july2021_1.hdf5", 5, 0, [csgo_action()])
    with h5py.File(src / "hdf5_dm_july2021_1.hdf5", "a") as f:
        del f["frame_3_y"]
    with pytest.raises(WmcliError, match="hdf5_dm_july2021_1.hdf5: key 'frame_3_y' is missing; expected a CS:GO dataset file"):
        import_episodes(src, tmp_path / "store", frame_size=32)


# ---- Minari ------------------------------------------------------------------------------------------


def write_minari(root: Path, dataset_id: str, eps: list[dict], obs_space=None):
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    buffers = [EpisodeBuffer(observations=e["obs"], actions=e["act"], rewards=e["rew"], terminations=e["end"],
                             truncations=~e["end"] & (np.arange(len(e["act"])) == len(e["act"]) - 1)) for e in eps]
    space = obs_space or gym.spaces.Box(0, 255, eps[0]["obs"].shape[1:], np.uint8)
    with pytest.warns(UserWarning):  # minari asks for an author email, a description, ...
        minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=space,
                                           action_space=gym.spaces.Discrete(6), algorithm_name="random")


def test_minari_datasets_by_id_and_by_folder(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    eps = []
    for i in range(3):
        T = 12 + i
        eps.append({"obs": smooth_frames(T + 1, seed=i), "act": np.arange(T) % 6, "rew": np.ones(T),
                    "end": np.eye(1, T, T - 1, dtype=bool)[0] & (i < 2)})
    write_minari(tmp_path / "minari", "wmcli/breakout/random-v0", eps)
    r = runner.invoke(app, ["store", "import", "wmcli/breakout/random-v0", "--store", str(tmp_path / "store"), "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["format"] == "minari" and out["episodes_imported"] == 3
    st = Store.open(tmp_path / "store")
    assert st.env["num_actions"] == 6 and st.env["name"] == "wmcli/breakout/random-v0"
    got = episodes(tmp_path / "store")
    for i, e in enumerate(eps):
        ep = got[f"episode_{i}"]
        assert np.array_equal(ep.act, e["act"]) and np.array_equal(ep.end, e["end"]) and ep.trunc[-1] == (i == 2)
        assert np.abs(ep.obs.astype(int) - e["obs"]).mean() < 3  # minari stores images as JPEG
    # by folder, into another store; the same dataset again is skipped
    r = import_episodes(tmp_path / "minari" / "wmcli" / "breakout" / "random-v0", tmp_path / "store2")
    assert r["episodes_imported"] == 3
    assert import_episodes(tmp_path / "minari" / "wmcli" / "breakout" / "random-v0" / "data", tmp_path / "store2")[
        "episodes_skipped"] == 3


def test_a_minari_dataset_without_images_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    import gymnasium as gym

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    T = 5
    e = {"obs": np.zeros((T + 1, 4), np.float32), "act": np.zeros(T, int), "rew": np.zeros(T), "end": np.eye(1, T, T - 1, dtype=bool)[0]}
    write_minari(tmp_path / "minari", "wmcli/vec/random-v0", [e], obs_space=gym.spaces.Box(-1, 1, (4,), np.float32))
    with pytest.raises(WmcliError, match=r"observations are Box\(-1\.0, 1\.0, \(4,\), float32\), not images"):
        import_episodes("wmcli/vec/random-v0", tmp_path / "store")
    with pytest.raises(WmcliError, match="not a local Minari dataset"):
        import_episodes("wmcli/none/random-v0", tmp_path / "store", fmt="minari")


# ---- videos with an actions file ---------------------------------------------------------------------


def write_videos(src: Path, lengths: list[int]) -> dict[str, int]:
    src.mkdir()
    rows, frames = ["video,step,act,rew,end"], {}
    for i, n in enumerate(lengths):
        name = f"take{i}.mp4"
        iio.imwrite(src / name, smooth_frames(n, seed=i), fps=15)
        frames[name] = len(iio.imread(src / name, index=None))
        rows += [f"{name},{s},{(s + i) % 3},{float(s == 2)},{int(i == 0 and s == frames[name] - 2)}"
                 for s in range(frames[name] - 1)]
    (src / "actions.csv").write_text("\n".join(rows) + "\n")
    return frames


def test_videos_with_an_actions_file(tmp_path):
    frames = write_videos(tmp_path / "vids", [9, 12])
    r = import_episodes(tmp_path / "vids", tmp_path / "store")
    assert r["format"] == "videos" and r["episodes_imported"] == 2
    got = episodes(tmp_path / "store")
    for i, (name, n) in enumerate(frames.items()):
        ep = got[name]
        assert len(ep.obs) == n and ep.act.tolist() == [(s + i) % 3 for s in range(n - 1)]
        assert ep.rew[2] == 1 and ep.rew.sum() == 1
        assert ep.end[-1] == (i == 0) and ep.trunc[-1] == (i == 1)
        assert np.abs(ep.obs.astype(int) - smooth_frames(n, seed=i)).mean() < 4  # h264 is lossy


def test_a_video_whose_actions_do_not_cover_it_is_named(tmp_path):
    write_videos(tmp_path / "vids", [8])
    table = tmp_path / "vids" / "actions.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:3] + lines[4:]) + "\n")  # drop step 2
    with pytest.raises(WmcliError, match="step 2 of 'take0.mp4' is missing or out of order"):
        import_episodes(tmp_path / "vids", tmp_path / "store")
    table.write_text("video,act\n")
    with pytest.raises(WmcliError, match="no column 'step'"):
        import_episodes(tmp_path / "vids", tmp_path / "store")


# ---- the store made, kills, and what a store without a game can do ---------------------------------------


def test_a_killed_import_keeps_its_episodes_and_goes_on(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        np.savez(src / f"ep{i:02d}.npz", **arrays_episode(60, i))
    store = tmp_path / "store"
    p = subprocess.Popen([sys.executable, "-m", "wmcli", "store", "import", str(src), "--store", str(store)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len([p for p in (store / "episodes").glob("*.h5") if not p.name.startswith(".")]) < 3:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    landed = len(Store.open(store).episode_paths())
    assert 3 <= landed < 40, landed
    r = import_episodes(src, store)
    assert r["episodes_skipped"] == landed and r["episodes_imported"] == 40 - landed
    keys = [ep.attrs["source_key"] for _, ep in Store.open(store).iter_episodes(frames=False)]
    assert sorted(keys) == sorted(f"ep{i:02d}.npz" for i in range(40))  # every episode once, whole


def test_an_imported_store_trains_a_world_model_but_is_not_played(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        np.savez(src / f"ep{i}.npz", **arrays_episode(30, i, n_actions=3))
    import_episodes(src, tmp_path / "store", name="my-game")
    sets = [x for s in [*MICRO, "train_wm.val_every=1000", "train_wm.log_every=1"] for x in ("--set", s)]
    r = runner.invoke(app, ["train-wm", "--store", str(tmp_path / "store"), "-o", str(tmp_path / "wm.pt"), "--steps", "2",
                            "--json", *sets])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["export", str(tmp_path / "wm.pt"), "-o", str(tmp_path / "folder")])
    assert r.exit_code == 0, r.stderr
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "- recorded-data" in card and "recorded data of my-game" in card and "Atari" not in card
    from wmcli.data.env import make_env

    with pytest.raises(WmcliError, match="my-game was imported from recorded data .* no real game to play"):
        make_env(Store.open(tmp_path / "store").spec)


def test_importing_into_a_store_of_fewer_actions_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "ep.npz", **arrays_episode(6, 0, n_actions=4))
    np.savez(src / "big.npz", **{**arrays_episode(6, 1), "act": np.full(6, 7)})
    with pytest.raises(WmcliError, match=r"big.npz: action 7 is outside the store's 4 actions"):
        import_episodes(src, tmp_path / "store", num_actions=4)
    assert len(Store.open(tmp_path / "store").episode_paths()) == 0  # big.npz sorts first: nothing landed


def test_an_unknown_source_says_which_formats_there_are(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    r = runner.invoke(app, ["store", "import", str(tmp_path / "src"), "--store", str(tmp_path / "store")])
    assert r.exit_code != 0 and "cannot tell the format" in r.stderr and "diamond, csgo, minari, arrays, videos" in r.stderr
    r = runner.invoke(app, ["store", "import", str(tmp_path / "none"), "--store", str(tmp_path / "store")])
    assert r.exit_code != 0 and "not found" in r.stderr
