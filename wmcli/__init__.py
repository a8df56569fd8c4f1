"""wmcli: diffusion world models on Atari, in the line of DIAMOND (Alonso et al., 2024)."""

import os

__version__ = "0.1.0"

# torch's CPU threads are OpenMP threads, which by default spin for a while after each parallel
# region. On a machine shared with another process (a collection beside a training, two
# trainings) the spinning threads take the cores the other process needs: measured on 2 cores,
# a 3-step train-agent beside other work took 255 s with spinning threads and 29 s with passive
# waiting (docs/performance.md, "Sharing the machine"). OpenMP reads the setting once, when torch
# loads it, so it is set here, before any wmcli module imports torch. A user's own
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins; it has no effect when torch was imported before wmcli.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
