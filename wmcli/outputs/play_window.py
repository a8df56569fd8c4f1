"""The play window: a pygame-ce front end of a play session (the optional `play` extra).

It draws the newest frame of a `PlaySession` (wmcli.outputs.play) upscaled by nearest neighbour,
and under it a few lines of text: frame counter, frames per second, denoising steps, who plays,
the dreamed score, the game's keys and the window's own. Arrows and space are buttons held
(play_keys turns them into the game's action); the other keys act once: r restarts from a
fresh real context, p pauses, [ ] (or - =) change the denoising steps, tab hands control
between the agent and you, v pauses the recording, q or esc quits. The window steps as fast
as the sampler dreams, at most `fps` frames a second.

pygame is imported only here and only when a window is wanted (`require_pygame`), so headless
play and the rest of wmcli run without it; PYGAME_HIDE_SUPPORT_PROMPT keeps its greeting off
stdout. Tests run the real window on SDL's dummy video driver (SDL_VIDEODRIVER=dummy).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np

from wmcli.base.errors import WmcliError
from wmcli.outputs.play_keys import KEYS, action_for_keys, key_help
from wmcli.outputs.video import write_frames

WINDOW_SIZE = 512  # frames are shown at about this many pixels a side by default
MIN_WIDTH = 640  # room for the text lines under small frames
FONT_SIZE = 20
MESSAGE_SECONDS = 3.0
MISSING = "wmcli play needs pygame-ce: pip install 'wmcli[play]' (or use --headless)"
NO_DISPLAY = "play without a window: --headless --keys FILE (docs/play.md)"


def require_pygame():
    """The pygame module, or one line saying what to install."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError:
        raise WmcliError(MISSING) from None
    return pygame


def check_display() -> None:
    """Refuse at once where no window can show (Linux without X11 or Wayland), before SDL probes
    for one and falls back to drawing off screen, where nobody could see or quit it.
    SDL_VIDEODRIVER set by hand is taken as it is (the tests' "dummy")."""
    if os.environ.get("SDL_VIDEODRIVER") or not sys.platform.startswith("linux"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise WmcliError(f"cannot open a window: no display (neither DISPLAY nor WAYLAND_DISPLAY is set); {NO_DISPLAY}")


def default_window_scale(frame_size: int) -> int:
    """The nearest-neighbour factor that shows a frame at about WINDOW_SIZE pixels a side."""
    return max(1, round(WINDOW_SIZE / frame_size))


class PlayWindow:
    """One window on a session. `handle_key(name, down)` takes pygame's key names ("right",
    "space", "r", ...); `tick()` dreams one frame (unless paused) and draws; `run()` loops."""

    def __init__(self, session, scale: int, fps: float = 15.0, record: Path | None = None,
                 record_scale: int | None = None, record_fps: float = 15.0, max_frames: int | None = None):
        pg = self.pg = require_pygame()
        self.session, self.scale, self.fps, self.max_frames = session, scale, fps, max_frames
        self.record, self.record_scale, self.record_fps = record, record_scale, record_fps
        H, W = session.spec.frame_shape[:2]
        check_display()
        try:
            pg.display.init()
            if pg.display.get_driver() in ("offscreen", "dummy") and not os.environ.get("SDL_VIDEODRIVER"):
                raise WmcliError(f"cannot open a window: no display (SDL found only its {pg.display.get_driver()} "
                                 f"driver); {NO_DISPLAY}")
            pg.font.init()
            self.font = pg.font.Font(None, FONT_SIZE)
            self.line = self.font.get_linesize()
            width = max(W * scale, MIN_WIDTH)
            self.frame_pos = ((width - W * scale) // 2, 0)  # (x, y) of the frame's top-left corner
            self.screen = pg.display.set_mode((width, H * scale + 4 * self.line + 8))
        except pg.error as e:
            raise WmcliError(f"cannot open a window ({e}); {NO_DISPLAY}") from None
        pg.display.set_caption(f"wmcli play: {session.spec.name}")
        self.keys_line = key_help(session.meanings)
        controls = ["r restart", "p pause", "[ ] denoising steps"]
        controls += ["tab agent/you"] if session.policy is not None else []
        controls += ["v recording"] if record is not None else []
        self.controls_line = "   ".join([*controls, "q quit"])
        self.held: list[str] = []  # buttons held, oldest press first
        self.paused, self.running, self.recording = False, True, record is not None
        self.recorded: list[np.ndarray] = []
        self.times: deque[float] = deque(maxlen=30)  # when the last frames were dreamed
        self.message, self.message_until = "", 0.0
        self.last = None  # the last Step
        self.actions, self.by = Counter(), Counter()
        self.restarts_asked = 0
        self.active_seconds = 0.0  # time spent not paused

    # ---- input --------------------------------------------------------------------------------

    def handle(self, event) -> None:
        pg = self.pg
        if event.type == pg.QUIT:
            self.running = False
        elif event.type in (pg.KEYDOWN, pg.KEYUP):
            self.handle_key(pg.key.name(event.key), event.type == pg.KEYDOWN)
        elif event.type == pg.WINDOWFOCUSLOST:
            self.held.clear()  # the key-up events go elsewhere

    def handle_key(self, name: str, down: bool) -> None:
        """A key went down or up, by pygame's name for it."""
        name = name.lower()
        if name in KEYS:
            button = KEYS[name]
            if button in self.held:
                self.held.remove(button)
            if down:
                self.held.append(button)
            return
        if not down:
            return
        s = self.session
        if name in ("q", "escape"):
            self.running = False
        elif name == "r":
            s.reset()
            self.restarts_asked += 1
            self.say("restarted from a fresh real context")
        elif name == "p":
            self.paused = not self.paused
        elif name in ("[", "-", "]", "="):
            steps = s.set_denoising_steps(s.denoising_steps + (1 if name in ("]", "=") else -1))
            self.say(f"{steps} denoising step{'s' * (steps != 1)} per frame")
        elif name == "tab" and s.policy is not None:
            self.say("the agent plays" if s.hand_over() == "agent" else "you play")
        elif name == "v" and self.record is not None:
            self.recording = not self.recording
            self.say(f"recording to {self.record}" if self.recording else "recording paused")

    def say(self, text: str) -> None:
        self.message, self.message_until = text, time.perf_counter() + MESSAGE_SECONDS

    # ---- the loop -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Dream one frame with the keys held now (unless paused), then draw."""
        if not self.paused:
            restarts = self.session.restarts
            step = self.session.step(action_for_keys(self.held, self.session.meanings))
            self.times.append(time.perf_counter())
            self.last = step
            self.actions[self.session.meanings[step.action]] += 1
            self.by[step.by] += 1
            if self.recording:
                self.recorded.append(step.frame)
            if step.end and self.session.restarts > restarts:
                self.say("the dream ended (end sampled): restarted from a fresh real context")
        self.draw(self.last.frame if self.last is not None and not self.paused else self.session.frame)

    def frames_per_s(self) -> float | None:
        if len(self.times) < 2:
            return None
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)

    def draw(self, frame: np.ndarray) -> None:
        """The frame (H, W, 3) uint8, upscaled, and the text lines under it."""
        pg, s = self.pg, self.session
        self.screen.fill((0, 0, 0))
        H, W = frame.shape[:2]
        image = pg.image.frombuffer(np.ascontiguousarray(frame).tobytes(), (W, H), "RGB")
        self.screen.blit(pg.transform.scale(image, (W * self.scale, H * self.scale)), self.frame_pos)
        fps = self.frames_per_s()
        steps = s.denoising_steps
        status = [f"frame {s.frames}", f"{fps:.1f} frames/s" if fps else "-- frames/s",
                  f"{steps} denoising step{'s' * (steps != 1)} ({s.sampler.name})",
                  ("the agent plays" if s.controller == "agent" else "you play")
                  + (f": {s.meanings[self.last.action]}" if self.last is not None else ""),
                  f"reward {self.last.rew:+g}" if self.last is not None else "reward --", f"score {s.score:+g}"]
        if self.paused:
            status.append("PAUSED")
        if self.recording:
            status.append("REC")
        message = self.message if time.perf_counter() < self.message_until else ""
        y = H * self.scale + 4
        for text, colour in (("   ".join(status), (255, 255, 255)), (message, (255, 210, 90)),
                             (self.keys_line, (180, 180, 180)), (self.controls_line, (180, 180, 180))):
            if text:
                self.screen.blit(self.font.render(text, True, colour), (6, y))
            y += self.line
        pg.display.flip()

    def run(self) -> dict:
        """Play until quit (or max_frames); write the recording. Returns what was played."""
        pg = self.pg
        clock = pg.time.Clock()
        self.say("you play" if self.session.controller == "you" else "the agent plays (tab: you take over)")
        self.draw(self.session.frame)
        try:
            while self.running:
                t0 = time.perf_counter()
                for event in pg.event.get():
                    self.handle(event)
                if not self.running:
                    break
                paused = self.paused
                self.tick()
                if not paused:
                    self.active_seconds += time.perf_counter() - t0
                if self.max_frames is not None and self.session.frames >= self.max_frames:
                    break
                clock.tick(30 if self.paused else self.fps)  # 0: no waiting
        except KeyboardInterrupt:  # Ctrl-C in the terminal quits like q: the recording is kept
            pass
        finally:
            pg.display.quit()
        written = None
        if self.record is not None and self.recorded:
            write_frames(self.record, np.stack(self.recorded), fps=self.record_fps, scale=self.record_scale)
            written = str(self.record)
        return {"frames": self.session.frames, "seconds": self.active_seconds, "actions": dict(self.actions),
                "by": dict(self.by), "restarts_asked": self.restarts_asked, "record": written,
                "recorded_frames": len(self.recorded)}


def run_window(session, scale: int, fps: float = 15.0, record: Path | None = None, record_scale: int | None = None,
               max_frames: int | None = None, record_fps: float = 15.0) -> dict:
    """Open the window on `session` and play until it is closed; see PlayWindow."""
    return PlayWindow(session, scale, fps, record, record_scale, record_fps, max_frames).run()
