"""Keys to actions for `wmcli play`, and the keys files that script a headless game.

ALE names every action by the buttons it presses: UP, DOWN, LEFT, RIGHT and FIRE, joined in
that order (`UPRIGHTFIRE`, `DOWNLEFT`, `NOOP` for none); MinAtar's six actions use the same
names. So a set of held buttons names an action: the arrows and space held together (up +
right + space) ask for `UPRIGHTFIRE`. A game whose minimal action set lacks that action gets the
nearest one it has: the one that keeps the most of the held buttons, the most recently pressed
one deciding a tie; NOOP when none fits. Everything here is pure (no pygame, no torch): the
window (play_window.py) and the headless player (play.py) both use it, and tests call it as is.

A keys file plays one dreamed frame per line (the format is documented in `parse_keys` and
docs/play.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wmcli.base.errors import WmcliError

BUTTONS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")
"""What ALE action names are made of, in the order the names join them."""

OPPOSITE = {"UP": "DOWN", "DOWN": "UP", "LEFT": "RIGHT", "RIGHT": "LEFT"}

KEYS = {"up": "UP", "down": "DOWN", "left": "LEFT", "right": "RIGHT", "space": "FIRE"}
"""Keyboard keys (by pygame's key names) -> the button each presses."""

CONTROLS = {
    "r": "restart from a fresh real context",
    "p": "pause",
    "[ or -": "one denoising step less",
    "] or =": "one denoising step more",
    "tab": "hand control between the agent and you (with --agent)",
    "v": "pause or resume recording (with --record)",
    "q or esc": "quit",
}
"""The window's other keys, for its help line and the docs."""

_PART = re.compile("|".join(BUTTONS))


def buttons_of(name: str) -> frozenset[str] | None:
    """The buttons an ALE action name presses: "UPRIGHTFIRE" -> {UP, RIGHT, FIRE}, "NOOP" -> {};
    None for a name that is not made of buttons."""
    name = name.upper()
    if name == "NOOP":
        return frozenset()
    parts = _PART.findall(name)
    if not parts or "".join(parts) != name or len(set(parts)) != len(parts):
        return None
    return frozenset(parts)


def action_name(buttons: frozenset[str] | set[str]) -> str:
    """{UP, RIGHT, FIRE} -> "UPRIGHTFIRE" (ALE's order), {} -> "NOOP"."""
    return "".join(b for b in BUTTONS if b in buttons) or "NOOP"


def action_for_keys(held: Sequence[str], meanings: Sequence[str]) -> int:
    """The index of the game's action for the buttons `held` (oldest press first).

    Of two opposite arrows, the one pressed last counts. The action that presses exactly the
    held buttons if the game has it; else the one keeping most of them (no others), the most
    recently pressed button deciding a tie; else NOOP (or action 0 if the game has no NOOP)."""
    order = [b for b in held if b in BUTTONS]
    wanted: set[str] = set()
    for b in order:  # later presses override their opposite
        wanted.discard(OPPOSITE.get(b, ""))
        wanted.add(b)
    last_pressed = {b: i for i, b in enumerate(order)}  # button -> when it was pressed (larger: later)
    best, best_key = None, None
    for index, name in enumerate(meanings):
        parts = buttons_of(name)
        if parts is None or not parts <= wanted:
            continue
        key = (len(parts), max((last_pressed[b] for b in parts), default=-1))
        if best_key is None or key > best_key:
            best, best_key = index, key
    if best is not None:
        return best
    return list(meanings).index("NOOP") if "NOOP" in meanings else 0


def keys_for_action(name: str) -> str:
    """How to play an action name on the keyboard: "UPRIGHTFIRE" -> "up+right+space"."""
    parts = buttons_of(name)
    if not parts:
        return "(no key)"
    by_button = {b: k for k, b in KEYS.items()}
    return "+".join(by_button[b] for b in BUTTONS if b in parts)


def key_table(meanings: Sequence[str]) -> list[tuple[str, str]]:
    """(action, keys) for each of the game's actions, in the game's order."""
    return [(name, keys_for_action(name)) for name in meanings]


def key_help(meanings: Sequence[str]) -> str:
    """One line saying which keys the game uses: "arrows LEFT RIGHT, space FIRE (+ 2 combined)"."""
    parts = [buttons_of(n) or frozenset() for n in meanings]
    used = set().union(*parts) if parts else set()
    arrows = [b for b in BUTTONS[:4] if b in used]
    words = []
    if arrows:
        words.append("arrows " + " ".join(arrows))
    if "FIRE" in used:
        words.append("space FIRE")
    combined = sum(len(p) > 1 for p in parts)
    text = ", ".join(words) or "no keys (NOOP only)"
    return text + (f" (held together: {combined} combined actions)" if combined else "")


# ---- keys files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCommand:
    """One line of a keys file: `kind` "frame" (dream `repeat` frames with `buttons` held),
    "restart", "steps" (set the denoising steps to `value`) or "hand" (hand control over)."""

    kind: str
    line: int
    buttons: tuple[str, ...] = ()
    repeat: int = 1
    value: int = 0


FILE_HELP = ("key names UP DOWN LEFT RIGHT FIRE (or up, down, left, right, space), action names such as "
             "UPRIGHTFIRE or NOOP, '*N' to repeat a line N times, and the control lines r (or restart), "
             "steps N, tab")


def parse_keys(text: str, source: str = "keys file") -> list[KeyCommand]:
    """A keys file -> its commands. One dreamed frame per line:

        RIGHT FIRE      a frame with right and space held (-> RIGHTFIRE, or the nearest action)
                        (an empty line) a frame with no key held (NOOP)
        UPRIGHT *10     ten frames with up and right held; '*N' repeats any frame line
        r               restart from a fresh real context (also: restart); dreams no frame
        steps 3         denoising steps per frame from here on; dreams no frame
        tab             hand control between the agent and the keys (with --agent); no frame
        # a comment     a line of only a comment dreams nothing; after keys, it is ignored

    Names are case-insensitive. A name that is not a key, an action name or a control word is
    refused with its line number and what is known."""
    commands = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.lstrip().startswith("#"):
            continue
        words = raw.split("#", 1)[0].split()
        where = f"{source} line {number}"
        if words and words[0].lower() in ("r", "restart", "tab", "steps"):
            commands.append(_control(words, where, number))
            continue
        repeat = 1
        if words and words[-1].startswith("*"):
            repeat = _whole(words[-1][1:], where, "'*N' repeats a line N times")
            words = words[:-1]
        held: list[str] = []
        for w in words:
            if w.lower() in KEYS:
                held.append(KEYS[w.lower()])
                continue
            parts = buttons_of(w)
            if parts is None:
                raise WmcliError(f"{where}: unknown key {w!r}; a keys file knows {FILE_HELP}")
            held += [b for b in BUTTONS if b in parts]
        commands.append(KeyCommand("frame", number, tuple(held), repeat))
    return commands


def _control(words: list[str], where: str, number: int) -> KeyCommand:
    word = words[0].lower()
    if word == "steps":
        if len(words) != 2:
            raise WmcliError(f"{where}: 'steps' takes one number (steps 3), got {' '.join(words)!r}")
        return KeyCommand("steps", number, value=_whole(words[1], where, "steps N sets the denoising steps"))
    if len(words) != 1:
        raise WmcliError(f"{where}: {words[0]!r} stands alone on its line, got {' '.join(words)!r}")
    return KeyCommand("restart" if word in ("r", "restart") else "hand", number)


def _whole(text: str, where: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise WmcliError(f"{where}: {text!r} is not a whole number of at least 1 ({what})")
    return value


def read_keys(path: str | Path) -> list[KeyCommand]:
    """The commands of a keys file (parse_keys), with a clear line when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise WmcliError(f"keys file {path} not found; write one (docs/play.md: one line of keys per frame)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise WmcliError(f"cannot read the keys file {path} ({e})") from None
    return parse_keys(text, f"keys file {path}")


def frames_of(commands: Sequence[KeyCommand]) -> int:
    """How many frames the commands dream."""
    return sum(c.repeat for c in commands if c.kind == "frame")
