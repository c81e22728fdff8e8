"""Streaming clips from webdataset tar shards (the video2dataset layout), exactly resumable.

Each sample is ``{key}.mp4`` with ``{key}.txt`` (caption) and/or ``{key}.json`` beside it.

A global batch is read by *lanes*: ``L`` sequential readers, ``L`` the stage's largest global
batch (``batch_size x processes x grad_accum``). In epoch ``e`` the shards are shuffled with
``(seed, e)`` and lane ``i`` reads shards ``i, i + L, i + 2L, ...`` of that order, each from
start to end (each lane counts its own epochs). Global batch ``j`` is of bucket
``j mod len(buckets)`` and takes the next sample of each of its first ``G`` lanes (``G`` its
global batch), place ``i`` from lane ``i``; the slices of a global batch go to processes and
micro-steps in order, as :class:`~pixeldance.data.datasets.BucketBatchSampler` deals them.
So the clip at each place of each step is a function of the seed, the step and the global
batch: not of the process count (a process reads only the lanes of its slices) nor of the
DataLoader workers (each decodes some places of each of its process's micro-batches; the
process puts them back in order). A clip is cut with a random start seeded by
``(seed, lane, sample number)``; with several buckets it is cropped into its step's bucket
(a streamed clip's shape is unknown until it is read; for aspect buckets use a manifest or a
latent cache).

Resume puts each lane at its sample number: whole shards are skipped by their sample counts
(read from the tar headers; a local shard's contents are seeked past, not read) and samples
within a shard are skipped unread, so nothing skipped is decoded. With fewer shards than lanes
a warning says so and the lanes share shards (each taking every ``m``-th sample of one).
A shard that cannot be opened or read is tried ``max_retries`` more times, then the run stops
with one line naming the shard and its pattern.
"""

from __future__ import annotations

import io
import json
import logging
import math
import posixpath
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..images import to_model_range
from .batch import Batch, Sample, collate
from .buckets import Bucket, resize_crop_frames
from .video import VideoError, decode_clip

logger = logging.getLogger(__name__)


class ShardError(ValueError):
    """Shards that cannot be read (a bad pattern, missing files, unreadable tar files)."""


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def expand_shards(pattern: str | list[str]) -> list[str]:
    """The shard URLs of a brace pattern (``shards/{00000..00099}.tar``) or list; a malformed
    pattern, an empty one or missing local files are refused in one line, before any work."""
    if isinstance(pattern, (list, tuple)):
        urls = [str(u) for u in pattern]
    else:
        import braceexpand

        try:
            urls = list(braceexpand.braceexpand(str(pattern)))
        except braceexpand.UnbalancedBracesError:
            raise ShardError(f"data.shards: malformed brace pattern {pattern!r}") from None
        if "{" in str(pattern) and len(urls) == 1 and urls[0] == str(pattern):
            raise ShardError(f"data.shards: malformed brace pattern {pattern!r}")
    if not urls:
        raise ShardError(f"data.shards: no shards in {pattern!r}")
    missing = [u for u in urls if _is_local(u) and not Path(u).is_file()]
    if missing:
        raise ShardError(
            f"data.shards: {len(missing)} of {len(urls)} shards of {pattern!r} are missing "
            f"(first: {missing[0]})"
        )
    return urls


def _open(url: str) -> tarfile.TarFile:
    if _is_local(url):
        return tarfile.open(url, "r:*")  # random access: skipping seeks past the data
    from webdataset.gopen import gopen

    return tarfile.open(fileobj=gopen(url, "rb"), mode="r|*")


def _split(name: str) -> tuple[str, str]:
    """(key, extension) of a member, as webdataset groups them: the key is the path up to
    the first dot of the file name."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext.lower()


def _members(url: str, part: int, parts: int, start: int) -> Iterator[tuple[str, dict]]:
    """Samples ``part, part + parts, ...`` of a shard from the ``start``-th of them on, as
    ``(key, {extension: bytes})``; the others are passed over without reading their data."""
    with _open(url) as tar:
        index, key, files = -1, None, {}
        for member in tar:
            if not member.isfile() or posixpath.basename(member.name).startswith("."):
                continue
            k, ext = _split(member.name)
            if k != key:
                if files:
                    yield key, files
                index, key, files = index + 1, k, {}
            n, r = divmod(index - part, parts)
            if r == 0 and n >= start:
                files[ext] = tar.extractfile(member).read()
        if files:
            yield key, files


def count_samples(url: str) -> int:
    """The number of samples (keys) in a shard, from its tar headers."""
    with _open(url) as tar:
        keys, last = 0, None
        for member in tar:
            if member.isfile() and not posixpath.basename(member.name).startswith("."):
                k, _ = _split(member.name)
                keys, last = keys + (k != last), k
        return keys


class _Lane:
    """One lane's endless sequence of samples over its shards, epoch after epoch, that can be
    put at any sample number without reading what comes before."""

    def __init__(self, lane: int, lanes: int, stream: ShardLanes):
        self.lane, self.lanes, self.s = lane, lanes, stream
        self.position, self._it = 0, None

    def segments(self, epoch: int) -> list[tuple[str, int, int]]:
        """``(url, part, parts)`` this lane reads in ``epoch``: samples ``part::parts``."""
        urls = self.s.urls
        order = np.random.default_rng([self.s.seed, epoch]).permutation(len(urls))
        if len(urls) >= self.lanes:
            return [(urls[o], 0, 1) for o in order[self.lane :: self.lanes]]
        parts = math.ceil(self.lanes / len(urls))
        return [(urls[order[self.lane % len(urls)]], self.lane // len(urls), parts)]

    def _length(self, url: str, part: int, parts: int) -> int:
        return len(range(part, self.s.count(url), parts))

    def seek(self, n: int) -> None:
        epoch, left = 0, n
        while True:
            lengths = [self._length(*seg) for seg in self.segments(epoch)]
            if sum(lengths) == 0:
                raise ShardError(f"data.shards: lane {self.lane} finds no samples in its shards")
            if left < sum(lengths):
                break
            left, epoch = left - sum(lengths), epoch + 1
        seg = 0
        while left >= lengths[seg]:
            left, seg = left - lengths[seg], seg + 1
        self._it, self.position = self._samples(epoch, seg, left), n

    def _samples(self, epoch: int, seg: int, offset: int):
        while True:
            got = 0
            for url, part, parts in self.segments(epoch)[seg:]:
                for sample in self.s.read(url, part, parts, offset):
                    got += 1
                    yield sample
                offset = 0
            if got == 0 and seg == 0:
                raise ShardError(f"data.shards: lane {self.lane} finds no samples in its shards")
            epoch, seg = epoch + 1, 0

    def next(self) -> tuple[str, dict]:
        if self._it is None:
            self.seek(self.position)
        self.position += 1
        return next(self._it)


class ShardLanes(torch.utils.data.IterableDataset):
    """This process's micro-batches from the shards, as parts: each worker gives, per
    micro-batch, a list of ``(place, Sample)`` for the places it decodes (place ``q`` of
    ``batch_size`` goes to worker ``q mod workers``). :class:`ShardBatches` puts them back
    together."""

    def __init__(
        self,
        urls: list[str],
        buckets: list[Bucket],
        fps: float = 4.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        start: int = 0,
        decode_timeout: float = 30.0,
        max_retries: int = 3,
        pattern: str | None = None,
    ):
        super().__init__()
        self.urls, self.buckets, self.fps, self.seed = urls, buckets, fps, seed
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.start = start
        self.decode_timeout, self.max_retries = decode_timeout, max_retries
        self.pattern = pattern or (urls[0] if len(urls) == 1 else f"{len(urls)} shards")
        self.global_sizes = [b.batch_size * world_size * grad_accum for b in buckets]
        self.lanes = max(self.global_sizes)
        self._counts: dict[str, int] = {}

    def lane_position(self, lane: int, j: int) -> int:
        """Samples lane ``lane`` gave to global batches ``0 .. j-1`` (bucket ``k mod nb`` for
        batch ``k``; only the first ``G`` lanes of a batch of global size ``G`` move)."""
        nb = len(self.buckets)
        return sum(max(0, -(-(j - b) // nb)) for b, g in enumerate(self.global_sizes) if g > lane)

    def _retrying(self, what: str, url: str, attempt_fn):
        for attempt in range(self.max_retries + 1):
            try:
                return attempt_fn()
            except (OSError, EOFError, tarfile.TarError) as err:
                if attempt == self.max_retries:
                    raise ShardError(
                        f"cannot {what} shard {url} of {self.pattern} after "
                        f"{self.max_retries + 1} tries: {type(err).__name__}: {_one_line(err)}"
                    ) from None
                logger.warning("shard %s: %s (try %d); retrying", url, _one_line(err), attempt + 1)
                time.sleep(min(0.5 * (attempt + 1), 5.0))

    def count(self, url: str) -> int:
        if url not in self._counts:
            self._counts[url] = self._retrying("count", url, lambda: count_samples(url))
        return self._counts[url]

    def read(self, url: str, part: int, parts: int, start: int):
        """Samples of a shard (see :func:`_members`), reopened on an error where it failed."""
        done = 0
        for attempt in range(self.max_retries + 1):
            try:
                for sample in _members(url, part, parts, start + done):
                    done += 1
                    yield sample
                if parts == 1:  # read to its end: its count is known
                    self._counts.setdefault(url, start + done)
                return
            except (OSError, EOFError, tarfile.TarError) as err:
                if attempt == self.max_retries:
                    raise ShardError(
                        f"cannot read shard {url} of {self.pattern} after "
                        f"{self.max_retries + 1} tries: {type(err).__name__}: {_one_line(err)}"
                    ) from None
                logger.warning("shard %s: %s (try %d); retrying", url, _one_line(err), attempt + 1)
                time.sleep(min(0.5 * (attempt + 1), 5.0))

    def load(self, key: str, files: dict, bucket: Bucket, rng: np.random.Generator) -> Sample:
        video = files.get("mp4")
        if video is None:
            return Sample(key=key, bad=[(key, "NoVideo")])
        try:
            clip = decode_clip(
                io.BytesIO(video), bucket.frames, self.fps, rng=rng, timeout=self.decode_timeout
            )
        except VideoError as err:
            logger.warning("skipping %s: %s", key, err)
            return Sample(key=key, bad=[(key, type(err).__name__)])
        frames = resize_crop_frames(clip.frames, bucket.height, bucket.width)
        pixels = to_model_range(torch.from_numpy(frames).permute(3, 0, 1, 2))  # (3, F, H, W)
        return Sample(_caption(files), pixels=pixels, key=key)

    def __iter__(self) -> Iterator[list[tuple[int, Sample]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        readers: dict[int, _Lane] = {}
        t = 0
        while True:
            j, m = divmod(t, self.grad_accum)
            j += self.start
            bucket = self.buckets[j % len(self.buckets)]
            s = self.rank * self.grad_accum + m  # this micro-batch's slice of the global batch
            part = []
            for q in range(worker, bucket.batch_size, workers):
                lane = s * bucket.batch_size + q
                n = self.lane_position(lane, j)
                reader = readers.setdefault(lane, _Lane(lane, self.lanes, self))
                if reader.position != n or reader._it is None:
                    reader.seek(n)
                key, files = reader.next()
                rng = np.random.default_rng([self.seed, lane, n])
                part.append((q, self.load(key, files, bucket, rng)))
            yield part
            t += 1


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _keep(part):
    return part


class ShardBatches:
    """A process's :class:`~pixeldance.data.batch.Batch` per micro-step from :class:`ShardLanes`,
    decoded in ``num_workers`` DataLoader workers (0: in this process). The DataLoader takes
    one part from each worker in turn, so ``num_workers`` parts in a row make one micro-batch."""

    def __init__(self, lanes: ShardLanes, num_workers: int = 0):
        self.lanes, self.num_workers = lanes, num_workers

    def __iter__(self) -> Iterator[Batch]:
        if self.num_workers == 0:
            for part in self.lanes:
                yield _batch([part])
            return
        loader = torch.utils.data.DataLoader(
            self.lanes, batch_size=None, num_workers=self.num_workers, collate_fn=_keep
        )
        parts = iter(loader)
        while True:
            try:
                got = [next(parts) for _ in range(self.num_workers)]
            except ShardError as err:  # raised in a worker: its message carries a traceback
                raise ShardError(_last_line(str(err))) from None
            yield _batch(got)


def _last_line(message: str) -> str:
    line = message.strip().splitlines()[-1]
    return line.split(": ", 1)[1] if line.startswith(("ShardError", "pixeldance.")) else line


def _batch(parts: list[list[tuple[int, Sample]]]) -> Batch:
    return collate([s for _, s in sorted((x for p in parts for x in p), key=lambda x: x[0])])


def _caption(files: dict) -> str:
    if "txt" in files:
        return files["txt"].decode("utf-8", "replace").strip()
    if "json" in files:
        try:
            meta = json.loads(files["json"])
        except (ValueError, UnicodeDecodeError):
            return ""
        for key in ("caption", "text", "name"):
            if isinstance(meta, dict) and key in meta:
                return str(meta[key])
    return ""


def shard_batches(
    pattern: str | list[str],
    buckets: list[Bucket],
    fps: float,
    seed: int,
    rank: int,
    world_size: int,
    grad_accum: int,
    start: int,
    num_workers: int = 0,
    decode_timeout: float = 30.0,
    max_retries: int = 3,
) -> ShardBatches:
    """This process's micro-batches from shards, positioned after ``start`` global batches;
    warns (once, on rank 0) when there are fewer shards than lanes."""
    urls = expand_shards(pattern)
    lanes = ShardLanes(
        urls, buckets, fps, seed, rank, world_size, grad_accum, start, decode_timeout,
        max_retries, pattern if isinstance(pattern, str) else None,
    )  # fmt: skip
    if len(urls) < lanes.lanes and rank == 0:
        m = math.ceil(lanes.lanes / len(urls))
        logger.warning(
            "%d shards for %d readers (the global batch): lanes share shards, each reading "
            "every %d-th sample of one (each shard is read %d times an epoch); write at least "
            "%d shards to read each once",
            len(urls), lanes.lanes, m, m, lanes.lanes,
        )  # fmt: skip
    return ShardBatches(lanes, num_workers)
