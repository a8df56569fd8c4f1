"""`EnvSpec`: a resolved game, as recorded in stores and checkpoints, and the one compatibility check.

A spec says what the rest of the tool needs to know about a game's env: its canonical name,
its action set and the frames it gives, and the protocol (`EnvConfig`) that made them. Stores,
world models and agents each carry one; `EnvSpec.from_dict` rebuilds it from a store or
checkpoint without starting an emulator, and `check_fits` is the single place that refuses to
pair things made for different games or frame shapes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from wmcli.base.config import EnvConfig
from wmcli.base.errors import WmcliError


@dataclass(frozen=True)
class EnvSpec:
    """A resolved game: what the rest of the tool needs to know about its env."""

    kind: str  # "ale" or "minatar"
    name: str  # canonical name: "Breakout", "minatar:Breakout"
    rom: str  # ALE ROM id ("ms_pacman") or MinAtar module name
    num_actions: int
    action_meanings: tuple[str, ...]
    frame_shape: tuple[int, int, int]  # (H, W, 3)
    config: EnvConfig = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "rom": self.rom,
            "num_actions": self.num_actions,
            "action_meanings": list(self.action_meanings),
            "frame_shape": list(self.frame_shape),
            "protocol": self.config.protocol(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> EnvSpec:
        """The spec recorded in a store or checkpoint (`to_dict()`), made again as it was recorded."""
        known = {f.name for f in dataclasses.fields(EnvConfig)} - {"game"}
        config = EnvConfig(game=d["name"], **{k: v for k, v in d.get("protocol", {}).items() if k in known})
        return cls(d.get("kind", "ale"), d["name"], d.get("rom", ""), int(d["num_actions"]),
                   tuple(d.get("action_meanings", ())), tuple(d["frame_shape"]), config)

    def describe(self) -> str:
        """"Breakout (64x64x3 frames, 4 actions)"."""
        return f"{self.name} ({'x'.join(map(str, self.frame_shape))} frames, {self.num_actions} actions)"

    def check_fits(self, other: EnvSpec, this: str, that: str, fix: str, same_game: bool = False) -> None:
        """Refuse to pair `this` (made for self) with `that` (made for other) when their action
        counts or frame shapes differ (or their games, with same_game): one line naming both and `fix`."""
        differs = (self.num_actions != other.num_actions or tuple(self.frame_shape) != tuple(other.frame_shape)
                   or (same_game and self.name != other.name))
        if differs:
            raise WmcliError(f"{this} is for {self.describe()}, but {that} is for {other.describe()}; {fix}")
