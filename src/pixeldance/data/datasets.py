"""Datasets: manifests of videos, captioned images, bucketed batches and image/video mixing.

Map-style datasets are indexed by ``(k, bucket)`` where ``k`` is a global sample counter: the
record is ``k % len`` and every random choice (clip start) is seeded by ``(seed, k)``, so a
batch's content depends only on its position in the stream. The batch sampler can therefore
skip to any batch without decoding anything, and a resumed run sees exactly the data it would
have seen. Broken files are skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..images import to_model_range
from .buckets import Bucket, nearest_bucket, resize_crop_frames
from .video import DEFAULT_FPS, VideoError, decode_clip, probe

logger = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "video", "filepath", "file", "image")
CAPTION_COLUMNS = ("caption", "text", "name", "prompt", "title")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Record:
    path: str
    caption: str
    height: int | None = None
    width: int | None = None


def _rows(path: Path) -> list[dict]:
    if path.suffix.lower() in (".jsonl", ".json"):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_manifest(manifest: str | Path, root: str | Path | None = None) -> list[Record]:
    """Records from a CSV or JSONL manifest.

    Paths come from a ``path``-like column (relative to ``root``, default the manifest's
    folder), or from WebVid's own columns as ``{root}/{page_dir}/{videoid}.mp4`` (``root``
    defaulting to the manifest's ``videos/`` folder if it exists). Captions come from a
    ``caption``-like column or WebVid's ``name``. Optional ``height``/``width`` columns let
    batches be bucketed without probing the files.
    """
    manifest = Path(manifest)
    if not manifest.exists():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    rows = _rows(manifest)
    if not rows:
        raise ValueError(f"manifest has no rows: {manifest}")
    cols = set(rows[0])
    path_col = next((c for c in PATH_COLUMNS if c in cols), None)
    cap_col = next((c for c in CAPTION_COLUMNS if c in cols), None)
    webvid = path_col is None and {"videoid", "page_dir"} <= cols
    if (path_col is None and not webvid) or cap_col is None:
        raise ValueError(
            f"manifest {manifest} needs a path column (one of {PATH_COLUMNS}, or WebVid's videoid + page_dir) "
            f"and a caption column (one of {CAPTION_COLUMNS}); it has {sorted(cols)}"
        )
    base = Path(root) if root else manifest.parent
    if webvid and root is None and (manifest.parent / "videos").is_dir():
        base = manifest.parent / "videos"
    records = []
    for row in rows:
        rel = row[path_col] if path_col else f"{row['page_dir']}/{row['videoid']}.mp4"
        p = Path(rel) if Path(rel).is_absolute() or "://" in rel else base / rel
        h, w = row.get("height"), row.get("width")
        records.append(
            Record(str(p), str(row[cap_col] or ""), int(h) if h else None, int(w) if w else None)
        )
    return records


def read_image_records(source: str | Path) -> list[Record]:
    """Captioned images from a CSV/JSONL (path, caption) or a folder of images with ``.txt``
    captions beside them (the img2dataset layout)."""
    source = Path(source)
    if source.is_dir():
        records = []
        for p in sorted(source.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                txt = p.with_suffix(".txt")
                records.append(Record(str(p), txt.read_text().strip() if txt.exists() else ""))
        if not records:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {source}")
        return records
    return read_manifest(source)


class BadDataCounter:
    """Counts skipped files by reason (each was logged where it was skipped); a summary on request."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def merge(self, bad: list[tuple[str, str]]) -> None:
        for _, reason in bad:
            self.counts[reason] = self.counts.get(reason, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "no bad files"
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return f"{self.total} bad files skipped ({parts})"


class VideoClipDataset(torch.utils.data.Dataset):
    """Clips from video records, resized and cropped to a bucket.

    ``dataset[(k, bucket_index)]`` -> ``{"pixels": (3, F, H, W) float in [-1, 1], "caption",
    "bad": [(path, reason), ...]}``, or None if the record and its substitutes all failed.
    """

    def __init__(
        self,
        records: list[Record],
        buckets: list[Bucket],
        fps: float = DEFAULT_FPS,
        seed: int = 0,
        max_retries: int = 3,
        timeout: float = 30.0,
    ):
        if not records:
            raise ValueError("no records")
        self.records, self.buckets, self.fps, self.seed = records, buckets, fps, seed
        self.max_retries, self.timeout = max_retries, timeout

    def __len__(self) -> int:
        return len(self.records)

    def load(self, record: Record, bucket: Bucket, rng: np.random.Generator) -> np.ndarray:
        clip = decode_clip(record.path, bucket.frames, self.fps, rng=rng, timeout=self.timeout)
        return resize_crop_frames(clip.frames, bucket.height, bucket.width)

    def __getitem__(self, key: tuple[int, int]) -> dict | None:
        k, b = key
        bucket = self.buckets[b]
        bad = []
        for attempt in range(self.max_retries + 1):
            index = (k + attempt * 7919) % len(self.records)  # substitutes: other records
            record = self.records[index]
            rng = np.random.default_rng([self.seed, k, attempt])
            try:
                frames = self.load(record, bucket, rng)
            except (VideoError, OSError, ValueError) as err:
                logger.warning("skipping %s: %s", record.path, err)
                bad.append((record.path, type(err).__name__))
                continue
            pixels = to_model_range(torch.from_numpy(frames).permute(3, 0, 1, 2))  # (3, F, H, W)
            return {"pixels": pixels, "caption": record.caption, "bad": bad}
        return {"pixels": None, "caption": None, "bad": bad}


class ImageDataset(VideoClipDataset):
    """Captioned still images as one-frame clips (the paper's image batches)."""

    def load(self, record: Record, bucket: Bucket, rng: np.random.Generator) -> np.ndarray:
        from ..files import read_image

        frame = np.asarray(read_image(record.path))[None]
        return resize_crop_frames(frame, bucket.height, bucket.width)


def record_buckets(records: list[Record], buckets: list[Bucket], images: bool = False) -> list[int]:
    """Bucket index of each record, from its manifest size or by probing the file."""
    out = []
    for r in records:
        h, w = r.height, r.width
        if h is None or w is None:
            try:
                if images:
                    from PIL import Image

                    with Image.open(r.path) as im:
                        w, h = im.size
                else:
                    info = probe(r.path)
                    h, w = info.height, info.width
            except Exception:  # unreadable: bucketed anywhere, skipped when loaded
                h, w = buckets[0].height, buckets[0].width
        out.append(buckets.index(nearest_bucket(h, w, buckets)))
    return out


class BucketBatchSampler:
    """Endless, deterministic batches of ``(k, bucket_index)`` keys, each from one bucket.

    Epoch e shuffles the records with seed ``(seed, e)`` and deals them into their buckets; a
    bucket that fills emits a batch. ``start`` skips that many batches (of this rank) without
    loading anything. With ``world_size`` > 1, rank r takes every world_size-th batch.
    """

    def __init__(
        self,
        record_bucket: list[int],
        buckets: list[Bucket],
        seed: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.record_bucket, self.buckets, self.seed = record_bucket, buckets, seed
        self.start, self.rank, self.world_size = start, rank, world_size
        if all(record_bucket.count(i) == 0 for i in range(len(buckets))):
            raise ValueError("no records in any bucket")

    def _all_batches(self) -> Iterator[list[tuple[int, int]]]:
        n = len(self.record_bucket)
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
            pending: dict[int, list] = {}
            for i in order:
                b = self.record_bucket[i]
                pending.setdefault(b, []).append((epoch * n + int(i), b))
                if len(pending[b]) == self.buckets[b].batch_size:
                    yield pending.pop(b)
            epoch += 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        taken = 0
        for j, batch in enumerate(self._all_batches()):
            if j % self.world_size != self.rank:
                continue
            if taken >= self.start:
                yield batch
            taken += 1


def collate(samples: list[dict]) -> dict:
    """Stack the samples that loaded; keep the list of bad files seen."""
    bad = [b for s in samples for b in s["bad"]]
    ok = [s for s in samples if s["pixels"] is not None]
    if not ok:
        return {"pixels": None, "captions": [], "bad": bad}
    return {
        "pixels": torch.stack([s["pixels"] for s in ok]),
        "captions": [s["caption"] for s in ok],
        "bad": bad,
    }


def image_step(step: int, image_every: int) -> bool:
    """Whether training step ``step`` (0-based) takes an image batch: every ``image_every``-th
    (paper, sec. 4.1: images every 8th iteration); 0 disables images."""
    return image_every > 0 and (step + 1) % image_every == 0


def batches_before(step: int, image_every: int) -> tuple[int, int]:
    """(video batches, image batches) consumed by steps ``0 .. step-1``."""
    images = step // image_every if image_every > 0 else 0
    return step - images, images


class Mixer:
    """Yields ``(step, kind, batch)`` from a video and an image iterator: an image batch every
    ``image_every``-th step, videos otherwise. Given iterators started at
    :func:`batches_before(start_step) <batches_before>`, it resumes exactly."""

    def __init__(self, videos, images=None, image_every: int = 8, start_step: int = 0):
        self.videos = iter(videos)
        self.images = iter(images) if images is not None else None
        self.image_every = image_every if images is not None else 0
        self.step = start_step

    def __iter__(self):
        return self

    def __next__(self):
        kind = "image" if image_step(self.step, self.image_every) else "video"
        batch = next(self.images if kind == "image" else self.videos)
        self.step += 1
        return self.step - 1, kind, batch
