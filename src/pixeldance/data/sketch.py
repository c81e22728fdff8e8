"""Sketches: edge maps computed from frames without downloaded weights.

The paper (sec. 4.5) fine-tunes on HED edge maps as last-frame instructions so a rough
drawing can steer a clip's ending. HED needs pretrained weights; these are the classical
operators: Sobel gradient magnitude with a threshold, or Canny (Sobel, non-maximum
suppression along the gradient, hysteresis between two thresholds). A user may pass any
other ``(N, 3, H, W) -> (N, 3, H, W)`` function (a HED-like network loaded from a local
safetensors file) where a sketch function is taken.

A sketch is rendered the way a drawing looks: dark lines (-1) on a light ground (+1), the
same value in all three channels, pixels in [-1, 1] like every frame.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..keyframes import SKETCH_METHODS

SketchFn = Callable[[torch.Tensor], torch.Tensor]


def _grey(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) luma in [0, 1] (ITU-R BT.601 weights)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=pixels.device, dtype=pixels.dtype)
    return ((pixels.clamp(-1, 1) + 1) / 2 * w.view(1, 3, 1, 1)).sum(1, keepdim=True)


def sobel(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel derivatives of ``(N, 1, H, W)`` (replicate padding)."""
    kx = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=grey.dtype, device=grey.device)
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kx.view(1, 1, 3, 3))
    gy = F.conv2d(padded, kx.t().contiguous().view(1, 1, 3, 3))
    return gx, gy


def _non_max_suppression(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Keep a pixel only where its magnitude is the largest of its two neighbours along the
    gradient direction (quantised to 0, 45, 90, 135 degrees)."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180
    sector = ((angle + 22.5) // 45).long() % 4  # 0: horizontal gradient, 2: vertical
    padded = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    # neighbour offsets (dy, dx) along the gradient for each sector
    pairs = [((0, 1), (0, -1)), ((1, 1), (-1, -1)), ((1, 0), (-1, 0)), ((1, -1), (-1, 1))]
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for s, (a, b) in enumerate(pairs):
        local = (mag >= shifted(*a)) & (mag >= shifted(*b))
        keep |= (sector == s) & local
    return mag * keep


def edge_map(
    pixels: torch.Tensor, method: str = "canny", low: float = 0.1, high: float = 0.25
) -> torch.Tensor:
    """Binary edges ``(N, 1, H, W)`` (1 = edge) of frames ``(N, 3, H, W)`` in [-1, 1].

    Thresholds are fractions of each image's largest gradient magnitude (so the map does not
    depend on contrast): ``"sobel"`` marks magnitude >= ``high``; ``"canny"`` thins to
    one-pixel ridges and keeps weak ridges (>= ``low``) connected to strong ones (>= ``high``).
    """
    if method not in SKETCH_METHODS:
        raise ValueError(f"sketch method must be one of {SKETCH_METHODS}, got {method!r}")
    gx, gy = sobel(_grey(pixels.float()))
    mag = (gx**2 + gy**2).sqrt()
    mag = mag / mag.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    if method == "sobel":
        return (mag >= high).float()
    thin = _non_max_suppression(mag, gx, gy)
    strong, weak = thin >= high, thin >= low
    edges = strong
    for _ in range(max(pixels.shape[-2:])):  # hysteresis: grow strong edges through weak ones
        grown = weak & (F.max_pool2d(edges.float(), 3, 1, 1) > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges.float()


def to_sketch(pixels: torch.Tensor, method: str = "canny") -> torch.Tensor:
    """Frames ``(N, 3, H, W)`` in [-1, 1] -> their sketches: dark edges on a light ground,
    ``(N, 3, H, W)`` in [-1, 1]."""
    edges = edge_map(pixels, method)
    return (1 - 2 * edges).expand(-1, 3, -1, -1).to(pixels.dtype)


def as_drawing(pixels: torch.Tensor) -> torch.Tensor:
    """A user's drawing ``(N, 3, H, W)`` in [-1, 1] as a sketch keyframe: its grey level in all
    three channels (a sketch carries lines, not colours)."""
    return (_grey(pixels.float()) * 2 - 1).expand(-1, 3, -1, -1).to(pixels.dtype)


def sketch_latents(vae, latents: torch.Tensor, sketch: SketchFn | str = "canny") -> torch.Tensor:
    """Latent frames ``(B, C, h, w)`` -> the latents of their sketches (decode, edges, encode):
    how training makes sketch instructions from clips, cached latents included. ``sketch``: a
    method name or a pixels -> sketch function."""
    from ..encoders import decode_latents, encode_frames

    fn = sketch if callable(sketch) else (lambda p: to_sketch(p, sketch))
    pixels = decode_latents(vae, latents[:, :, None])[:, :, 0]  # (B, 3, H, W)
    return encode_frames(vae, fn(pixels)[:, :, None])[:, :, 0].to(latents.dtype)
