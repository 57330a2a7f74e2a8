"""I3D: the port's state dict and a StyleGAN-V-style TorchScript file load through `load_i3d`
and agree; bad files give one-line errors; preprocessing resizes and centre-crops to 224."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvg_fast.errors import CvgError
from cvg_fast.metrics.i3d import I3D, InceptionI3d, load_i3d

T = 8  # frames per test clip: one Mixed_5c time step, the short-clip path of the head


def _random_i3d(seed: int = 0) -> InceptionI3d:
    torch.manual_seed(seed)
    net = InceptionI3d().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        net._modules["logits"].conv3d.bias.normal_(0, 0.1)
    return net


class _StyleGanVLikeDetector(nn.Module):
    """StyleGAN-V's i3d_torchscript.pt signature: x (N, 3, T, H, W), rescale, resize,
    return_features (pre-softmax logits if True); `core` is a traced InceptionI3d."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear",
                              align_corners=False)
        logits = self.core(x.permute(0, 2, 1, 3, 4))
        if return_features:
            return logits
        return logits.softmax(dim=1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(net, path of its state dict, an input x (1, T, 3, 224, 224) in [-1, 1], net's logits)."""
    net = _random_i3d()
    path = tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt"
    torch.save(net.state_dict(), path)
    torch.manual_seed(1)
    x = torch.rand(1, T, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        return net, path, x, net.logits(x)


def _one_line_error(path, match: str) -> str:
    with pytest.raises(CvgError, match=match) as e:
        load_i3d(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_state_dict_loads_and_runs(weights):
    net, path, x, ref = weights
    sd = torch.load(path, weights_only=True)
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_1a_7x7.bn.running_mean",
                "Mixed_3b.b1a.conv3d.weight", "Mixed_3b.b3b.bn.weight", "logits.conv3d.weight",
                "logits.conv3d.bias"):
        assert key in sd, key
    i3d = load_i3d(path)
    assert isinstance(i3d, I3D) and not i3d.training
    assert not any(p.requires_grad for p in i3d.parameters())
    assert i3d.name == "i3d (PyTorch port state dict)" and i3d.clip_frames is None
    assert i3d.detector_hash == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert (i3d.feature_dim, i3d.num_classes) == (400, 400)
    with torch.no_grad():
        logits, feats = i3d.logits(x), i3d.features(x)
    assert logits.shape == (1, 400) and feats.shape == (1, 1024)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    assert logits.std() > 0
    torch.testing.assert_close(logits, ref)


def test_wrapped_and_prefixed_state_dict_loads(weights, tmp_path):
    net = weights[0]
    sd = {f"module.{k}": v for k, v in net.state_dict().items()
          if not k.endswith("num_batches_tracked")}  # old port files lack these buffers
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    i3d = load_i3d(path)
    w = i3d.net._modules["logits"].conv3d.weight
    assert torch.equal(w, net._modules["logits"].conv3d.weight)


def test_torchscript_detector_matches_state_dict(weights, tmp_path):
    net, _, x, ref = weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / TorchScript deprecation notices
        core = torch.jit.trace(net, x, check_trace=False)
        scripted = torch.jit.script(_StyleGanVLikeDetector(core))
    path = tmp_path / "i3d_torchscript.pt"
    scripted.save(str(path))
    ts = load_i3d(path)
    assert ts.name == "i3d (TorchScript)" and ts.scripted and not ts.training
    assert ts.detector_hash == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    with torch.no_grad():
        a = ts.logits(x)
    assert a.shape == (1, 400)
    torch.testing.assert_close(a, ref, rtol=1e-4, atol=1e-5)  # = the state-dict path's logits
    with pytest.raises(CvgError, match="only exposes the 400 logits"):
        ts.features(x)


def test_missing_file(tmp_path):
    msg = _one_line_error(tmp_path / "nope.pt", "not found")
    assert "i3d_pretrained_400.pt" in msg and "i3d_torchscript.pt" in msg
    assert "pytorch-i3d" in msg and "StyleGAN-V" in msg


def test_text_and_random_bytes(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("please download i3d_torchscript.pt yourself\n")
    _one_line_error(text, "neither a PyTorch state dict nor a TorchScript")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    _one_line_error(junk, "neither a PyTorch state dict nor a TorchScript")


def test_other_networks(tmp_path):
    other = tmp_path / "resnet.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).state_dict(), other)
    msg = _one_line_error(other, "not of the PyTorch I3D port")
    assert "missing" in msg and "unexpected" in msg
    k157 = tmp_path / "rgb_charades.pt"
    sd = InceptionI3d(num_classes=157).state_dict()
    torch.save(sd, k157)
    _one_line_error(k157, r"logits\.conv3d\.weight has shape \(157")
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)
    _one_line_error(pickled, "not a plain state dict")
    scripted = tmp_path / "other_script.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notice
        torch.jit.script(nn.Linear(2, 2)).save(str(scripted))
    _one_line_error(scripted, "not StyleGAN-V's I3D detector")


def test_preprocess_resize_and_centre_crop():
    # 128x171 (the C3D / UCF-101 size): shorter side 128 -> 224, longer 171 -> ceil(299.25) = 300,
    # so 38 columns go on each side; columns painted red outside the kept middle must vanish.
    v = torch.zeros(2, 3, 128, 171, 3, dtype=torch.uint8)
    v[..., 1] = 255
    v[:, :, :, :20, 0] = 255
    v[:, :, :, -20:, 0] = 255
    x = I3D.preprocess(v, chunk=4)
    assert x.shape == (2, 3, 3, 224, 224) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[:, :, 0], torch.full_like(x[:, :, 0], -1.0))  # no red left
    assert torch.equal(x[:, :, 1], torch.ones_like(x[:, :, 1]))
    # a square frame only scales; a tall frame crops rows
    sq = I3D.preprocess(torch.full((1, 1, 56, 56, 3), 255, dtype=torch.uint8))
    assert sq.shape == (1, 1, 3, 224, 224) and torch.equal(sq, torch.ones_like(sq))
    tall = torch.zeros(1, 1, 300, 224, 3, dtype=torch.uint8)
    tall[:, :, 138:162] = 255
    y = I3D.preprocess(tall)
    assert y.shape == (1, 1, 3, 224, 224)
    assert torch.equal(y[0, 0, :, 100:124], torch.ones(3, 24, 224))  # rows 138..161 -> 100..123
    assert (y[0, 0, :, :100] == -1).all() and (y[0, 0, :, 124:] == -1).all()


def test_score_shapes(weights):
    i3d = load_i3d(weights[1])
    videos = torch.randint(0, 256, (2, T, 64, 64, 3), dtype=torch.uint8)
    feats, probs = i3d.score(videos)
    assert feats.shape == (2, 400) and probs.shape == (2, 400)
    assert feats.dtype == probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(probs, feats.softmax(dim=1))


def test_long_clips_go_through_in_passes(weights, monkeypatch):
    """FRAMES_PER_PASS bounds memory: clip by clip gives the batch's logits."""
    import cvg_fast.metrics.i3d as i3d_module

    i3d = load_i3d(weights[1])
    videos = torch.randint(0, 256, (2, T, 32, 32, 3), dtype=torch.uint8)
    whole, _ = i3d.forward_clip(videos)
    monkeypatch.setattr(i3d_module, "FRAMES_PER_PASS", T)  # one clip per pass
    parts, _ = i3d.forward_clip(videos)
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-4)
