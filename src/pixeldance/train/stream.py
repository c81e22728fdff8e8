"""The training data stream: per optimizer step one global batch (videos, or images every Nth
step), split among processes and accumulation micro-steps; resumable at any step, and staged
(:mod:`pixeldance.train.stages`): each stage's steps draw from its own buckets.

The samples optimizer step k consumes are a function of the seed, k and the global batch
(``bucket.batch_size x processes x optim.grad_accum``) only, so one process with a micro-batch
of 2b and two processes with b each train on the same samples at every step, from a manifest,
a latent cache or webdataset shards (read by lanes, see ``data.shards``).
"""

from __future__ import annotations

import logging

import torch

from ..data.batch import collate
from ..data.buckets import Bucket, image_buckets
from ..data.datasets import (
    BucketBatchSampler,
    ImageDataset,
    Mixer,
    VideoClipDataset,
    batches_before,
)
from ..data.latents import LatentCache, read_empty_text
from ..data.manifest import read_image_records, read_video_records
from ..data.sizes import record_buckets
from .config import Config
from .stages import PlannedStage, plan, stage_at

logger = logging.getLogger(__name__)


def _latent_caches(cfg: Config, buckets: list[Bucket], vae) -> tuple[LatentCache, LatentCache]:
    made_for = {}
    if vae is not None:
        from ..encoders import latent_channels

        made_for = {
            "scaling_factor": float(vae.config.scaling_factor),
            "latent_channels": int(latent_channels(vae)),
        }
    cache = LatentCache(cfg.data.latent_cache, "video", **made_for)
    if cache.rescale != 1.0:
        logger.info(
            "latent cache made with scaling factor %s; rescaling by %.4g to the model's %s",
            cache.index["vae"]["scaling_factor"],
            cache.rescale,
            made_for["scaling_factor"],
        )
    icache = LatentCache(cfg.data.latent_cache, "image", **made_for)
    return cache.select(buckets), icache.select(buckets)


def make_stream(cfg: Config, start_step: int, rank: int = 0, world: int = 1, vae=None):
    """The data stream of a run, positioned at optimizer step ``start_step`` for this rank.

    Each ``next()`` gives one micro-step's ``(step, kind, batch)``; ``cfg.optim.grad_accum`` of
    them make optimizer step ``step``. Returns ``(stream, empty_text)`` where ``empty_text`` is
    the cached empty-prompt state when training from a latent cache (else None). With ``vae``
    given, a latent cache is checked against it (latent channels) and rescaled to its scaling
    factor.
    """
    stages = plan(cfg)

    def build(stage: PlannedStage, local_start: int):
        return stage_stream(
            cfg, list(stage.buckets), stage.image_every, local_start, rank, world, vae
        )

    stream = StagedStream(build, stages, start_step, _has_images(cfg))
    return stream, _empty_text(cfg)


def _has_images(cfg: Config) -> bool:
    """Whether the run has an image source, whichever stage it starts in."""
    d = cfg.data
    return bool(d.images) or bool(d.latent_cache and len(LatentCache(d.latent_cache, "image")))


class StagedStream:
    """Micro-steps ``(step, kind, batch)`` across the stages of a run: the stream of the stage
    that step ``step`` belongs to, started at the step's place within it (built when the run
    reaches the stage, so a resumed run starts each stage where an uninterrupted one would)."""

    def __init__(self, build, stages: list[PlannedStage], start_step: int, has_images: bool):
        self.build, self.stages = build, stages
        self.stage = stage_at(stages, start_step)
        self.mixer = build(self.stage, start_step - self.stage.start)
        # images reach the UNet in some stage (DDP then looks for unused parameters), decided
        # from the whole run, not the stage it starts in
        self.image_every = max(s.image_every for s in stages) if has_images else 0

    def __iter__(self):
        return self

    def __next__(self):
        step = self.stage.start + self.mixer.step  # the mixer counts steps within its stage
        if step >= self.stage.end and self.stage is not self.stages[-1]:
            self.stage = stage_at(self.stages, step)
            self.mixer = self.build(self.stage, step - self.stage.start)
        local, kind, batch = next(self.mixer)
        return self.stage.start + local, kind, batch


def _empty_text(cfg: Config):
    """The cached empty prompt's text states of a latent cache (None for other data)."""
    if not cfg.data.latent_cache:
        return None
    return read_empty_text(cfg.data.latent_cache)


def stage_stream(
    cfg: Config,
    buckets: list[Bucket],
    image_every: int,
    start_step: int,
    rank: int = 0,
    world: int = 1,
    vae=None,
):
    """A :class:`Mixer` over ``buckets`` (an image batch every ``image_every``-th step),
    positioned at optimizer step ``start_step`` of its stage for this rank."""
    d = cfg.data
    seed, accum = cfg.run.seed, cfg.optim.grad_accum
    still_buckets = image_buckets(buckets, d.image_batch_size)
    videos = images = None  # (dataset, bucket of each record, buckets, collate)
    if d.latent_cache:
        cache, icache = _latent_caches(cfg, buckets, vae)
        videos = (cache, cache.record_buckets, buckets, collate)
        if len(icache) and image_every:
            images = (icache, icache.record_buckets, still_buckets, collate)
    elif d.manifest:
        records = read_video_records(d.manifest)
        ds = VideoClipDataset(records, buckets, d.fps, seed, d.max_retries, d.decode_timeout)
        videos = (ds, record_buckets(records, buckets, workers=d.num_workers), buckets, collate)
    elif not d.shards:
        raise ValueError(
            "no training data: set data.manifest, data.shards or data.latent_cache (or pass --data)"
        )
    if images is None and d.images and image_every:
        irecords = read_image_records(d.images)
        ids = ImageDataset(irecords, still_buckets, seed=seed + 1, max_retries=d.max_retries)
        rb = record_buckets(irecords, still_buckets, images=True, workers=d.num_workers)
        images = (ids, rb, still_buckets, collate)
    image_every = image_every if images is not None else 0
    videos_done, images_done = batches_before(start_step, image_every)

    def loader(source, seed: int, start: int):
        dataset, record_bucket, bkts, collate_fn = source
        sampler = BucketBatchSampler(
            record_bucket, bkts, seed, start, rank=rank, world_size=world, grad_accum=accum,
            merge=not isinstance(dataset, LatentCache),  # latents are fixed at their size
        )  # fmt: skip
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=d.num_workers,
            collate_fn=collate_fn,
            persistent_workers=False,
        )

    if videos is not None:
        video_batches = loader(videos, seed, videos_done)
    else:
        from ..data.shards import shard_batches

        video_batches = shard_batches(
            d.shards, buckets, d.fps, seed, rank, world, accum, videos_done, d.num_workers,
            d.decode_timeout, d.max_retries,
        )  # fmt: skip
    image_batches = loader(images, seed + 1, images_done) if images is not None else None
    return Mixer(video_batches, image_batches, image_every, start_step, accum)
