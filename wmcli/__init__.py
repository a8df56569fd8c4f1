"""wmcli: diffusion world models on Atari, in the line of DIAMOND (Alonso et al., 2024)."""

__version__ = "0.1.0"
