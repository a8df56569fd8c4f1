"""Seeds: every command that takes --seed draws a missing one here and records it in its result,
so any run can be repeated (torch-free, so random play needs no torch)."""

from __future__ import annotations

import secrets


def draw_seed(seed: int | None) -> int:
    """`seed`, or a fresh one in [0, 2**31) when None."""
    return secrets.randbelow(2**31) if seed is None else seed
