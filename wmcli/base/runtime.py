"""Where and how the torch work runs: device, precision, compile, the DDP process group, and
the CPU allocator setting that keeps large activations from being page-faulted in every step.

Shared by every command that trains or imagines (`train-wm`, `train-agent`, `imagine`, `eval`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from wmcli.base.cores import share_cores
from wmcli.base.errors import WmcliError
from wmcli.base.progress import count
from wmcli.base.seeds import step_rng

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_heap_tuned = False


def keep_large_allocations_on_heap() -> bool:
    """Make glibc serve every allocation from its heap and never hand freed memory back to the OS.

    glibc's malloc gives each block of more than 32 MiB (at most) its own fresh mmap and unmaps
    it on free. Activations of DIAMOND's U-Net at batch 32 are 32-128 MiB each, so every training
    step maps, page-faults (zero-fills) and unmaps gigabytes: measured on 2 CPU cores, 30 s of
    system time per 4 steps and a 1.43x slower step (docs/performance.md). With mmap off and the
    trim threshold out of reach, freed blocks are reused; the cost is a higher resident size
    (+19% peak RSS there), kept until the process ends. Only for CPU work, only on glibc;
    WMCLI_MALLOC=default turns it off. Returns whether the setting is in force.
    """
    global _heap_tuned
    if _heap_tuned:
        return True
    if os.environ.get("WMCLI_MALLOC", "heap") == "default":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
        return False
    _heap_tuned = ok
    return ok


def cpu_bf16_units() -> str | None:
    """The CPU's bf16 matrix instructions, as torch sees them: "AMX" (Intel Xeon from Sapphire
    Rapids on), "AVX512-BF16" (Intel Cooper Lake, AMD Zen 4 on), or None: there bf16 is emulated
    and 10-100x slower than fp32."""
    for name, units in (("_is_amx_tile_supported", "AMX"), ("_is_avx512_bf16_supported", "AVX512-BF16")):
        supported = getattr(torch.cpu, name, None)
        try:
            if supported is not None and supported():
                return units
        except RuntimeError:  # a build without the check
            continue
    return None


def auto_precision(device_type: str) -> tuple[str, str]:
    """The fastest precision that keeps DIAMOND's quality (docs/performance.md, docs/results.md),
    and why: on CUDA bf16 autocast (fp16 where the GPU has no bf16); on a CPU with bf16 matrix
    units (cpu_bf16_units) bf16 autocast; on other CPUs fp32."""
    if device_type == "cuda":
        return ("bf16", "a CUDA GPU with bf16") if torch.cuda.is_bf16_supported() else ("fp16", "a CUDA GPU without bf16")
    units = cpu_bf16_units()
    return ("bf16", f"the CPU has {units} units") if units else ("fp32", "the CPU has no bf16 matrix units")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # fp32, bf16, fp16
    compile: bool
    rank: int = 0
    world_size: int = 1
    threads: int = 1  # torch's intra-op threads on the CPU
    why: str = ""  # why this precision: "--precision fp32", "auto: the CPU has AMX units"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """"cpu, bf16 autocast (auto: the CPU has AMX units), 2 threads" — printed when a command starts."""
        what = "fp32" if self.precision == "fp32" else f"{self.precision} autocast"
        threads = f", {count(self.threads, 'thread')}" if self.device.type == "cpu" else ""
        ranks = f", {self.world_size} processes" if self.world_size > 1 else ""
        return f"{self.device}, {what} ({self.why}){threads}{ranks}" + (", torch.compile" if self.compile else "")

    def record(self) -> dict:
        """What checkpoints and metrics keep of the runtime."""
        return {"device": str(self.device), "precision": self.precision, "precision_why": self.why,
                "threads": self.threads, "world_size": self.world_size, "compile": self.compile}

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def cast_for_inference(self, module: nn.Module) -> nn.Module:
        """For inference under `autocast()` only: store the weights and biases of the layers autocast
        runs in bf16 or fp16 (convolutions, linear layers) in that precision, once. The results are
        the same bit for bit, since autocast rounds them so on every call, without that cast on every
        call: 11% of a frame of DIAMOND's world model at batch 1 on 2 CPU cores (docs/performance.md).
        The module must then run only under autocast(). In fp32 nothing changes."""
        if self.precision != "fp32":
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            for m in module.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                    m.to(dtype)
        return module


def set_threads(threads: int | None = None) -> int:
    """torch's CPU threads: `threads`, else WMCLI_THREADS, else this process's share of the cores
    among the wmcli processes running (wmcli.base.cores: all of them when alone; OMP_NUM_THREADS
    also fixes the count). Returns the number in force."""
    if threads is None and os.environ.get("WMCLI_THREADS"):
        try:
            threads = int(os.environ["WMCLI_THREADS"])
        except ValueError:
            raise WmcliError(f"WMCLI_THREADS must be a whole number, got {os.environ['WMCLI_THREADS']!r}") from None
    if threads is not None:
        if threads < 1:
            raise WmcliError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    else:
        share_cores()  # share the cores with the other wmcli processes (wmcli.base.cores)
    return torch.get_num_threads()


def make_runtime(device: str = "auto", precision: str = "auto", compile: bool | None = None,
                 threads: int | None = None) -> Runtime:
    """Resolve the device, precision and CPU threads (set_threads), and join the process group
    when started by torchrun. precision "auto": WMCLI_PRECISION when set (not "auto"), else
    `auto_precision` (bf16 autocast on CUDA and on CPUs with bf16 matrix units, else fp32)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise WmcliError("--device cuda but no CUDA device is visible; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise WmcliError(f"--device must be auto, cpu or cuda, got {device!r}")
    dev = torch.device(device)
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        keep_large_allocations_on_heap()
    if precision == "auto" and os.environ.get("WMCLI_PRECISION", "auto") != "auto":
        precision = os.environ["WMCLI_PRECISION"]
        why = f"WMCLI_PRECISION={precision}"
    elif precision == "auto":
        precision, why = auto_precision(device)
        why = f"auto: {why}"
    else:
        why = f"--precision {precision}"
    if precision not in ("fp32", "bf16", "fp16"):
        raise WmcliError(f"--precision (or WMCLI_PRECISION) must be auto, fp32, bf16 or fp16, got {precision!r}")
    # Under torchrun (which sets TORCHELASTIC_RUN_ID) join the process group even with one process:
    # `torchrun --nproc-per-node 1` on one GPU then runs the same DDP/NCCL code as several.
    if (world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ) and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
        # Left to the interpreter's exit, the group's background threads can abort the process
        # ("terminate called without an active exception") after the work is done.
        atexit.register(_leave_process_group)
    return Runtime(dev, precision, device == "cuda" if compile is None else compile, rank, world_size,
                   set_threads(threads), why)


def _leave_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def to_device(x: np.ndarray, rt: Runtime) -> Tensor:
    """A numpy batch on the runtime's device; from pinned memory without blocking on CUDA."""
    t = torch.from_numpy(x)
    if rt.device.type == "cuda":
        t = t.pin_memory()
    return t.to(rt.device, non_blocking=True)


# ---- shared by the training loops -------------------------------------------------------------


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on Linear, Conv and LSTM (cell) weights; none on biases, norms and embeddings (DIAMOND's split)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.LSTM, nn.LSTMCell)) and "weight" in name:
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg, rt: Runtime) -> torch.optim.Optimizer:
    """AdamW with cfg.lr, cfg.adam_eps, cfg.weight_decay; fused on CUDA."""
    fused = {"fused": True} if rt.device.type == "cuda" else {}
    return torch.optim.AdamW(_decay_groups(model, cfg.weight_decay), lr=cfg.lr, eps=cfg.adam_eps, **fused)


def lr_at(step: int, cfg) -> float:
    """Linear warm-up, then constant (DIAMOND)."""
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


def step_generators(seed: int, rank: int, step: int, device: torch.device) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy (batches) and torch (noise) generators of one step of one rank."""
    rng, torch_seed = step_rng(seed, rank, step)
    g = torch.Generator(device=device)
    g.manual_seed(torch_seed)
    return rng, g


def agree(flag: bool, rt: Runtime) -> bool:
    """Under DDP, stop when any rank says so (all ranks must leave the loop at the same step)."""
    if rt.world_size == 1:
        return flag
    t = torch.tensor([float(flag)], device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside torch.compile and DDP wrappers (what checkpoints save)."""
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return getattr(m, "module", m)  # DDP
