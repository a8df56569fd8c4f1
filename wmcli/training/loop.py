"""What every training loop needs, written once: the metrics log, the DDP wrap, the divergence stop.

`MetricsLog` appends one JSON line per report (rank 0 only) and, when the optional
`tensorboard` package is installed (`pip install 'wmcli[tensorboard]'`), writes the same numbers
under the same names (`losses/...`, `charts/...`, `val/...`) as TensorBoard events beside it:
`wm.metrics.jsonl` -> `wm.tensorboard/`, so `tensorboard --logdir runs/` shows every run.
`ddp` wraps a loss module for torchrun; `gradient_step` is one scaled, clipped optimizer step;
`check_finite` ends a diverged run with one line that says which checkpoint survives and what to
change; `stop_here` says when a time budget or a first Ctrl-C ends a run after its current step.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import torch
from torch import nn

from wmcli.base.atomic import make_dir, open_for_append, unwritable
from wmcli.base.errors import WmcliError
from wmcli.base.runtime import Runtime, agree


def tensorboard_dir(metrics_path: Path) -> Path:
    """Where the TensorBoard events of a metrics file go: X.metrics.jsonl -> X.tensorboard/."""
    name = metrics_path.name.removesuffix(".jsonl").removesuffix(".metrics")
    return metrics_path.with_name(f"{name}.tensorboard")


def scalars(line: dict) -> dict[str, float]:
    """The numbers of a metrics line under TensorBoard names: nested sections become prefixes
    (`eval: {return_mean}` -> `eval/return_mean`) unless their keys are namespaced already."""
    out = {}
    for k, v in line.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, (int, float)) and not isinstance(vv, bool) and vv is not None:
                    out[kk if "/" in kk else f"{k}/{kk}"] = float(vv)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class MetricsLog:
    """JSON lines at `path` and, when tensorboard is installed, events in tensorboard_dir(path).

    enabled False (DDP ranks other than 0) writes nothing; tensorboard None means: when installed,
    unless the environment sets WMCLI_TENSORBOARD=0."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True, tensorboard: bool | None = None):
        self.path = Path(path)
        self.file = open_for_append(self.path) if enabled else None
        self.tb = None
        if enabled and (tensorboard if tensorboard is not None else os.environ.get("WMCLI_TENSORBOARD", "1") != "0"):
            self.tb = _summary_writer(tensorboard_dir(self.path), required=bool(tensorboard))

    def write(self, line: dict, step: int) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()
        except OSError as e:
            raise unwritable(self.path, e) from None
        if self.tb is not None:
            for name, value in scalars(line).items():
                if name not in ("step", "epoch"):
                    self.tb.add_scalar(name, value, step)
            self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _summary_writer(folder: Path, required: bool):
    """torch's TensorBoard writer, or None when the tensorboard package is missing (an error when
    it was asked for)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package
    except ImportError:
        if required:
            raise WmcliError("TensorBoard logging needs the tensorboard package: pip install 'wmcli[tensorboard]'") from None
        return None
    make_dir(folder)
    return SummaryWriter(log_dir=str(folder))


def ddp(module: nn.Module, rt: Runtime) -> nn.Module:
    """`module` wrapped for DistributedDataParallel under torchrun, one process included (itself otherwise)."""
    if not torch.distributed.is_initialized():
        return module
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def gradient_step(loss: torch.Tensor, opt: torch.optim.Optimizer, module: nn.Module, clip: float,
                  scaler: torch.amp.GradScaler) -> None:
    """One optimizer step on `loss`: backward through the (fp16) grad scaler, unscale, clip the
    gradient norm of `module` to `clip`, step. The caller updates the scaler once per training
    step (train_wm steps two optimizers with one scaler)."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    nn.utils.clip_grad_norm_(module.parameters(), clip)
    scaler.step(opt)


def check_finite(losses: dict[str, float], step: int, out: Path, what: str, fix: str) -> None:
    """Stop a diverged training: one line with the step, the losses, what survives and `fix`."""
    if all(math.isfinite(v) for v in losses.values()):
        return
    kept = f"the last good checkpoint {out} is kept" if Path(out).exists() else "no checkpoint was written"
    values = ", ".join(f"{k} loss {v}" for k, v in losses.items())
    raise WmcliError(f"{what} diverged at step {step} ({values}); {kept}; {fix}")


def stop_here(stop: threading.Event, started: float, max_seconds: float | None, rt: Runtime) -> tuple[bool, bool]:
    """(interrupted, stop): whether a first Ctrl-C (`stop`, from wmcli.base.signals) or the time
    budget ends the run after this step, which is then its last: logged, validated and saved.
    Every DDP rank agrees, so all leave the loop at the same step."""
    interrupted = agree(stop.is_set(), rt)
    return interrupted, interrupted or (max_seconds is not None and agree(time.perf_counter() - started > max_seconds, rt))
