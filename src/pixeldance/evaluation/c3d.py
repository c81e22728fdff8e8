"""Video Inception Score as the paper's UCF-101 IS is computed: class probabilities of a C3D
network fine-tuned on UCF-101 (the protocol of TGANv2, Saito et al. 2020, whose Chainer
checkpoint StyleGAN-V ported to TorchScript as ``c3d_ucf101.pt``), one 16-frame clip at a time.

Two file kinds, one wrapper (:class:`VideoProbabilities`):

- a TorchScript file (such as StyleGAN-V's port): called on ``(B, 3, 16, H, W)`` float
  frames in [0, 255], unresized, so that the file's own preprocessing (resize, mean) does the
  rest, as StyleGAN-V calls it;
- a safetensors state dict of the C3D architecture below (Tran et al. 2015: eight 3x3x3
  convolutions, five poolings, three fully connected layers); widths and class count are read
  from the tensors. Frames are centre-cropped to a square, resized to 112x112 (bilinear) and,
  if the file's metadata has ``mean`` (three numbers), that mean is subtracted.

The network's rows are used as probabilities if they already are (non-negative, sum 1),
else a softmax is applied; the report says which.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import Extractor, _check_clip, _resize, square_crop

C3D_FRAMES = 16  # TGANv2's C3D protocol: 16-frame clips
C3D_SIZE = 112  # C3D's input side (Tran et al. 2015)
_CONVS = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
_POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": 2, "conv3b": 2, "conv4b": 2, "conv5b": 2}


class C3D(nn.Module):
    """C3D: ``(B, 3, 16, 112, 112)`` -> class logits ``(B, classes)``."""

    def __init__(self, widths: Sequence[int], hidden: int, classes: int, flat: int):
        super().__init__()
        chans = [3, widths[0], widths[1], widths[2], widths[2], widths[3], widths[3]]
        chans += [widths[4], widths[4]]
        for name, cin, cout in zip(_CONVS, chans[:-1], chans[1:], strict=True):
            self.add_module(name, nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6, self.fc7 = nn.Linear(flat, hidden), nn.Linear(hidden, hidden)
        self.fc8 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in _CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                pad = (0, 1, 1) if name == "conv5b" else 0  # pool5 pads H and W (C3D's layout)
                x = F.max_pool3d(x, _POOL_AFTER[name], _POOL_AFTER[name], padding=pad)
        x = x.flatten(1)
        return self.fc8(F.relu(self.fc7(F.relu(self.fc6(x)))))

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> C3D:
        """The network whose shapes the tensors have, with them loaded."""
        try:
            widths = [tensors[f"{n}.weight"].shape[0] for n in ("conv1a", "conv2a", "conv3a")]
            widths += [tensors["conv4a.weight"].shape[0], tensors["conv5a.weight"].shape[0]]
            hidden, flat = tensors["fc6.weight"].shape
            classes = tensors["fc8.weight"].shape[0]
        except KeyError as err:
            raise ValueError(f"not a C3D state dict: no tensor {err.args[0]}") from err
        model = cls(widths, hidden, classes, flat)
        model.load_state_dict(tensors)
        return model.eval()


class VideoProbabilities(Extractor):
    """Class probabilities per clip (video IS) from a video classifier; see module docs."""

    def __init__(
        self,
        network,
        *,
        name: str,
        checksum: str,
        verified: bool | None,
        size: int | None,
        mean: Sequence[float] | None = None,
        frames: int = C3D_FRAMES,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ):
        super().__init__(name, checksum, verified, device)
        self.network, self.size, self.frames, self.batch_size = network, size, frames, batch_size
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)
        self.softmax_applied: bool | None = None

    def protocol(self) -> dict:
        if self.size is None:
            geometry = "frames as decoded (no crop or resize here: the network's own)"
        else:
            geometry = f"centre square crop; bilinear resize to {self.size}x{self.size}"
        mean = "" if self.mean is None else f"; minus mean {self.mean.tolist()}"
        return {
            **super().protocol(),
            "frames": self.frames,
            "preprocess": f"first {self.frames} frames; {geometry}; values in [0, 255]{mean}",
            "output": {None: "not run", True: "logits: softmax applied here"}.get(
                self.softmax_applied, "probabilities as the network gives them"
            ),
        }

    def _prepare(self, clip: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(_check_clip(clip, self.frames)).permute(0, 3, 1, 2).float()
        if self.size is not None:
            x = _resize(square_crop(x), self.size)
        if self.mean is not None:
            x = x - self.mean.view(1, 3, 1, 1)
        return x.permute(1, 0, 2, 3)  # (F, 3, S, S) -> (3, F, S, S)

    @torch.no_grad()
    def probabilities(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Clips (uint8 ``(F, H, W, 3)``, one size per call) -> probabilities ``(B, K)``."""
        out = []
        for i in range(0, len(clips), self.batch_size):
            x = torch.stack([self._prepare(c) for c in clips[i : i + self.batch_size]])
            out.append(self.network(x.to(self.device)).float().cpu())
        y = torch.cat(out).double()
        is_prob = bool((y >= 0).all()) and torch.allclose(
            y.sum(1), torch.ones(len(y)).double(), atol=1e-3
        )
        self.softmax_applied = not is_prob
        return (y if is_prob else y.softmax(dim=1)).numpy()


def load_c3d_safetensors(
    path: str | Path, checksum: str, device="cpu", frames: int = C3D_FRAMES
) -> VideoProbabilities:
    """A C3D state dict from a safetensors file (tensors only; see module docs)."""
    from .weights_io import read_safetensors

    network, mean = read_safetensors(
        Path(path),
        "a UCF-101 C3D state dict",
        lambda tensors, meta: (
            C3D.from_tensors(tensors),
            json.loads(meta["mean"]) if "mean" in meta else None,
        ),
    )
    return VideoProbabilities(
        network.to(device),
        name=f"C3D UCF-101 ({Path(path).name}, safetensors)",
        checksum=checksum,
        verified=None,
        size=C3D_SIZE,
        mean=mean,
        frames=frames,
        device=device,
    )
