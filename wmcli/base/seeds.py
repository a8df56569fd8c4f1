"""Seeds: every command that takes --seed draws a missing one here and records it in its result,
so any run can be repeated (torch-free, so random play needs no torch)."""

from __future__ import annotations

import secrets

import numpy as np


def draw_seed(seed: int | None) -> int:
    """`seed`, or a fresh one in [0, 2**31) when None."""
    return secrets.randbelow(2**31) if seed is None else seed


def step_rng(seed: int, rank: int, step: int) -> tuple[np.random.Generator, int]:
    """The numpy generator of step `step` of rank `rank` (its batches), and the seed of the step's
    torch generator (its noise), drawn from it first. Counter-based: any process can rebuild any
    step's draws (a resumed run, a prefetching data worker)."""
    rng = np.random.default_rng([seed, rank, step])
    return rng, int(rng.integers(2**62))
