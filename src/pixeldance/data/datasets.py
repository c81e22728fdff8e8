"""Datasets: clips and images by position, bucketed global batches, image/video mixing.

Map-style datasets are indexed by ``(k, bucket)`` where ``k`` is a global sample counter: the
record is ``k % len`` and every random choice (clip start) is seeded by ``(seed, k)``, so a
batch's content depends only on its position in the stream. The batch sampler deals each
optimizer step one global batch, a function of the seed, the step and the global batch size
only, and splits it among processes and accumulation micro-steps; it can skip to any step
without decoding anything, so a resumed run sees exactly the data it would have seen, on any
number of processes. Broken files are skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..images import to_model_range
from .batch import Sample
from .buckets import Bucket, resize_crop_frames
from .manifest import Record
from .video import DEFAULT_FPS, VideoError, decode_clip

logger = logging.getLogger(__name__)


class BadDataCounter:
    """Counts skipped files by reason (each was logged where it was skipped); a summary on request."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._seen: set[str] = set()

    def merge(self, bad: list[tuple[str, str]]) -> None:
        """Count each file once, however often it was tried (a substitute, a second clip)."""
        for path, reason in bad:
            if path not in self._seen:
                self._seen.add(path)
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

    ``dataset[(k, bucket_index)]`` -> a :class:`~pixeldance.data.batch.Sample` with ``pixels``
    ``(3, F, H, W)`` in [-1, 1] and the files skipped on the way (``pixels`` None if the record
    and its substitutes all failed).
    """

    def __init__(
        self,
        records: Sequence[Record],
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

    def __getitem__(self, key: tuple[int, int]) -> Sample:
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
                if all(path != record.path for path, _ in bad):  # a retry is not a new file
                    logger.warning("skipping %s: %s", record.path, err)
                    bad.append((record.path, type(err).__name__))
                continue
            pixels = to_model_range(torch.from_numpy(frames).permute(3, 0, 1, 2))  # (3, F, H, W)
            return Sample(record.caption, pixels=pixels, bad=bad)
        return Sample(bad=bad)


class ImageDataset(VideoClipDataset):
    """Captioned still images as one-frame clips (the paper's image batches)."""

    def load(self, record: Record, bucket: Bucket, rng: np.random.Generator) -> np.ndarray:
        from ..files import read_image

        frame = np.asarray(read_image(record.path))[None]
        return resize_crop_frames(frame, bucket.height, bucket.width)


class BucketBatchSampler:
    """Endless, deterministic micro-batches of ``(k, bucket_index)`` keys, each from one bucket.

    The unit is the global batch: ``bucket.batch_size * world_size * grad_accum`` keys of one
    bucket (``batch_size`` is one process's micro-batch). Epoch e shuffles the records with
    seed ``(seed, e)`` and deals them into their buckets; a bucket that fills a global batch
    emits it (what is left in a bucket at the end of an epoch is dropped); a bucket with fewer
    records than its global batch is merged into the nearest one first
    (:func:`merge_small_buckets`, one warning on rank 0); with ``merge`` False (records that
    cannot be resized, as cached latents) it is left out, with one warning. Global batch j is
    thus a function of ``(seed, j)`` and the global batch sizes only. It is cut into
    ``world_size * grad_accum`` slices in order; this rank yields slices
    ``rank * grad_accum + m`` for ``m < grad_accum``, one micro-batch each. ``start`` skips
    that many global batches, computing only their epoch's shuffle.
    """

    def __init__(
        self,
        record_bucket,
        buckets: list[Bucket],
        seed: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        merge: bool = True,
    ):
        if not 0 <= rank < world_size or grad_accum < 1:
            raise ValueError(
                f"need 0 <= rank < world_size and grad_accum >= 1, got {rank}, {world_size}, {grad_accum}"
            )
        self.record_bucket = np.asarray(record_bucket, np.int16)
        if len(
            self.record_bucket
        ) and not 0 <= self.record_bucket.min() <= self.record_bucket.max() < len(buckets):
            raise ValueError(
                f"records name buckets up to {self.record_bucket.max()} but only {len(buckets)} "
                "are configured (a latent cache made with other buckets? preprocess it again)"
            )
        self.buckets, self.seed, self.start = buckets, seed, start
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.slices = world_size * grad_accum
        self.global_sizes = [b.batch_size * self.slices for b in buckets]
        if merge:
            self.record_bucket, self.merged = merge_small_buckets(
                self.record_bucket, buckets, self.global_sizes
            )
        else:  # records fixed at their bucket's size (cached latents): small buckets sit out
            self.merged = []
            counts = np.bincount(self.record_bucket, minlength=len(buckets))
            small = [
                f"{b.name} ({c} clips)"
                for b, c, g in zip(buckets, counts, self.global_sizes, strict=True)
                if 0 < c < g
            ]
            if small and rank == 0:
                logger.warning(
                    "buckets with fewer clips than their global batch are left out (cached "
                    "latents cannot be resized into another bucket): %s",
                    ", ".join(small),
                )
        if self.merged and rank == 0:
            logger.warning(
                "buckets with fewer clips than their global batch (batch_size x processes x "
                "grad_accum) train in the nearest bucket: %s",
                ", ".join(f"{a} ({n} clips) -> {b}" for a, n, b in self.merged),
            )
        counts = np.bincount(self.record_bucket, minlength=len(buckets))
        self.per_epoch = int(sum(c // g for c, g in zip(counts, self.global_sizes, strict=True)))
        if self.per_epoch == 0:
            raise ValueError(
                f"no bucket holds a whole global batch: records per bucket {counts.tolist()}, "
                f"global batch per bucket {self.global_sizes} (batch_size x processes x "
                "grad_accum); lower the batch size or add data"
            )
        self._epoch: tuple | None = None

    def _plan(self, epoch: int) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
        """The epoch's shuffle; per bucket the positions in it of that bucket's records (None
        with one bucket: all of them); the bucket and row of each global batch, in the order
        the batches fill."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1:]
        self._epoch = None  # free the last epoch's arrays before making this one's
        n = len(self.record_bucket)
        order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        np.random.default_rng([self.seed, epoch]).shuffle(order)
        single = len(self.buckets) == 1
        dealt = None if single else self.record_bucket[order]  # bucket of each shuffled record
        positions, done, bucket_of, row_of = [], [], [], []
        for b, g in enumerate(self.global_sizes):
            pos = None if single else np.flatnonzero(dealt == b).astype(order.dtype)
            m = (n if single else len(pos)) // g
            positions.append(pos)
            # a batch is emitted when its last record is dealt
            done.append(np.arange(g - 1, m * g, g) if single else pos[g - 1 : m * g : g])
            bucket_of.append(np.full(m, b, np.int16))
            row_of.append(np.arange(m))
        fill = np.argsort(np.concatenate(done), kind="stable")
        bucket_of, row_of = np.concatenate(bucket_of)[fill], np.concatenate(row_of)[fill]
        self._epoch = (epoch, order, positions, bucket_of, row_of)
        return self._epoch[1:]

    def global_batch(self, j: int) -> list[tuple[int, int]]:
        """The keys of global batch ``j``."""
        epoch, i = divmod(j, self.per_epoch)
        order, positions, bucket_of, row_of = self._plan(epoch)
        b, g = int(bucket_of[i]), self.global_sizes[bucket_of[i]]
        rows = slice(row_of[i] * g, (row_of[i] + 1) * g)
        records = order[rows] if positions[b] is None else order[positions[b][rows]]
        base = epoch * len(self.record_bucket)
        return [(base + int(r), b) for r in records]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        j = self.start
        while True:
            keys = self.global_batch(j)
            size = len(keys) // self.slices
            for m in range(self.grad_accum):
                s = self.rank * self.grad_accum + m
                yield keys[s * size : (s + 1) * size]
            j += 1


def merge_small_buckets(
    record_bucket: np.ndarray, buckets: list[Bucket], global_sizes: list[int]
) -> tuple[np.ndarray, list[tuple[str, int, str]]]:
    """Small data: the records of a bucket holding fewer than its global batch go to the
    nearest bucket by aspect ratio (where they are resized and cropped), smallest bucket first,
    until every bucket with records fills a global batch or one bucket is left. A function of
    the record counts and the global batch sizes only, so of no process count. Returns the new
    bucket of each record and ``(bucket, records, merged into)`` of each merge."""
    record_bucket = record_bucket.copy()
    counts = np.bincount(record_bucket, minlength=len(buckets))
    merged = []
    while True:
        small = [b for b, c in enumerate(counts) if 0 < c < global_sizes[b]]
        others = [b for b, c in enumerate(counts) if c > 0]
        if not small or len(others) < 2:
            return record_bucket, merged
        b = min(small, key=lambda x: (counts[x], x))
        aspect = np.log(buckets[b].aspect)
        to = min(
            (o for o in others if o != b),
            key=lambda o: (abs(np.log(buckets[o].aspect) - aspect), -counts[o], o),
        )
        merged.append((buckets[b].name, int(counts[b]), buckets[to].name))
        record_bucket[record_bucket == b] = to
        counts[to], counts[b] = counts[to] + counts[b], 0


def image_step(step: int, image_every: int) -> bool:
    """Whether optimizer step ``step`` (0-based) takes image batches: every ``image_every``-th
    (paper, sec. 4.1: images every 8th iteration); 0 disables images. Every micro-step of every
    process in that step takes one."""
    return image_every > 0 and (step + 1) % image_every == 0


def batches_before(step: int, image_every: int) -> tuple[int, int]:
    """(video global batches, image global batches) consumed by optimizer steps ``0 .. step-1``."""
    images = step // image_every if image_every > 0 else 0
    return step - images, images


class Mixer:
    """Yields ``(step, kind, batch)`` once per micro-step from a video and an image iterator of
    micro-batches: ``grad_accum`` micro-batches per optimizer step ``step``, all images on every
    ``image_every``-th step, all videos otherwise. Given iterators started at
    :func:`batches_before(start_step) <batches_before>` global batches, it resumes exactly."""

    def __init__(
        self,
        videos,
        images=None,
        image_every: int = 8,
        start_step: int = 0,
        grad_accum: int = 1,
    ):
        self.videos = iter(videos)
        self.images = iter(images) if images is not None else None
        self.image_every = image_every if images is not None else 0
        self.step, self.micro, self.grad_accum = start_step, 0, grad_accum

    def __iter__(self):
        return self

    def __next__(self):
        step = self.step
        kind = "image" if image_step(step, self.image_every) else "video"
        batch = next(self.images if kind == "image" else self.videos)
        self.micro += 1
        if self.micro == self.grad_accum:
            self.step, self.micro = step + 1, 0
        return step, kind, batch
