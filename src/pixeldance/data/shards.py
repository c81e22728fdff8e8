"""Streaming clips from webdataset tar shards in the video2dataset layout.

Each sample is ``{key}.mp4`` with ``{key}.txt`` (caption) and/or ``{key}.json`` beside it.
Shards are split across processes (by rank) and DataLoader workers; each worker fills its own
buckets and yields a batch when one is full. Broken samples are skipped and reported in the
batch's ``bad`` list. Resuming skips ``skip_batches`` batches of this rank's stream, which
decodes them again (streams cannot seek).
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import torch

from ..images import to_model_range
from .batch import Batch
from .buckets import Bucket, nearest_bucket, resize_crop_frames
from .video import VideoError, decode_clip

logger = logging.getLogger(__name__)


def _all(urls):
    return urls


def _caption(sample: dict) -> str:
    if "txt" in sample:
        return (
            sample["txt"].decode("utf-8").strip()
            if isinstance(sample["txt"], bytes)
            else str(sample["txt"])
        )
    if "json" in sample:
        meta = json.loads(sample["json"])
        for key in ("caption", "text", "name"):
            if key in meta:
                return str(meta[key])
    return ""


class ShardClipStream(torch.utils.data.IterableDataset):
    """:class:`~pixeldance.data.batch.Batch` es of pixels streamed from tar shards (already
    batched: a DataLoader over it takes ``batch_size=None`` and no ``collate_fn``)."""

    def __init__(
        self,
        urls: str | list[str],
        buckets: list[Bucket],
        fps: float = 4.0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        skip_batches: int = 0,
        decode_timeout: float = 30.0,
        epochs: int | None = None,
    ):
        super().__init__()
        self.urls, self.buckets, self.fps, self.seed = urls, buckets, fps, seed
        self.rank, self.world_size = rank, world_size
        self.skip_batches, self.decode_timeout, self.epochs = skip_batches, decode_timeout, epochs

    def _shards(self) -> list[str]:
        import braceexpand

        urls = (
            self.urls if isinstance(self.urls, list) else list(braceexpand.braceexpand(self.urls))
        )
        rank, world = self.rank, self.world_size
        if rank is None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        return urls[rank * nw + wid :: world * nw]

    def _samples(self):
        import webdataset as wds

        shards = self._shards()
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            for url in shards:
                # this class splits shards itself; webdataset must not split them again
                dataset = wds.WebDataset(
                    url,
                    shardshuffle=False,
                    empty_check=False,
                    nodesplitter=_all,
                    workersplitter=_all,
                    handler=wds.warn_and_continue,
                )
                yield from dataset
            epoch += 1

    def __iter__(self):
        pending: dict[int, list] = {}
        bad: list[tuple[str, str]] = []
        emitted = 0
        for n, sample in enumerate(self._samples()):
            key = sample.get("__key__", f"sample{n}")
            video = sample.get("mp4")
            if video is None:
                bad.append((key, "NoVideo"))
                continue
            rng = np.random.default_rng([self.seed, n])
            try:
                probe_clip = decode_clip(
                    io.BytesIO(video), 1, self.fps, start=0.0, timeout=self.decode_timeout
                )
                h, w = probe_clip.frames.shape[1:3]
                b = self.buckets.index(nearest_bucket(h, w, self.buckets))
                bucket = self.buckets[b]
                clip = decode_clip(
                    io.BytesIO(video), bucket.frames, self.fps, rng=rng, timeout=self.decode_timeout
                )
            except VideoError as err:
                logger.warning("skipping %s: %s", key, err)
                bad.append((key, type(err).__name__))
                continue
            frames = resize_crop_frames(clip.frames, bucket.height, bucket.width)
            pixels = to_model_range(torch.from_numpy(frames).permute(3, 0, 1, 2))  # (3, F, H, W)
            pending.setdefault(b, []).append((pixels, _caption(sample), key))
            if len(pending[b]) == bucket.batch_size:
                items = pending.pop(b)
                emitted += 1
                if emitted <= self.skip_batches:
                    continue
                yield Batch(
                    captions=[i[1] for i in items],
                    pixels=torch.stack([i[0] for i in items]),  # (B, 3, F, H, W)
                    bad=bad,
                    keys=[i[2] for i in items],
                )
                bad = []
