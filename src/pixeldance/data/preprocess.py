"""``pixeldance preprocess``: clips and captions encoded once into a latent cache
(:mod:`pixeldance.data.latents`), split across processes and nodes, resumable, merged into one
cache.

The work is every (clip or image, bucket set) to encode, in a fixed order, cut into parts of
``part_size`` items; part ``p`` is encoded by rank ``p % world``. A part is a function of the
data, the config and its number only, so the cache is the same whatever the number of
processes (or jobs) that made it, and a part once written is never made again.

The parts live in a work folder beside the cache, ``{out}.preprocess-work/``: ``plan.json``
(what is being made: a part from another plan is never mixed in), ``empty_text.safetensors``
and one ``part-NNNNNN/`` folder per finished part (its shards, then ``part.json`` last). A part
being written is ``.part-NNNNNN.partial``, removed on any error or interrupt (and, after a
SIGKILL, when the command starts again). The merge hard-links every part's shards, in part
order, into a new folder that :func:`pixeldance.owned.replacing` swaps in as ``out``, then
removes the work folder. Decoding runs in ``workers`` DataLoader processes per rank, ahead of
the encoder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .buckets import Bucket, image_buckets
from .latents import LatentCacheWriter
from .parts import (
    NothingEncoded,
    make_plan,
    merge_parts,
    open_work,
    part_done,
    part_folder,
    read_plan,
    work_folder,
)

__all__ = ["NothingEncoded", "merge_parts", "preprocess", "work_folder"]

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One kind (video or image) of one bucket set: ``length`` items, item ``i`` being the
    dataset's key ``(i, bucket of record i % records)``; its buckets start at ``offset`` in the
    cache's flat bucket list."""

    kind: str
    dataset: object
    record_bucket: np.ndarray
    length: int
    offset: int


class WorkItems(torch.utils.data.Dataset):
    """Every item of every job in one numbering: ``items[n]`` -> ``(n, sample)``."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self.starts = np.cumsum([0] + [j.length for j in jobs])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def job_of(self, n: int) -> tuple[Job, int]:
        j = int(np.searchsorted(self.starts, n, side="right")) - 1
        return self.jobs[j], n - int(self.starts[j])

    def __getitem__(self, n: int):
        job, i = self.job_of(n)
        bucket = int(job.record_bucket[i % len(job.record_bucket)])
        return n, job.dataset[(i, bucket)]


def plan_jobs(sets, manifest, images, fps: float, seed: int, clips_per_video: int) -> list[Job]:
    """The jobs of a preprocess, in the order their items are numbered."""
    from .datasets import ImageDataset, VideoClipDataset
    from .manifest import read_image_records, read_video_records
    from .sizes import record_buckets

    records = read_video_records(manifest) if manifest is not None else None
    irecords = read_image_records(images) if images is not None else None
    jobs, offset = [], 0
    for bucket_set in sets:
        if records is not None and len(records):
            ds = VideoClipDataset(records, bucket_set, fps=fps, seed=seed)
            rb = np.asarray(record_buckets(records, bucket_set))
            jobs.append(Job("video", ds, rb, clips_per_video * len(records), offset))
        if irecords is not None and len(irecords):
            ibuckets = image_buckets(bucket_set)
            ids = ImageDataset(irecords, ibuckets, seed=seed)
            rb = np.asarray(record_buckets(irecords, ibuckets, images=True))
            jobs.append(Job("image", ids, rb, len(irecords), offset))
        offset += len(bucket_set)
    return jobs


def _same(x):
    return x


class _Part:
    """One part being written: samples batched by shape, encoded, written per bucket."""

    def __init__(self, work: Path, p: int, flat: list[Bucket], encode: Callable, batch: int):
        from .datasets import BadDataCounter

        self.final, self.tmp = part_folder(work, p), work / f".part-{p:06d}.partial"
        shutil.rmtree(self.tmp, ignore_errors=True)  # left by a kill
        self.tmp.mkdir()
        self.flat, self.encode, self.batch = flat, encode, batch
        self.shards: list[dict] = []
        self.writers: dict[str, LatentCacheWriter] = {}
        self.bad, self.pending, self.count = BadDataCounter(), [], 0

    def add(self, kind: str, bucket: int, sample) -> None:
        self.bad.merge(sample.bad)
        if sample.pixels is None:
            return
        if self.pending and (
            self.pending[0][0] != kind or self.pending[0][1].shape != sample.pixels.shape
        ):
            self.flush()  # a batch holds one kind and one shape
        self.pending.append((kind, sample.pixels, sample.caption, bucket))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        kind = self.pending[0][0]
        latents, text = self.encode([x[1] for x in self.pending], [x[2] for x in self.pending])
        if kind not in self.writers:
            writer = LatentCacheWriter(self.tmp, self.flat, 1 << 30, kind)
            writer.shards = self.shards  # one numbering across kinds
            self.writers[kind] = writer
        for j, (_, _, caption, bucket) in enumerate(self.pending):
            self.writers[kind].add(bucket, latents[j], text[j], caption)
        self.count += len(self.pending)
        self.pending.clear()

    def finish(self) -> None:
        self.flush()
        for writer in self.writers.values():
            writer.close()
        meta = {"shards": self.shards, "bad_files": self.bad.counts, "count": self.count}
        (self.tmp / "part.json").write_text(json.dumps(meta, indent=1))
        os.replace(self.tmp, self.final)

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def encode_parts(
    work: Path,
    items: WorkItems,
    parts: list[int],
    part_size: int,
    flat: list[Bucket],
    encode: Callable,
    batch_size: int = 16,
    workers: int = 0,
    progress: bool = True,
    desc: str = "encoding",
) -> int:
    """Encode and write ``parts`` (each complete or not at all); returns the items read."""
    from tqdm import tqdm

    order = [n for p in parts for n in range(p * part_size, min((p + 1) * part_size, len(items)))]
    if not order:
        return 0
    loader = torch.utils.data.DataLoader(
        items, sampler=order, batch_size=None, num_workers=workers, collate_fn=_same
    )
    part = None
    try:
        for n, sample in tqdm(loader, total=len(order), desc=desc, disable=not progress):
            p = n // part_size
            if part is None or part.final != part_folder(work, p):
                if part is not None:
                    part.finish()
                part = _Part(work, p, flat, encode, batch_size)
            job, i = items.job_of(n)
            bucket = int(job.record_bucket[i % len(job.record_bucket)])
            part.add(job.kind, job.offset + bucket, sample)
        if part is not None:
            part.finish()
    except BaseException:
        if part is not None:
            part.abandon()
        raise
    return len(order)


@torch.no_grad()
def preprocess(
    out: str | os.PathLike,
    vae,
    prompt_encoder,
    buckets: list[Bucket] | list[list[Bucket]],
    manifest: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    fps: float = 4.0,
    clips_per_video: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
    dtype: torch.dtype | None = None,
    *,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
    part_size: int = 256,
    restart: bool = False,
    model_key: str = "",
    barrier: Callable[[], None] | None = None,
) -> dict | None:
    """Encode rank ``rank`` of ``world``'s parts of a manifest's clips (and captioned images)
    for a latent cache at ``out``; with ``world`` 1, or with a ``barrier`` (processes started
    together), the main rank then merges every part into ``out`` and returns the index (the
    other ranks, and jobs started apart, return None: merge with :func:`merge_parts`).

    ``buckets`` is one set of buckets, or one per training stage (each clip is encoded at each
    set's sizes); each video gives ``clips_per_video`` clips with different random starts; bad
    files are skipped and counted. The encoders run on ``device`` in ``dtype`` (None: as they
    are); the cache holds float16. ``model_key`` names the encoders (a part made by others is
    not reused). ``restart`` discards a work folder of another plan."""
    from ..encoders import encode_frames, latent_channels

    out = Path(out)
    sets = [list(buckets)] if buckets and isinstance(buckets[0], Bucket) else list(buckets)
    flat = [b for bucket_set in sets for b in bucket_set]
    items = WorkItems(plan_jobs(sets, manifest, images, fps, seed, clips_per_video))
    info = {
        "fps": fps,
        "text_tokens": int(prompt_encoder.max_length),
        "vae": {
            "class": type(vae).__name__,
            "latent_channels": int(latent_channels(vae)),
            "scaling_factor": float(vae.config.scaling_factor),
        },
    }
    plan = make_plan(
        len(items), part_size, flat, info, manifest=manifest, images=images,
        clips_per_video=clips_per_video, seed=seed, model=model_key, dtype=str(dtype),
    )  # fmt: skip
    work = work_folder(out)
    if rank == 0:
        done = open_work(work, plan, restart)
        if done:
            logger.warning("resuming: %d of %d parts already done in %s", done, plan["parts"], work)
    if barrier is not None:
        barrier()  # the work folder is ready
    if read_plan(work) is None or read_plan(work)["fingerprint"] != plan["fingerprint"]:
        open_work(work, plan, restart=False)  # a job started apart: the same checks
    vae.to(device=device, dtype=dtype)
    prompt_encoder.text_encoder.to(device=device, dtype=dtype)
    if not (work / "empty_text.safetensors").exists():
        from ..files import atomic_path

        with atomic_path(work / "empty_text.safetensors") as tmp:
            save_file({"text": prompt_encoder.encode([""]).half().contiguous()}, tmp)

    def encode(pixels: list[torch.Tensor], captions: list[str]):
        latents = encode_frames(vae, torch.stack(pixels).to(device))
        return latents, prompt_encoder.encode(captions)

    mine = [p for p in range(plan["parts"]) if p % world == rank and not part_done(work, p)]
    started = time.perf_counter()
    try:
        n = encode_parts(
            work, items, mine, part_size, flat, encode, batch_size, workers, progress,
            desc=f"encoding (rank {rank} of {world})" if world > 1 else "encoding",
        )  # fmt: skip
    except BaseException:
        kept = sum(part_done(work, p) for p in range(plan["parts"]))
        if world == 1 and not kept:
            shutil.rmtree(work, ignore_errors=True)  # nothing worth continuing
        elif kept:
            logger.warning(
                "stopped: %d of %d parts are done in %s; the same command continues from them",
                kept, plan["parts"], work,
            )  # fmt: skip
        raise
    took = time.perf_counter() - started
    if n:
        logger.info("rank %d: %d items in %.2f s (%.2f items/s)", rank, n, took, n / took)
    if barrier is not None:
        barrier()  # every part is written
    if rank != 0 or (world > 1 and barrier is None):
        return None
    return merge_parts(out)
