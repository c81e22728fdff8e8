"""The training data stream: what each optimizer step consumes depends on the seed, the step and
the global batch only (not on how it is split among processes and micro-steps), resume lands
on the same samples, and start-up probes no file when the buckets need no sizes."""

import csv
from collections import Counter
from pathlib import Path

import pytest
import torch

from pixeldance.data import sizes as sizes_module
from pixeldance.data.buckets import parse_buckets
from pixeldance.data.datasets import BucketBatchSampler
from pixeldance.data.latents import write_index, write_shard
from pixeldance.train.config import config_from_dict
from pixeldance.train.stream import make_stream

VIDEOS_PER_BUCKET = (24, 16, 12)  # 52 clips: an epoch of global batches of 4 is 6 + 4 + 3
IMAGES = 20
GLOBAL_BATCH = 4
IMAGE_GLOBAL_BATCH = 4
SHAPES = [("square", 8, 8), ("landscape", 8, 16), ("portrait", 16, 8)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A latent cache by hand: every clip and image captioned with its own name."""
    root = tmp_path_factory.mktemp("cache")
    shards = []
    jobs = [("video", b, n) for b, n in enumerate(VIDEOS_PER_BUCKET)] + [("image", 0, IMAGES)]
    for kind, b, n in jobs:
        name = f"{kind}-{b}.safetensors"
        latents, text = torch.zeros(n, 1, 1 if kind == "image" else 2, 1, 1), torch.zeros(n, 1, 1)
        write_shard(root / name, latents, text, [f"{kind}{b}-{i}" for i in range(n)])
        shards.append({"file": name, "bucket": b, "count": n, "kind": kind})
    buckets = parse_buckets([dict(name=s, height=h, width=w, frames=2) for s, h, w in SHAPES])
    write_index(root, shards, buckets, {"vae": {"latent_channels": 1, "scaling_factor": 1.0}})
    return root


def config(data: dict, micro_batch: int, grad_accum: int, image_batch: int = 1):
    buckets = [
        dict(name=s, height=h, width=w, frames=2, batch_size=micro_batch) for s, h, w in SHAPES
    ]
    return config_from_dict(
        {
            "data": {"image_every": 3, "image_batch_size": image_batch, "buckets": buckets, **data},
            "optim": {"grad_accum": grad_accum},
            "run": {"seed": 5},
        }
    )


def consumed(cache: Path, world: int, grad_accum: int, start: int = 0, steps: int = 20):
    """Per optimizer step from ``start``: its kind and the captions all ranks trained on, with
    the shapes each micro-batch had; and each rank's own sequence of micro-batches."""
    slices = world * grad_accum
    cfg = config(
        {"latent_cache": str(cache)},
        GLOBAL_BATCH // slices,
        grad_accum,
        IMAGE_GLOBAL_BATCH // slices,
    )
    per_step: dict[int, dict] = {}
    per_rank = []
    for rank in range(world):
        stream, _ = make_stream(cfg, start, rank, world)
        seen = []
        for _ in range(steps * grad_accum):
            step, kind, batch = next(stream)
            seen.append((step, kind, batch.captions))
            entry = per_step.setdefault(
                step, {"kinds": set(), "samples": Counter(), "shapes": set()}
            )
            entry["kinds"].add(kind)
            entry["samples"].update(batch.captions)
            entry["shapes"].add(tuple(batch.latents.shape[2:]))
        per_rank.append(seen)
    return per_step, per_rank


def test_same_global_batch_same_samples_per_step_on_any_split(cache):
    """1 process with 4 clips, 2 with 2, 4 with 1, and 1 or 2 with gradient accumulation: the
    same samples at every optimizer step, each exactly once, one bucket per step."""
    reference, _ = consumed(cache, world=1, grad_accum=1)
    assert sorted(reference) == list(range(20))
    for world, accum in [(2, 1), (4, 1), (1, 2), (2, 2), (1, 4)]:
        per_step, _ = consumed(cache, world, accum)
        assert per_step.keys() == reference.keys()
        for step, entry in per_step.items():
            assert entry["kinds"] == reference[step]["kinds"]
            assert entry["samples"] == reference[step]["samples"], (world, accum, step)
    for step, entry in reference.items():
        kind = "image" if (step + 1) % 3 == 0 else "video"
        assert entry["kinds"] == {kind}
        assert sum(entry["samples"].values()) == 4 and set(entry["samples"].values()) == {1}
        assert all(c.startswith(kind) for c in entry["samples"])
        assert len(entry["shapes"]) == 1  # one bucket for the whole global batch
    # the stream moves through all of the data: 14 video steps of an epoch of 13 batches
    videos = Counter(c for e in reference.values() for c in e["samples"] if c.startswith("v"))
    assert len(videos) >= 48


def test_ranks_and_micro_steps_take_disjoint_slices(cache):
    per_step, per_rank = consumed(cache, world=2, grad_accum=2, steps=6)
    for step in range(6):
        slices = [captions for rank in per_rank for s, _, captions in rank if s == step]
        assert len(slices) == 4 and all(len(c) == 1 for c in slices)
        assert len({c[0] for c in slices}) == 4


@pytest.mark.parametrize("world,accum", [(1, 1), (2, 2)])
def test_resume_at_step_k_yields_what_an_uninterrupted_stream_yields(cache, world, accum):
    _, full = consumed(cache, world, accum, start=0, steps=20)
    for k in (1, 5, 13, 17):
        _, resumed = consumed(cache, world, accum, start=k, steps=20 - k)
        for rank in range(world):
            assert resumed[rank] == full[rank][k * accum :], (k, rank)


def test_sampler_global_batches_do_not_depend_on_the_split():
    rb = [0, 1, 2, 0, 1, 0, 0, 1, 2, 2, 0, 1] * 5
    buckets = parse_buckets(
        [dict(name=s, height=h, width=w, frames=1, batch_size=2) for s, h, w in SHAPES]
    )
    one = BucketBatchSampler(rb, buckets, seed=3)
    halves = parse_buckets([dict(name=s, height=h, width=w, batch_size=1) for s, h, w in SHAPES])
    two = [BucketBatchSampler(rb, halves, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert one.per_epoch == two[0].per_epoch == 12 + 10 + 7  # 25, 20 and 15 records in batches of 2
    for j in (0, 5, 28, 29, 100):
        assert one.global_batch(j) == two[0].global_batch(j)
    it0, it1, ref = iter(two[0]), iter(two[1]), iter(one)
    for _ in range(60):  # two epochs and more
        assert sorted(next(it0) + next(it1)) == sorted(next(ref))
    with pytest.raises(ValueError, match="no bucket holds a whole global batch"):
        BucketBatchSampler([0, 0, 0], buckets, world_size=2)
    with pytest.raises(ValueError, match="only 3 are configured"):
        BucketBatchSampler([0, 3], buckets)


def webvid_manifest(root: Path, rows: int) -> Path:
    with open(root / "webvid.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        for i in range(rows):
            writer.writerow(
                [1000 + i, f"http://x/{i}.mp4", "PT00H00M09S", "000001_000050", f"c{i}"]
            )
    return root / "webvid.csv"


@pytest.fixture
def count_probes(monkeypatch):
    probed = []

    def counting(path, image=False):
        probed.append(path)
        return 0, 0

    monkeypatch.setattr(sizes_module, "probe_size", counting)
    return probed


def test_one_bucket_without_size_columns_probes_no_file_at_start(tmp_path, count_probes):
    """WebVid columns, no sizes, one bucket: no file is probed; the files do not exist, so the
    first batch is empty, its clips counted as bad, and training would go on."""
    manifest = webvid_manifest(tmp_path, 40)
    data = {"manifest": str(manifest), "max_retries": 1, "num_workers": 2}
    cfg = config(data, micro_batch=2, grad_accum=1)
    cfg.data.buckets = cfg.data.buckets[:1]
    for rank in (0, 1):
        stream, _ = make_stream(cfg, 0, rank, 2)
        step, kind, batch = next(stream)  # DataLoader workers share the mapped manifest
        assert (step, kind, batch.pixels) == (0, "video", None)
        assert len(batch.bad) == 4
    assert count_probes == []


def test_several_buckets_without_sizes_probe_once_for_all_ranks(tmp_path, count_probes):
    manifest = webvid_manifest(tmp_path, 40)
    cfg = config({"manifest": str(manifest)}, micro_batch=2, grad_accum=1)
    for rank in (0, 1):
        make_stream(cfg, 0, rank, 2)
    assert len(count_probes) == 40 and len(set(count_probes)) == 40


def test_latent_cache_rows_in_flat_arrays(cache):
    from pixeldance.data.latents import LatentCache

    videos = LatentCache(cache, "video")
    assert len(videos) == 52 and videos.record_buckets.tolist() == [0] * 24 + [1] * 16 + [2] * 12
    got = [videos[(k, 0)].caption for k in (0, 23, 24, 30, 51, 52)]
    assert got == ["video0-0", "video0-23", "video1-0", "video1-6", "video2-11", "video0-0"]
    assert [LatentCache(cache, "image")[(k, 0)].caption for k in (3, 23)] == ["image0-3"] * 2
