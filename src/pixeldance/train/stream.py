"""The training data stream: video batches and an image batch every Nth step, resumable."""

from __future__ import annotations

import logging

import torch

from ..data.buckets import Bucket
from ..data.datasets import (
    BucketBatchSampler,
    ImageDataset,
    Mixer,
    VideoClipDataset,
    batches_before,
    collate,
    read_image_records,
    read_manifest,
    record_buckets,
)
from ..data.latents import LatentCache, collate_latents
from .config import Config

logger = logging.getLogger(__name__)


def _loader(dataset, record_bucket, buckets, seed, start, rank, world, workers, collate_fn):
    sampler = BucketBatchSampler(
        record_bucket, buckets, seed=seed, start=start, rank=rank, world_size=world
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        persistent_workers=False,
    )


def make_stream(
    cfg: Config,
    buckets: list[Bucket],
    start_micro_step: int,
    rank: int = 0,
    world: int = 1,
    vae=None,
):
    """A :class:`Mixer` positioned at micro-step ``start_micro_step`` for this rank.

    Returns ``(mixer, empty_text)`` where ``empty_text`` is the cached empty-prompt state when
    training from a latent cache (else None). With ``vae`` given, a latent cache is checked
    against it (latent channels) and rescaled to its scaling factor.
    """
    d = cfg.data
    seed = cfg.run.seed
    image_buckets = [Bucket(b.name, b.height, b.width, 1, d.image_batch_size) for b in buckets]
    empty_text = None
    images = None
    icache = None
    if d.latent_cache:
        made_for = {}
        if vae is not None:
            from ..encoders import latent_channels

            made_for = {
                "scaling_factor": float(vae.config.scaling_factor),
                "latent_channels": int(latent_channels(vae)),
            }
        cache = LatentCache(d.latent_cache, "video", **made_for)
        if cache.rescale != 1.0:
            logger.info(
                "latent cache made with scaling factor %s; rescaling by %.4g to the model's %s",
                cache.index["vae"]["scaling_factor"],
                cache.rescale,
                made_for["scaling_factor"],
            )
        icache = LatentCache(d.latent_cache, "image", **made_for)
    # with no image source the mixer takes videos only: the data position must agree
    has_images = d.image_every > 0 and (bool(d.images) or (icache is not None and len(icache) > 0))
    videos_done, images_done = batches_before(start_micro_step, d.image_every if has_images else 0)
    if d.latent_cache:
        cache.buckets = buckets
        empty_text = cache.empty_text
        videos = _loader(
            cache,
            cache.record_buckets,
            buckets,
            seed,
            videos_done,
            rank,
            world,
            d.num_workers,
            collate_latents,
        )
        if len(icache) and d.image_every:
            images = _loader(
                icache,
                icache.record_buckets,
                image_buckets,
                seed + 1,
                images_done,
                rank,
                world,
                d.num_workers,
                collate_latents,
            )
    elif d.manifest:
        records = read_manifest(d.manifest)
        ds = VideoClipDataset(records, buckets, d.fps, seed, d.max_retries, d.decode_timeout)
        videos = _loader(
            ds,
            record_buckets(records, buckets),
            buckets,
            seed,
            videos_done,
            rank,
            world,
            d.num_workers,
            collate,
        )
    elif d.shards:
        from ..data.shards import ShardClipStream

        stream = ShardClipStream(
            d.shards,
            buckets,
            d.fps,
            seed,
            skip_batches=videos_done,
            decode_timeout=d.decode_timeout,
        )
        videos = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=d.num_workers, collate_fn=collate
        )
    else:
        raise ValueError(
            "no training data: set data.manifest, data.shards or data.latent_cache (or pass --data)"
        )
    if images is None and d.images and d.image_every:
        irecords = read_image_records(d.images)
        ids = ImageDataset(irecords, image_buckets, seed=seed + 1, max_retries=d.max_retries)
        images = _loader(
            ids,
            record_buckets(irecords, image_buckets, images=True),
            image_buckets,
            seed + 1,
            images_done,
            rank,
            world,
            d.num_workers,
            collate,
        )
    return Mixer(videos, images, d.image_every, start_micro_step), empty_text
