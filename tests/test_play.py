"""`wmcli play`: keys to the game's actions by ALE names, keys files, the play session (restarts
from real frames, live denoising steps, the agent and the hand-over, dreamed ends), headless
play and its recording, and the real pygame window on SDL's dummy video driver."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MICRO
from typer.testing import CliRunner

from wmcli.base.checkpoint import save_checkpoint
from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError
from wmcli.base.recipe import load_recipe
from wmcli.cli import app
from wmcli.data.env import make_env, make_spec
from wmcli.models.actor_critic import ActorCritic
from wmcli.outputs.play import PlayConfig, PlaySession, StoreStarts, open_session, play
from wmcli.outputs.play_keys import (
    BUTTONS,
    KeyCommand,
    action_for_keys,
    action_name,
    buttons_of,
    frames_of,
    key_help,
    keys_for_action,
    parse_keys,
)
from wmcli.outputs.video import read_video, upscale
from wmcli.world.world_model import build_networks

runner = CliRunner()

SEAQUEST = ("NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
            "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE")


def one_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("wmcli: error: "), result.stderr
    return lines[0]


# ---- keys -> actions ------------------------------------------------------------------------------


def test_keys_map_to_ale_actions_by_name_with_combinations():
    spec = make_spec(EnvConfig(game="Seaquest"))  # all 18 actions, as ALE names them
    assert spec.action_meanings == SEAQUEST
    m = spec.action_meanings

    def act(*held):
        return m[action_for_keys(list(held), m)]

    assert act() == "NOOP" and act("FIRE") == "FIRE" and act("UP") == "UP" and act("LEFT") == "LEFT"
    assert act("UP", "RIGHT") == "UPRIGHT" and act("RIGHT", "UP") == "UPRIGHT"  # ALE's order, whatever the press order
    assert act("UP", "RIGHT", "FIRE") == "UPRIGHTFIRE" and act("FIRE", "DOWN", "LEFT") == "DOWNLEFTFIRE"
    assert act("LEFT", "RIGHT") == "RIGHT" and act("RIGHT", "LEFT") == "LEFT"  # of opposite arrows, the later
    assert act("UP", "DOWN", "FIRE") == "DOWNFIRE"
    # Every ALE name is its buttons joined in ALE's order.
    for name in SEAQUEST:
        assert action_name(buttons_of(name)) == name
    assert buttons_of("UPRIGHTFIRE") == {"UP", "RIGHT", "FIRE"} and buttons_of("NOOP") == frozenset()
    assert buttons_of("JUMP") is None and buttons_of("UPUP") is None and buttons_of("UPX") is None
    assert buttons_of("rightup") == {"UP", "RIGHT"}  # a keys file may name the buttons in any order
    assert keys_for_action("UPRIGHTFIRE") == "up+right+space" and keys_for_action("NOOP") == "(no key)"
    assert key_help(m) == "arrows UP DOWN LEFT RIGHT, space FIRE (held together: 12 combined actions)"


def test_a_missing_combination_falls_back_to_the_nearest_action_the_game_has():
    breakout = make_spec(EnvConfig(game="Breakout")).action_meanings  # NOOP FIRE RIGHT LEFT
    pong = make_spec(EnvConfig(game="Pong")).action_meanings  # ... RIGHTFIRE LEFTFIRE

    def act(m, *held):
        return m[action_for_keys(list(held), m)]

    assert act(breakout, "UP", "RIGHT") == "RIGHT"  # keeps what it can
    assert act(breakout, "UP") == "NOOP" and act(breakout, "DOWN", "FIRE") == "FIRE"
    assert act(breakout, "RIGHT", "FIRE") == "FIRE" and act(breakout, "FIRE", "RIGHT") == "RIGHT"  # the later press
    assert act(pong, "RIGHT", "FIRE") == "RIGHTFIRE" and act(pong, "UP", "LEFT", "FIRE") == "LEFTFIRE"
    assert key_help(breakout) == "arrows LEFT RIGHT, space FIRE"  # in ALE's order, whatever the game's
    assert action_for_keys(["UP"], ("FIRE", "RIGHT")) == 0  # no NOOP at all: action 0


def test_minatar_actions_map_by_the_same_names():
    def act(game, *held):
        m = make_spec(EnvConfig(game=game)).action_meanings
        return m[action_for_keys(list(held), m)]

    assert act("minatar:Breakout", "LEFT") == "LEFT" and act("minatar:Breakout", "FIRE") == "NOOP"
    assert act("minatar:SpaceInvaders", "RIGHT", "FIRE") == "FIRE"  # no RIGHTFIRE: the later press
    assert act("minatar:SpaceInvaders", "FIRE", "RIGHT") == "RIGHT"
    assert act("minatar:Asterix", "UP", "RIGHT") == "RIGHT" and act("minatar:Asterix", "RIGHT", "UP") == "UP"
    assert act("minatar:Freeway", "UP") == "UP" and act("minatar:Freeway", "LEFT") == "NOOP"
    assert act("minatar:Seaquest", "DOWN", "FIRE") == "FIRE"


# ---- keys files ---------------------------------------------------------------------------------


def test_keys_file_format():
    text = "RIGHT FIRE\n\nupright *3   # up and right, three frames\n# only a comment\nr\nsteps 2\ntab\nspace NOOP\n"
    cmds = parse_keys(text)
    assert cmds == [
        KeyCommand("frame", 1, ("RIGHT", "FIRE")), KeyCommand("frame", 2, ()),
        KeyCommand("frame", 3, ("UP", "RIGHT"), repeat=3),  # line 4, only a comment, dreams nothing
        KeyCommand("restart", 5), KeyCommand("steps", 6, value=2), KeyCommand("hand", 7),
        KeyCommand("frame", 8, ("FIRE",)),
    ]
    assert frames_of(cmds) == 6


def test_the_keys_file_of_the_docs_parses():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "play.md").read_text()
    block = doc.split("# demo.keys", 1)[1].split("```", 1)[0]
    cmds = parse_keys("# demo.keys" + block)
    assert [c.kind for c in cmds] == ["frame"] * 5 + ["restart", "steps", "hand", "frame"]
    assert frames_of(cmds) == 1 + 1 + 10 + 1 + 1 + 20
    assert set(BUTTONS) == {"UP", "DOWN", "LEFT", "RIGHT", "FIRE"}


@pytest.mark.parametrize("text,words", [
    ("RIGHT\nRIGHT JUMP\n", ["line 2", "unknown key 'JUMP'", "UP DOWN LEFT RIGHT FIRE", "steps N"]),
    ("LEFT *0\n", ["line 1", "'0' is not a whole number"]),
    ("steps\n", ["line 1", "'steps' takes one number"]),
    ("steps fast\n", ["line 1", "'fast' is not a whole number"]),
    ("r now\n", ["line 1", "'r' stands alone"]),
])
def test_keys_file_errors_name_the_line_and_what_is_known(text, words):
    with pytest.raises(WmcliError) as e:
        parse_keys(text, "keys file k.txt")
    for w in words:
        assert w in str(e.value)
    assert str(e.value).startswith("keys file k.txt line")


# ---- the session --------------------------------------------------------------------------------


def _save_wm(path: Path, game: str, recipe_name: str = "tiny", end: bool | None = False) -> Path:
    """An untrained micro world model of `game`; its reward/end model made to sample no end (end=False),
    always an end (True), or left as initialised (None), with reward 0."""
    recipe = load_recipe(recipe_name, [*MICRO, f"env.game={game}"])
    spec = make_spec(recipe.env)
    torch.manual_seed(0)
    den, rew_end = build_networks(recipe, spec.num_actions)
    if end is not None:
        with torch.no_grad():  # constant features, then logits: reward 0 (class 1), end or not, by far
            first, last = rew_end.head[0], rew_end.head[2]
            first.weight.zero_()
            first.bias.fill_(1.0)
            logits = torch.tensor([-30.0, 30.0, -30.0, -30.0, 30.0] if end else [-30.0, 30.0, -30.0, 30.0, -30.0])
            last.weight.copy_(logits[:, None].expand_as(last.weight) / (last.weight.shape[1] * torch.nn.functional.silu(torch.tensor(1.0))))
    save_checkpoint(path, {"kind": "world_model", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                           "models": {"denoiser": den.state_dict(), "rew_end": rew_end.state_dict()}, "resume": {}})
    return path


def _save_agent(path: Path, game: str, recipe_name: str = "tiny") -> Path:
    recipe = load_recipe(recipe_name, [*MICRO, f"env.game={game}"])
    spec = make_spec(recipe.env)
    net = ActorCritic(recipe.actor_critic, spec.num_actions, spec.frame_shape[0])
    save_checkpoint(path, {"kind": "agent", "recipe": recipe.to_dict(), "env": spec.to_dict(), "step": 0,
                           "models": {"actor_critic": net.state_dict()}, "resume": {}})
    return path


@pytest.fixture(scope="module")
def minatar(tmp_path_factory):
    """A MinAtar Breakout world model (10x10 frames) that never dreams an end, one that always does,
    and an agent for it."""
    d = tmp_path_factory.mktemp("play")
    return {"wm": _save_wm(d / "wm.pt", "minatar:Breakout", "minatar"),
            "ends": _save_wm(d / "ends.pt", "minatar:Breakout", "minatar", end=True),
            "agent": _save_agent(d / "agent.pt", "minatar:Breakout", "minatar")}


def _fp32(**kw) -> PlayConfig:
    return PlayConfig(device="cpu", precision="fp32", threads=1, **kw)


def test_restarts_start_from_real_frames_of_the_store(micro_wm, breakout_store):
    session = open_session(micro_wm, _fp32(store=breakout_store.path), seed=0)
    paths = breakout_store.episode_paths()
    starts = set()
    for _ in range(3):
        src = session.context.source
        ep = breakout_store.read_episode(paths[src["episode"]])
        s = src["start"]
        assert np.array_equal(session.context.obs[0], ep.obs[s : s + 4])  # the store's frames, exactly
        assert np.array_equal(session.context.act[0], ep.act[s : s + 3])
        assert np.array_equal(session.frame, ep.obs[s + 3])
        starts.add((src["episode"], s))
        session.step(0)
        session.reset()
    assert len(starts) > 1 and session.restarts == 3  # each restart is a fresh context
    fixed = open_session(micro_wm, _fp32(store=breakout_store.path, episode=1, start=5), seed=0)
    ep = breakout_store.read_episode(paths[1])
    assert np.array_equal(fixed.context.obs[0], ep.obs[5:9])


def test_restarts_from_the_real_game_are_fresh_resets(minatar):
    session = open_session(minatar["wm"], _fp32(), seed=3)
    spec = session.spec
    seeds = []
    for _ in range(2):
        src = session.context.source
        assert src["kind"] == "game" and src["game"] == "minatar:Breakout"
        env = make_env(spec)
        first, _ = env.reset(seed=src["reset_seeds"][0])
        assert np.array_equal(session.context.obs[0, 0], first)  # the context begins with the real reset
        for i, a in enumerate(session.context.act[0]):  # ... and the real game's frames after its actions
            assert np.array_equal(env.step(int(a))[0], session.context.obs[0, i + 1])
        seeds.append(src["reset_seeds"][0])
        session.reset()
    assert seeds[0] != seeds[1]


def test_live_denoising_steps_change_the_network_evaluations(minatar, monkeypatch):
    session = open_session(minatar["wm"], _fp32(denoising_steps=1), seed=0)
    calls = []
    real = session.wm.denoiser.denoise
    monkeypatch.setattr(session.wm.denoiser, "denoise", lambda *a, **k: calls.append(1) or real(*a, **k))
    session.step(0)
    assert len(calls) == 1
    assert session.set_denoising_steps(3) == 3
    calls.clear()
    session.step(0)
    assert len(calls) == 3 and session.sampler.num_steps == 3
    assert session.set_denoising_steps(0) == 1 and session.set_denoising_steps(10**6) == 100  # kept in range


def test_the_agent_plays_until_handed_over_and_keeps_its_memory(minatar):
    session = open_session(minatar["wm"], _fp32(agent=minatar["agent"]), seed=0)
    proposed = []
    act = session.policy.act
    session.policy.act = lambda obs, first: proposed.append(int(act(obs, first)[0])) or np.array([proposed[-1]])
    user = 1  # LEFT
    taken = [session.step(user) for _ in range(6)]
    assert [s.action for s in taken] == proposed and {s.by for s in taken} == {"agent"}
    assert session.hand_over() == "you"
    mine = [session.step(user) for _ in range(3)]
    assert [s.action for s in mine] == [user] * 3 and {s.by for s in mine} == {"you"}
    assert len(proposed) == 9  # the agent saw the frames the player played too
    assert session.hand_over() == "agent"
    assert session.step(user).action == proposed[-1]


def test_a_dreamed_end_restarts_from_a_fresh_real_context(minatar):
    session = open_session(minatar["ends"], _fp32(), seed=0)
    before = session.context.source["reset_seeds"]
    s = session.step(0)
    assert s.end and s.rew == 0.0 and session.ends == 1 and session.restarts == 1 and session.t == 0
    assert session.context.source["reset_seeds"] != before
    assert np.array_equal(session.frame, session.context.obs[0, -1])
    calm = open_session(minatar["wm"], _fp32(), seed=0)
    assert not any(calm.step(0).end for _ in range(5)) and calm.restarts == 0 and calm.t == 5


# ---- headless -----------------------------------------------------------------------------------


def test_headless_plays_the_keys_file_into_a_video_of_its_frames(micro_wm, breakout_store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # headless needs no pygame at all
    keys = tmp_path / "keys.txt"
    keys.write_text("RIGHT\nLEFT *2\nFIRE\n\nr\nsteps 1\nUP RIGHT *2\n")
    out = tmp_path / "out.mp4"
    res = play(micro_wm, _fp32(store=breakout_store.path, headless=True, keys=keys, output=out, seed=0, scale=2))
    assert res["frames"] == 7 and res["output"] == str(out) and res["restarts_asked"] == 1
    assert res["restarts"] >= 1 and res["sampler"]["num_steps"] == 1  # the file's 'steps 1' is in force at the end
    assert res["actions"] == {"RIGHT": 3, "LEFT": 2, "FIRE": 1, "NOOP": 1}  # UP RIGHT -> RIGHT in Breakout
    assert res["by"] == {"you": 7} and res["keys"]["RIGHT"] == "right"
    video = read_video(out)
    assert video.shape == (7, 128, 128, 3)  # one frame per step played, 64 x scale 2


def test_headless_in_bf16(minatar, tmp_path):
    """bf16 autocast (auto's choice on CPUs with bf16 units), with the weights cast once for it."""
    keys = tmp_path / "keys.txt"
    keys.write_text("RIGHT *3\n")
    cfg = PlayConfig(device="cpu", precision="bf16", threads=1, headless=True, keys=keys, output=tmp_path / "o.png", seed=0)
    res = play(minatar["wm"], cfg)
    assert res["frames"] == 3 and "bf16 autocast" in res["runtime"]


def test_headless_cli_json_and_errors(micro_wm, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("RIGHT *2\n")
    out = tmp_path / "out.gif"
    r = runner.invoke(app, ["play", str(micro_wm), "--headless", "--keys", str(keys), "-o", str(out), "--seed", "1",
                            "--device", "cpu", "--steps", "1", "--json"])
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["frames"] == 2 and res["mode"] == "headless" and res["start"]["kind"] == "game"
    assert len(read_video(out)) == 2
    r = runner.invoke(app, ["play", str(micro_wm), "--headless", "--keys", str(keys), "-o", str(tmp_path / "o.mp4"),
                            "--steps", "1"])
    assert r.exit_code == 0 and r.stdout.startswith("played 2 frames of Breakout into "), r.stdout

    line = one_error(runner.invoke(app, ["play", str(tmp_path / "nope.pt"), "--headless", "--keys", str(keys)]))
    assert "nope.pt not found" in line
    keys.write_text("RIGHT\nJUMP\n")
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--headless", "--keys", str(keys)]))
    assert f"keys file {keys} line 2: unknown key 'JUMP'" in line and "UP DOWN LEFT RIGHT FIRE" in line
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--headless"]))
    assert "--keys FILE" in line


def test_wrong_inputs_each_give_one_line(micro_wm, breakout_store, minatar, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("RIGHT\n")
    base = ["--headless", "--keys", str(keys), "-o", str(tmp_path / "o.mp4")]
    line = one_error(runner.invoke(app, ["play", str(minatar["agent"]), *base]))
    assert "agent" in line and "--agent" in line  # an agent passed as the world model
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--env", "Pong", *base]))
    assert "Pong" in line and "Breakout" in line and "drop --env" in line
    line = one_error(runner.invoke(app, ["play", str(minatar["wm"]), "--store", str(breakout_store.path), *base]))
    assert "minatar:Breakout" in line and "pass a store of its game" in line
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--agent", str(minatar["agent"]), *base]))
    assert "minatar:Breakout" in line and "Breakout" in line
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--agent", str(micro_wm), *base]))
    assert "--agent plays the dream" in line
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--episode", "1", *base]))
    assert "--store" in line
    line = one_error(runner.invoke(app, ["play", str(micro_wm), "--keys", str(keys)]))
    assert "--headless" in line


# ---- the window (real pygame, SDL's dummy video driver) -------------------------------------------


@pytest.fixture
def dummy_video(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.setenv("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    pytest.importorskip("pygame")


def _shown(window) -> np.ndarray:
    """The frame area of the window's display surface, as (H, W, 3)."""
    import pygame

    screen = pygame.surfarray.array3d(window.screen).transpose(1, 0, 2)  # surfarray is (W, H, 3)
    x, y = window.frame_pos
    H, W = window.session.spec.frame_shape[:2]
    return screen[y : y + H * window.scale, x : x + W * window.scale], screen


def test_the_window_shows_the_dreamed_frame_upscaled_with_its_text(minatar, dummy_video):
    from wmcli.outputs.play_window import PlayWindow

    session = open_session(minatar["wm"], _fp32(agent=minatar["agent"]), seed=0)
    window = PlayWindow(session, scale=7, fps=0)
    window.handle_key("tab", True)  # you play
    window.handle_key("left", True)
    window.tick()
    shown, screen = _shown(window)
    assert window.last.action == session.meanings.index("LEFT") and window.last.by == "you"
    assert np.array_equal(shown, upscale(window.last.frame, 7))  # the dream, pixel for pixel, where it belongs
    assert screen[70 + 4 :].any()  # the text lines under the 70-pixel frame
    window.handle_key("left", False)
    window.handle_key("]", True)
    window.tick()
    assert window.last.action == session.meanings.index("NOOP") and session.denoising_steps == 4
    assert "4 denoising steps" in window.message
    window.handle_key("p", True)  # paused: no frame dreamed
    frames = session.frames
    window.tick()
    assert session.frames == frames and window.paused
    import pygame

    pygame.display.quit()


def test_the_window_runs_on_key_events_restarts_and_records(minatar, dummy_video, tmp_path):
    import pygame

    from wmcli.outputs.play_window import PlayWindow

    session = open_session(minatar["wm"], _fp32(), seed=0)
    record = tmp_path / "rec.mp4"
    window = PlayWindow(session, scale=4, fps=0, record=record, record_scale=2, max_frames=5)
    seeds = session.context.source["reset_seeds"]
    for key in (pygame.K_RIGHT, pygame.K_r):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
    result = window.run()
    assert result["frames"] == 5 and result["restarts_asked"] == 1 and session.restarts == 1
    assert session.context.source["reset_seeds"] != seeds
    assert result["actions"] == {"RIGHT": 5}  # held from the first frame on
    video = read_video(record)
    assert result["record"] == str(record) and video.shape == (5, 20, 20, 3)  # frames played, 10 x 2


def test_cli_window_until_max_frames(minatar, dummy_video, tmp_path):
    r = runner.invoke(app, ["play", str(minatar["wm"]), "--max-frames", "3", "--fps", "0", "--record",
                            str(tmp_path / "r.gif"), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["mode"] == "window" and res["frames"] == 3 and res["output"] == str(tmp_path / "r.gif")


def test_without_pygame_the_window_says_which_extra_to_install(minatar, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # as if pygame-ce were not installed
    line = one_error(runner.invoke(app, ["play", str(minatar["wm"])]))
    assert line == "wmcli: error: wmcli play needs pygame-ce: pip install 'wmcli[play]' (or use --headless)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is Linux's (X11, Wayland)")
def test_without_a_display_the_window_says_to_play_headless(minatar, monkeypatch):
    pytest.importorskip("pygame")
    for name in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    line = one_error(runner.invoke(app, ["play", str(minatar["wm"])]))
    assert "cannot open a window: no display" in line and "--headless --keys FILE" in line


# ---- an imported DIAMOND model ------------------------------------------------------------------


def test_an_imported_diamond_model_plays_with_its_agent(tmp_path):
    from wmcli.world.diamond import import_diamond

    fixture = Path(__file__).parent / "fixtures" / "diamond" / "diamond_tiny.pt"
    out = import_diamond(fixture, "Breakout", tmp_path / "d")
    keys = tmp_path / "keys.txt"
    keys.write_text("*2\ntab\nRIGHT\n")
    res = play(out["world_model"], _fp32(agent=Path(out["agent"]), headless=True, keys=keys, output=tmp_path / "d.png",
                                         seed=0, denoising_steps=1))
    assert res["frames"] == 3 and res["by"] == {"agent": 2, "you": 1} and res["game"] == "Breakout"


def test_a_distilled_student_plays_with_its_own_one_step_sampler(micro_wm, tmp_path):
    from wmcli.base.runtime import make_runtime
    from wmcli.training.distill import distill_world_model

    student = tmp_path / "wm1.pt"
    distill_world_model(micro_wm, student, make_runtime("cpu"), steps=1,
                        overrides=["distill.batch_size=2", "distill.val_batches=1", "distill.val_every=1000"])
    keys = tmp_path / "keys.txt"
    keys.write_text("RIGHT *2\n")
    res = play(student, _fp32(headless=True, keys=keys, output=tmp_path / "s.png", seed=0))
    assert res["sampler"]["num_steps"] == 1 and res["frames"] == 2  # from its recipe, without --steps


def test_a_session_is_usable_without_the_cli(micro_wm, breakout_store):
    from wmcli.world.world_model import load_world_model

    wm = load_world_model(micro_wm)
    session = PlaySession(wm, StoreStarts(breakout_store, wm.num_context, episode=0, start=0), seed=0)
    s = session.step_keys(["RIGHT"])
    assert s.frame.shape == (64, 64, 3) and s.frame.dtype == np.uint8 and s.action == wm.spec.action_meanings.index("RIGHT")
