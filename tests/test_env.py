"""Real ALE and MinAtar environments: names, protocol, and the two ALE paths agreeing."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.data.env import AreaResize, make_env, make_spec, make_vector_env, resolve_game


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("Breakout", "Breakout"),
        ("breakout", "Breakout"),
        ("MsPacman", "MsPacman"),
        ("ms_pacman", "MsPacman"),
        ("ALE/Pong-v5", "Pong"),
        ("SpaceInvadersNoFrameskip-v4", "SpaceInvaders"),
        ("UpNDown", "UpNDown"),
        ("KungFuMaster", "KungFuMaster"),
        ("minatar:Breakout", "minatar:Breakout"),
        ("minatar:space_invaders", "minatar:SpaceInvaders"),
    ],
)
def test_resolve_names(name, canonical):
    assert resolve_game(name)[1] == canonical


ATARI_100K = (
    "Alien Amidar Assault Asterix BankHeist BattleZone Boxing Breakout ChopperCommand CrazyClimber "
    "DemonAttack Freeway Frostbite Gopher Hero Jamesbond Kangaroo Krull KungFuMaster MsPacman Pong "
    "PrivateEye Qbert RoadRunner Seaquest UpNDown"
).split()


def test_all_atari100k_games_resolve():
    assert len(ATARI_100K) == 26
    for g in ATARI_100K:
        kind, name, rom = resolve_game(g)
        assert kind == "ale" and name == g, g


def test_unknown_game_names_closest():
    with pytest.raises(WmcliError) as e:
        resolve_game("Asterik")
    msg = str(e.value)
    assert "unknown game 'Asterik'" in msg and "Asterix" in msg and "\n" not in msg


def test_spec_records_protocol(breakout_spec):
    d = breakout_spec.to_dict()
    assert d["num_actions"] == 4 and d["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert d["frame_shape"] == [64, 64, 3]
    p = d["protocol"]
    assert (p["frame_skip"], p["noop_max"], p["sticky_prob"], p["max_episode_frames"]) == (4, 30, 0.0, 108_000)


def test_bad_mode_is_refused():
    with pytest.raises(WmcliError, match="no mode 99"):
        make_spec(EnvConfig(game="Breakout", mode=99))


def test_area_resize_averages():
    # A 4x4 frame halved: each output pixel is the mean of a 2x2 block.
    f = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2) * 10
    out = AreaResize((4, 4), (2, 2))(f)
    np.testing.assert_array_equal(out[..., 0], [[25, 45], [105, 125]])
    # Non-integer factors keep a constant image constant.
    flat = np.full((210, 160, 3), 77, dtype=np.uint8)
    assert (AreaResize((210, 160), (64, 64))(flat) == 77).all()


def test_vector_env_real_breakout_steps(breakout_spec):
    venv = make_vector_env(breakout_spec, 2)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    total = np.zeros(2)
    for _ in range(300):
        obs, rew, term, trunc, info = venv.step(rng.integers(0, 4, size=2))
        total += rew
    assert obs.std() > 10  # real frames, not blank
    assert (info["lives"] <= 5).all()
    venv.close()


def test_vector_and_gymnasium_paths_give_the_same_frames(breakout_spec):
    """ale-py's C++ vector env and our numpy statement of the protocol agree frame for frame,
    rewards, lives and the game-over step included, for the same no-ops and actions."""
    venv = make_vector_env(breakout_spec, 1)
    env = make_env(breakout_spec)
    for seed in (3, 11):
        vobs, vinfo = venv.reset(seed=seed)
        noops = int(vinfo["episode_frame_number"][0])  # raw no-op frames the C++ side played
        gobs, ginfo = env.reset(seed=seed, options={"noops": noops})
        np.testing.assert_array_equal(vobs[0], gobs)
        rng = np.random.default_rng(seed)
        for t in range(2000):
            a = int(rng.integers(0, 4))
            vobs, vr, vt, vtr, vinfo = venv.step(np.array([a]))
            gobs, gr, gt, gtr, ginfo = env.step(a)
            np.testing.assert_array_equal(vobs[0], gobs, err_msg=f"seed {seed} step {t}")
            assert (vr[0], bool(vt[0]), bool(vtr[0]), int(vinfo["lives"][0])) == (gr, gt, gtr, ginfo["lives"])
            if gt:
                break
        assert gt, "episode should end within 2000 random steps"
        venv.step(np.array([0]))  # next-step autoreset of the vector env
    venv.close()


def test_gymnasium_path_reaches_modes():
    spec = make_spec(EnvConfig(game="Breakout", mode=4, difficulty=1))
    env = make_env(spec)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    venv = make_vector_env(spec, 2)  # mode set: the gymnasium path, vectorized in-process
    assert isinstance(venv, gym.vector.SyncVectorEnv)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3)


def test_frame_size_is_a_setting():
    spec = make_spec(EnvConfig(game="Pong", frame_size=32))
    venv = make_vector_env(spec, 1)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (1, 32, 32, 3)


def test_vector_env_is_seeded(breakout_spec):
    def run(seed):
        venv = make_vector_env(breakout_spec, 2)
        venv.reset(seed=seed)
        rng = np.random.default_rng(0)
        frames = [venv.step(rng.integers(0, 4, size=2))[0].copy() for _ in range(60)]
        venv.close()
        return np.stack(frames)

    a, b = run(7), run(7)
    np.testing.assert_array_equal(a, b)


def test_minatar_frames_and_determinism():
    spec = make_spec(EnvConfig(game="minatar:Breakout", frame_size=20))
    assert spec.num_actions == 3
    env = make_env(spec)

    def play(seed):
        obs, _ = env.reset(seed=seed)
        frames, rng = [obs], np.random.default_rng(0)
        for _ in range(100):
            obs, r, term, trunc, _ = env.step(int(rng.integers(0, 3)))
            frames.append(obs)
            if term:
                obs, _ = env.reset()
        return np.stack(frames)

    a = play(1)
    assert a.shape == (101, 20, 20, 3) and a.dtype == np.uint8
    assert len(np.unique(a.reshape(-1, 3), axis=0)) >= 3  # background + several objects
    np.testing.assert_array_equal(a, play(1))


@pytest.mark.slow
def test_both_paths_draw_no_ops_in_zero_to_noop_max_minus_one():
    """The range docs/env.md states: ale-py's vector env draws [0, noop_max - 1] (read off the
    episode frame number after reset), and the numpy path draws the same."""
    from ale_py.vector_env import AtariVectorEnv

    fast = set()
    for seed in range(12):
        v = AtariVectorEnv("breakout", 4, noop_max=3, stack_num=1, img_height=64, img_width=64, grayscale=False,
                           frameskip=4, maxpool=True, reward_clipping=False, episodic_life=False, use_fire_reset=False)
        _, info = v.reset(seed=seed)
        fast.update(int(x) for x in info["episode_frame_number"])
        v.close()
    env = make_env(make_spec(EnvConfig(game="Breakout", noop_max=3)))  # one env: the numpy path
    slow = set()
    for seed in range(40):
        env.reset(seed=seed)
        slow.add(env.ale.getEpisodeFrameNumber())
    env.close()
    assert fast == slow == {0, 1, 2}
