"""Feature extractors behind one interface: a network, its name and checksum, and the
preprocessing its protocol requires.

Three roles, each a small wrapper around any torch callable (the real networks are loaded by
:mod:`pixeldance.evaluation.weights`; tests wrap tiny random modules the same way):

- :class:`VideoFeatures` (FVD): clips -> one feature vector each (I3D: 16 frames, 224x224,
  values in [-1, 1]);
- :class:`FrameFeatures` (FID, IS): frames -> features and class probabilities (Inception:
  299x299, values in [0, 255]);
- :class:`TextImageFeatures` (CLIPSIM): frames and texts -> embeddings in one space (CLIP).

Inputs are uint8 at the edge: a clip is ``(F, H, W, 3)``, frames are ``(N, H, W, 3)``. Every
wrapper says what it does in :meth:`protocol`, which goes into the report beside each score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import resize_cover_crop


def square_crop(frames: torch.Tensor) -> torch.Tensor:
    """Centre crop ``(..., H, W)`` to a square of side min(H, W)."""
    h, w = frames.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frames[..., top : top + s, left : left + s]


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 3, S, S)`` float -> ``(N, 3, size, size)``: bilinear, align_corners=False, no
    antialias (the resize of the reference FVD code)."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)


def _to_range(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """uint8-valued floats in [0, 255] -> ``value_range``."""
    lo, hi = value_range
    return x / 255.0 * (hi - lo) + lo


def _check_clip(clip: np.ndarray, frames: int) -> np.ndarray:
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
        raise ValueError(f"a clip must be uint8 (F, H, W, 3); got {clip.dtype} {clip.shape}")
    if len(clip) < frames:
        raise ValueError(f"a clip has {len(clip)} frames; this protocol needs {frames}")
    return clip[:frames]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3); got {frames.dtype} {frames.shape}")
    return frames


class Extractor:
    """What every extractor has: a name, the SHA-256 of its weights, whether that checksum
    matched the known one (None: there is no known one), and the device it runs on."""

    def __init__(self, name: str, checksum: str, verified: bool | None, device: str | torch.device):
        self.name, self.checksum, self.verified = name, checksum, verified
        self.device = torch.device(device)

    def protocol(self) -> dict:
        return {"extractor": self.name, "sha256": self.checksum, "checksum_verified": self.verified}


class _PixelFeatures(Extractor):
    """What the I3D and Inception wrappers share: a network called on frames centre-cropped to
    a square, resized to ``size`` x ``size`` (bilinear, no antialias) and mapped to
    ``value_range``, ``batch_size`` inputs to a call."""

    def __init__(
        self,
        network,
        name: str,
        checksum: str,
        verified: bool | None,
        size: int,
        value_range: tuple[float, float],
        batch_size: int,
        device: str | torch.device,
    ):
        super().__init__(name, checksum, verified, device)
        self.network, self.size, self.value_range = network, size, tuple(value_range)
        self.batch_size = batch_size

    def _geometry(self) -> str:
        """The preprocessing of :meth:`_prepare`, as the report states it."""
        if self.size is None:
            return (
                "centre square crop; no resize here: uint8 frames at their own size go to the "
                "network, whose own input path rescales and resizes them (as the reference "
                "code, StyleGAN2-ADA / StyleGAN-V, calls these files)"
            )
        return (
            f"centre square crop; bilinear resize to {self.size}x{self.size} "
            f"(align_corners=False, no antialias); values in "
            f"[{self.value_range[0]:g}, {self.value_range[1]:g}]"
        )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """float ``(N, 3, H, W)`` in [0, 255] -> ``(N, 3, size, size)`` in ``value_range``;
        ``size`` None: the centre square, uint8, unresized (the network resizes)."""
        if self.size is None:
            return square_crop(x).round().clamp(0, 255).to(torch.uint8)
        return _to_range(_resize(square_crop(x), self.size), self.value_range)


class VideoFeatures(_PixelFeatures):
    """One feature vector per clip, for FVD.

    Preprocessing: the first ``frames`` frames; each frame centre-cropped to a square and
    resized to ``size`` x ``size`` (bilinear, no antialias); values mapped to ``value_range``;
    the network is called on ``(B, 3, frames, size, size)`` with ``call_kwargs``. ``size``
    None: the centre squares go to the network as uint8 at their own size (a network with its
    own rescale and resize, as the I3D TorchScript file called with ``rescale=True,
    resize=True``), batched only with clips of the same size.
    """

    def __init__(
        self,
        network,
        *,
        name: str,
        checksum: str,
        verified: bool | None = True,
        frames: int = 16,
        size: int | None = 224,
        value_range: tuple[float, float] = (-1.0, 1.0),
        call_kwargs: dict | None = None,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ):
        super().__init__(network, name, checksum, verified, size, value_range, batch_size, device)
        self.frames, self.call_kwargs = frames, dict(call_kwargs or {})

    def protocol(self) -> dict:
        return {
            **super().protocol(),
            "frames": self.frames,
            "preprocess": f"first {self.frames} frames; {self._geometry()}",
            "call": ", ".join(f"{k}={v}" for k, v in self.call_kwargs.items()) or "(plain)",
        }

    def _batches(self, clips: Sequence[np.ndarray]) -> list[list[torch.Tensor]]:
        """Preprocessed clips in order, ``batch_size`` at most and one shape per batch."""
        batches: list[list[torch.Tensor]] = []
        for clip in clips:
            x = self.preprocess(clip)
            if (
                not batches
                or len(batches[-1]) >= self.batch_size
                or batches[-1][0].shape != x.shape
            ):
                batches.append([])
            batches[-1].append(x)
        return batches

    def preprocess(self, clip: np.ndarray) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` -> float ``(3, frames, size, size)`` (``size`` None: uint8
        ``(3, frames, S, S)``, the centre square)."""
        x = torch.from_numpy(_check_clip(clip, self.frames)).permute(0, 3, 1, 2).float()
        return self._prepare(x).permute(1, 0, 2, 3)  # (F, 3, S, S) -> (3, F, S, S)

    @torch.no_grad()
    def __call__(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Clips (each uint8 ``(F, H, W, 3)``, sizes may differ) -> features ``(B, D)``."""
        out = []
        for batch in self._batches(clips):
            x = torch.stack(batch)
            y = self.network(x.to(self.device), **self.call_kwargs)  # (b, D)
            out.append(y.float().cpu().numpy().reshape(len(x), -1))
        return np.concatenate(out).astype(np.float64)


class FrameFeatures(_PixelFeatures):
    """Per-frame features (FID) and class probabilities (IS) from an image classifier.

    Preprocessing: centre square crop, bilinear resize to ``size`` x ``size``, values mapped
    to ``value_range``; ``size`` None: the square crop goes to the network as uint8 at its own
    size (for networks with their own resize, as the TensorFlow-Inception TorchScript file).
    ``feature_kwargs`` / ``probability_kwargs`` select the network's output.
    """

    def __init__(
        self,
        network,
        *,
        name: str,
        checksum: str,
        verified: bool | None = True,
        size: int | None = 299,
        value_range: tuple[float, float] = (0.0, 255.0),
        feature_kwargs: dict | None = None,
        probability_kwargs: dict | None = None,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ):
        super().__init__(network, name, checksum, verified, size, value_range, batch_size, device)
        self.feature_kwargs = dict(feature_kwargs or {})
        self.probability_kwargs = dict(probability_kwargs or {})

    def protocol(self) -> dict:
        return {
            **super().protocol(),
            "preprocess": f"each frame: {self._geometry()}",
            "features_call": ", ".join(f"{k}={v}" for k, v in self.feature_kwargs.items()),
            "probabilities_call": ", ".join(f"{k}={v}" for k, v in self.probability_kwargs.items()),
        }

    @torch.no_grad()
    def _run(self, frames: np.ndarray, kwargs: dict) -> np.ndarray:
        frames = _check_frames(frames)
        out = []
        for i in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(frames[i : i + self.batch_size]).permute(0, 3, 1, 2).float()
            x = self._prepare(x)  # (b, 3, S, S)
            out.append(self.network(x.to(self.device), **kwargs).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def features(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``(N, H, W, 3)`` -> features ``(N, D)``."""
        return self._run(frames, self.feature_kwargs)

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``(N, H, W, 3)`` -> class probabilities ``(N, K)`` (rows sum to 1)."""
        return self._run(frames, self.probability_kwargs)


class TextImageFeatures(Extractor):
    """Image and text embeddings in one space (a transformers ``CLIPModel``-like model with
    ``get_image_features`` and ``get_text_features``, and its tokenizer).

    Image preprocessing as CLIP's own processor: the shorter side resized to ``size`` (PIL
    bicubic), centre crop ``size`` x ``size``, values in [0, 1] normalised by ``mean``/``std``.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str,
        checksum: str,
        verified: bool | None = True,
        size: int = 224,
        mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073),
        std: Sequence[float] = (0.26862954, 0.26130258, 0.27577711),
        max_length: int = 77,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ):
        super().__init__(name, checksum, verified, device)
        self.model, self.tokenizer, self.size = model, tokenizer, size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.max_length, self.batch_size = max_length, batch_size

    def protocol(self) -> dict:
        return {
            **super().protocol(),
            "preprocess": f"each frame: shorter side to {self.size} (PIL bicubic), centre crop "
            f"{self.size}x{self.size}, CLIP mean/std; texts truncated to {self.max_length} tokens",
            "similarity": "cosine of the projected embeddings, mean over frames, then over clips",
        }

    def _pixels(self, frame: np.ndarray) -> np.ndarray:
        return np.asarray(resize_cover_crop(Image.fromarray(frame), self.size, self.size))

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        # transformers 4 returns the projected embeddings, 5 an output whose pooler_output is
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``(N, H, W, 3)`` -> embeddings ``(N, D)``."""
        frames = _check_frames(frames)
        out = []
        for i in range(0, len(frames), self.batch_size):
            pix = np.stack([self._pixels(f) for f in frames[i : i + self.batch_size]])
            x = torch.from_numpy(pix).permute(0, 3, 1, 2).float() / 255.0
            x = ((x - self.mean) / self.std).to(self.device)
            out.append(self._tensor(self.model.get_image_features(pixel_values=x)).float().cpu())
        return torch.cat(out).numpy().astype(np.float64)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> embeddings ``(M, D)``."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k != "token_type_ids"}
            out.append(self._tensor(self.model.get_text_features(**tokens)).float().cpu())
        return torch.cat(out).numpy().astype(np.float64)
