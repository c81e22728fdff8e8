"""Aspect-ratio buckets: every sample is resized and cropped into the nearest bucket, and each
batch is drawn from one bucket, so clips of many shapes train without padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..images import resize_cover_crop


@dataclass(frozen=True)
class Bucket:
    """A named training shape: ``height x width`` pixels, ``frames`` frames, ``batch_size`` clips."""

    name: str
    height: int
    width: int
    frames: int = 16  # paper, sec. 4.1: 16-frame clips
    batch_size: int = 1

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0 or self.frames <= 0 or self.batch_size <= 0:
            raise ValueError(
                f"bucket {self.name!r}: height, width, frames and batch_size must be positive"
            )

    def for_images(self, batch_size: int) -> Bucket:
        """This bucket's size for still images: one frame, ``batch_size`` images a batch."""
        return Bucket(self.name, self.height, self.width, 1, batch_size)


BUCKET_KEYS = ("name", "height", "width", "frames", "batch_size")


def check_mapping(item, keys: tuple[str, ...], where: str) -> dict:
    """A config entry that must be a mapping of some of ``keys``; ValueError naming ``where``
    for anything else or an unknown key."""
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(keys)}, got {item!r}")
    unknown = sorted(set(item) - set(keys))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known: {', '.join(keys)}")
    return item


def parse_bucket(item: Bucket | dict, where: str = "bucket") -> Bucket:
    """A bucket from a config entry ``{name, height, width, frames, batch_size}`` (``frames``
    and ``batch_size`` optional); a bad entry is refused naming ``where`` and the key."""
    if isinstance(item, Bucket):
        return item
    check_mapping(item, BUCKET_KEYS, where)
    for key in BUCKET_KEYS[:3]:
        if key not in item:
            raise ValueError(f"{where}.{key} is missing")
    if not isinstance(item["name"], str) or not item["name"]:
        raise ValueError(f"{where}.name must be a non-empty string, got {item['name']!r}")
    for key in BUCKET_KEYS[1:]:
        value = item.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{where}.{key} must be a positive integer, got {value!r}")
    return Bucket(**item)


def parse_buckets(items: list, where: str = "buckets") -> list[Bucket]:
    """Buckets from config entries (see :func:`parse_bucket`), with unique names."""
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{where} must be a list of buckets, got {items!r}")
    buckets = [parse_bucket(item, f"{where}[{i}]") for i, item in enumerate(items)]
    names = [b.name for b in buckets]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: bucket names must be unique: {names}")
    if not buckets:
        raise ValueError(f"{where}: at least one bucket is needed")
    return buckets


def image_buckets(buckets: list[Bucket], batch_size: int | None = None) -> list[Bucket]:
    """The buckets' sizes for still images (one frame each; paper, sec. 4.1: images train as
    one-frame videos), ``batch_size`` images a batch (None: each bucket's own)."""
    return [b.for_images(b.batch_size if batch_size is None else batch_size) for b in buckets]


def nearest_bucket(height: int, width: int, buckets: list[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is closest to ``width / height`` (in log space)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"bad size {height}x{width}")
    target = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b.aspect) - target))


def resize_crop_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``(F, H, W, 3)`` -> ``(F, height, width, 3)``: resize to cover, centre-crop.

    The geometry of the pipeline's image instructions
    (:func:`pixeldance.images.resize_cover_crop`), with area resampling for downscaling.
    """
    f, h0, w0, _ = frames.shape
    down = max(width / w0, height / h0) < 1
    method = Image.Resampling.BOX if down else Image.Resampling.BICUBIC
    out = np.empty((f, height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(resize_cover_crop(Image.fromarray(frame), height, width, method))
    return out


def assign_buckets(heights, widths, buckets: list[Bucket], chunk: int = 1 << 20) -> np.ndarray:
    """Index of the :func:`nearest_bucket` of each ``height x width``, for arrays of sizes; an
    unknown or unreadable size (0 or less) goes to bucket 0. int16, as long as the inputs."""
    out = np.zeros(len(heights), np.int16)
    if len(buckets) == 1:
        return out
    aspects = np.log(np.array([b.aspect for b in buckets]))  # (nb,)
    for s in range(0, len(heights), chunk):  # bounded memory for tens of millions of rows
        h = np.asarray(heights[s : s + chunk], np.float64)
        w = np.asarray(widths[s : s + chunk], np.float64)
        known = (h > 0) & (w > 0)
        target = np.log(np.where(known, w, 1.0) / np.where(known, h, 1.0))  # (n,)
        best = np.abs(aspects[None, :] - target[:, None]).argmin(1)  # first of equals, as min()
        out[s : s + chunk] = np.where(known, best, 0)
    return out
