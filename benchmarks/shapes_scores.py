"""Held-out Dancing Shapes clips and the scores the shapes benchmarks read off them.

Clips come from seed bases never used in training (the shipped model trained on base 1):
``HELD_OUT_BASE`` (99) for the scores ``shapes_bench.py`` reports, ``VALIDATION_BASE`` (77)
for choosing generation settings (``guidance_sweep.py``). Movers are followed by the
centroid of their colour (``track``). The pixel scores (PSNR in dB on [0, 255] frames, capped
at 100 dB; flicker; instruction fidelity) are :mod:`pixeldance.evaluation.metrics`'s, the same
functions ``pixeldance eval`` uses; ``psnr`` is re-exported here for the other shapes
benchmarks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from pixeldance.data.shapes import COLOURS, DIRECTIONS, is_single_mover, render_clip, sample_clip
from pixeldance.encoders import decode_latents, encode_frames
from pixeldance.evaluation.metrics import psnr  # also re-exported for the other benchmarks

HELD_OUT_BASE = 99 * 1_000_003
# Seeds for choosing generation settings (guidance_sweep.py), so that the choice is not made
# on the clips that score it: neither training (base 1) nor held-out (base 99).
VALIDATION_BASE = 77 * 1_000_003


def held_out_clips(
    n: int,
    fps: float,
    frames: int,
    size: tuple[int, int],
    single_mover: bool = False,
    base: int = HELD_OUT_BASE,
    aspect: str = "1:1",
):
    """(clip params, uint8 frames (F, H, W, 3) at the model's size and frame rate), from the
    seeds from ``base`` on (the held-out clips unless told), drawn at ``aspect`` (width:height)."""
    out, seed = [], base
    while len(out) < n:
        clip = sample_clip(seed, aspect=aspect)
        seed += 1
        if single_mover and not is_single_mover(clip):
            continue
        out.append((clip, render_at(clip, fps, frames, size)))
    return out


def render_at(clip, fps: float, frames: int, size: tuple[int, int]) -> np.ndarray:
    """A clip's first ``frames`` frames at ``fps`` and (H, W) ``size``, uint8 (F, H, W, 3)."""
    stride = int(round(clip.fps / fps))
    video = render_clip(clip)[::stride][:frames]
    h, w = size
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BOX)) for f in video]
    )


def to_uint8(frames) -> np.ndarray:
    """Pipeline np output (B, F, H, W, 3) in [0, 1] -> uint8."""
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


@torch.no_grad()
def encode_videos(vae, videos: np.ndarray) -> torch.Tensor:
    """uint8 videos (B, F, H, W, 3) -> latents (B, C, F, h, w)."""
    x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    return encode_frames(vae, x)


@torch.no_grad()
def decode_videos(vae, latents: torch.Tensor) -> np.ndarray:
    """Latents (B, C, F, h, w) -> uint8 videos (B, F, H, W, 3)."""
    rec = decode_latents(vae, latents).permute(0, 2, 3, 4, 1).numpy()
    return ((rec + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def shows_colour(frames: np.ndarray, colour, tol: float = 90.0) -> np.ndarray:
    """Which pixels of ``frames`` (..., H, W, 3) lie within ``tol`` of the RGB ``colour``."""
    return np.linalg.norm(frames.astype(np.float32) - np.array(colour, np.float32), axis=-1) < tol


def track(video: np.ndarray, colour: tuple[int, int, int], tol: float = 90.0) -> list:
    """Per frame, the (x, y) centroid of the pixels within ``tol`` of ``colour`` (None where
    fewer than 3), leaving out pixels that match in every frame: those are a background of a
    similar colour (the world tints some backgrounds close to an object colour), not a mover
    (which covers no pixel for the whole clip once it travels farther than its size)."""
    match = shows_colour(video, colour, tol)  # (F, H, W)
    match &= ~match.all(axis=0)
    points = []
    for m in match:
        ys, xs = np.nonzero(m)
        points.append(None if len(xs) < 3 else (xs.mean(), ys.mean()))
    return points


def direction_of(video: np.ndarray, colour) -> str | None:
    points = [c for c in track(video, colour) if c is not None]
    if len(points) < 2:
        return None
    dx, dy = points[-1][0] - points[0][0], points[-1][1] - points[0][1]
    if math.hypot(dx, dy) < 1.0:
        return None
    angle = math.atan2(dy, dx)
    return min(
        DIRECTIONS,
        key=lambda d: abs(
            math.remainder(angle - math.atan2(DIRECTIONS[d][1], DIRECTIONS[d][0]), 2 * math.pi)
        ),
    )


def mover_truth(movers) -> list[tuple[str, tuple[int, int, int]]]:
    """(direction, RGB colour) of each single-mover clip's object."""
    return [(c.objects[0].direction, COLOURS[c.objects[0].colour]) for c, _ in movers]


def direction_accuracy(videos, truth) -> float:
    """Share of videos whose mover (tracked by colour) goes the caption's way (of 8)."""
    return float(
        np.mean([direction_of(v, col) == d for v, (d, col) in zip(videos, truth, strict=True)])
    )


def travel_px(videos, truth) -> float:
    """Mean distance (pixels) the mover's colour centroid goes from first to last frame."""
    out = []
    for v, (_, col) in zip(videos, truth, strict=True):
        points = [p for p in track(v, col) if p is not None]
        out.append(np.hypot(*np.subtract(points[-1], points[0])) if len(points) > 1 else 0.0)
    return round(float(np.mean(out)), 2)


def background_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mask = np.ones(a.shape[:2], bool)
    for colour in COLOURS.values():
        for frame in (a, b):
            mask &= (
                np.linalg.norm(frame.astype(np.float32) - np.array(colour, np.float32), axis=-1)
                > 90
            )
    return psnr(a[mask], b[mask]) if mask.any() else float("nan")
