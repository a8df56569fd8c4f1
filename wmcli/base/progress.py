"""Progress of long work, as one small record every command reports in the same way.

Library loops (collect, train-wm, train-agent, eval, imagine, fvd, run) take an optional
`on_progress` callback and call it with a `Progress`: how much of how much is done, and a few
named numbers to show beside it (losses, rates, returns). The CLI's console module renders every
one the same way; a Python user can log or ignore them. `Every` keeps reports to a few a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """`done` of `total` `unit` of `task`, with named numbers shown beside it in order."""

    task: str  # "collect Breakout", "train-wm", "train-agent", "eval Breakout", "imagine", "fvd": one bar each
    done: int
    total: int | None
    unit: str  # "steps", "episodes", "frames", "videos"
    stats: dict[str, float | int | None] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # the full metrics line, where there is one
    seconds: float | None = None  # since the task began (its set-up included), for elapsed and eta


def starts_over(before: Progress | None, p: Progress) -> bool:
    """Whether report `p` begins a new run of the task `before` was last reported for (the next
    epoch of `wmcli run`): its total changed, its count or its clock went back."""
    if before is None:
        return False
    clock_back = p.seconds is not None and before.seconds is not None and p.seconds < before.seconds
    return p.total != before.total or p.done < before.done or clock_back


class Every:
    """True at most once per `seconds` (the first call included): throttles progress reports."""

    def __init__(self, seconds: float = 0.5):
        self.seconds, self.last = seconds, -float("inf")

    def __call__(self) -> bool:
        now = time.perf_counter()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


def count(n: int, noun: str) -> str:
    """"1 episode", "3 episodes", "1,200 steps": a number with its noun in the right number."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
