"""Webdataset shards: the samples of each step do not depend on the process or worker count,
resume seeks without decoding what it skips, fewer shards than readers and unreadable shards
are handled in one line (issue 32 item 1, issue 30 item 2)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from helpers import ROOT, cli_env
from pixeldance.data import shards as shards_module
from pixeldance.data.batch import Batch
from pixeldance.data.buckets import Bucket
from pixeldance.data.shards import ShardBatches, ShardError, ShardLanes, expand_shards
from shard_sets import pattern, write_shards

pytest.importorskip("webdataset")


def buckets(batch_size: int) -> list[Bucket]:
    return [
        Bucket("square", 16, 16, frames=2, batch_size=batch_size),
        Bucket("wide", 16, 24, frames=2, batch_size=batch_size),
    ]


def steps(urls, batch, world, accum, workers, n_steps, start=0) -> list[list[str]]:
    """The keys each optimizer step trains on, all processes' micro-batches in rank order."""
    per_rank = []
    for rank in range(world):
        lanes = ShardLanes(urls, buckets(batch), 4.0, 7, rank, world, accum, start, max_retries=0)
        it = iter(ShardBatches(lanes, workers))
        per_rank.append([next(it) for _ in range(n_steps * accum)])
    out = []
    for k in range(n_steps):
        keys = []
        for r in range(world):
            for m in range(accum):
                b = per_rank[r][k * accum + m]
                assert isinstance(b, Batch) and b.pixels.shape[0] == batch == len(b.keys)
                assert b.captions == [f"caption {key}" for key in b.keys]
                keys += b.keys
        out.append(keys)
    return out


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> list[str]:
    return write_shards(tmp_path_factory.mktemp("shards"), n_shards=5, per_shard=3)


def test_same_samples_per_step_on_any_process_and_worker_count(five):
    """Global batch 4 over 6 steps (two buckets, so lanes move by the bucket of each step):
    1 process x batch 4, 2 x 2, 4 x 1, 1 x 2 with accumulation 2, 0 or 2 workers."""
    ref = steps(five, 4, 1, 1, 0, 6)
    assert all(len(set(keys)) == 4 for keys in ref)
    assert len({k for keys in ref for k in keys}) == 15  # every clip, 24 places over 15 clips
    assert steps(five, 4, 1, 1, 2, 6) == ref
    assert steps(five, 2, 2, 1, 0, 6) == ref
    assert steps(five, 2, 2, 1, 2, 6) == ref
    assert steps(five, 1, 4, 1, 0, 6) == ref
    assert steps(five, 2, 1, 2, 2, 6) == ref


def test_resume_seeks_and_decodes_only_what_it_trains_on(five, monkeypatch):
    """Started at step 5, the stream gives what the whole one gives from step 5, and decodes
    only the clips it yields (the 20 places before it are skipped unread)."""
    ref = steps(five, 2, 2, 1, 0, 8)
    decoded = []
    decode = shards_module.decode_clip

    def counting(*args, **kwargs):
        decoded.append(1)
        return decode(*args, **kwargs)

    monkeypatch.setattr(shards_module, "decode_clip", counting)
    assert steps(five, 2, 2, 1, 0, 3, start=5) == ref[5:]
    assert len(decoded) == 3 * 4
    assert steps(five, 2, 2, 1, 2, 3, start=5) == ref[5:]  # in workers too


def test_pixels_are_the_same_with_workers(five):
    """Worker processes decode the same clip starts and crops as the main process."""
    a = next(iter(ShardBatches(ShardLanes(five, buckets(4), seed=3), 0)))
    b = next(iter(ShardBatches(ShardLanes(five, buckets(4), seed=3), 2)))
    assert a.keys == b.keys and a.pixels.equal(b.pixels)


def test_fewer_shards_than_readers_warns_with_a_plan(tmp_path, caplog):
    urls = write_shards(tmp_path, n_shards=2, per_shard=3)
    with caplog.at_level(logging.WARNING, "pixeldance.data.shards"):
        batches = shards_module.shard_batches(pattern(tmp_path, 2), buckets(4), 4.0, 0, 0, 1, 1, 0)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "2 shards for 4 readers" in warning and "at least 4 shards" in warning
    it = iter(batches)
    first = [next(it).keys for _ in range(4)]
    assert all(len(set(k)) == 4 for k in first)
    assert len({k for keys in first for k in keys}) == 6  # both shards, all their clips
    assert len(urls) == 2


@pytest.mark.parametrize(
    "bad,says",
    [
        ("shards/{00000..00003.tar", "malformed brace pattern"),
        ("shards/x}{.tar", "malformed brace pattern"),
        ("shards/none.tar", "1 of 1 shards .* missing"),
        ("{DIR}/shard-{00000..00003}.tar", "3 of 4 shards"),
    ],
)
def test_bad_patterns_are_refused_before_any_work(tmp_path, bad, says):
    write_shards(tmp_path, n_shards=1, per_shard=1)
    with pytest.raises(ShardError, match=says):
        expand_shards(bad.replace("{DIR}", str(tmp_path)))


def test_cli_refuses_a_malformed_pattern_in_one_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pixeldance.cli", "train", "--config"]
    cmd += [str(ROOT / "configs" / "tiny.yaml"), "--data", f"{tmp_path}/s-{{0..3.tar"]
    cmd += ["--output-dir", str(out)]
    done = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "malformed brace pattern" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_shard_is_retried_then_named(tmp_path, workers):
    """A shard that is not a tar file: tried 1 + max_retries times, then one line naming it and
    the pattern (once: a warning, and training blocked forever)."""
    urls = write_shards(tmp_path, n_shards=2, per_shard=2)
    with open(urls[1], "wb") as f:
        f.write(b"not a tar file" * 100)
    lanes = ShardLanes(urls, buckets(2), max_retries=2, pattern="shard-{00000..00001}.tar")
    started = time.monotonic()
    with pytest.raises(ShardError) as err:
        for _ in ShardBatches(lanes, workers):
            pass
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert "shard-00001.tar" in message and "shard-{00000..00001}.tar" in message
    assert "after 3 tries" in message
    assert time.monotonic() - started < 60


def test_the_training_stream_reads_shards_as_batches(tmp_path):
    """A run on webdataset shards: the stream gives whole Batches (once failed: the
    DataLoader collated each already-collated batch again)."""
    from pixeldance.train.config import load_config
    from pixeldance.train.stream import make_stream

    write_shards(tmp_path, n_shards=2, per_shard=2)
    bucket = "{name: b, height: 16, width: 24, frames: 2, batch_size: 2}"
    shards = f"data.shards={pattern(tmp_path, 2)}"
    cfg = load_config(None, [shards, "data.image_every=0", f"data.buckets=[{bucket}]"])
    stream, _ = make_stream(cfg, 0)
    step, kind, batch = next(stream)
    assert (step, kind) == (0, "video") and isinstance(batch, Batch)
    assert batch.pixels.shape == (2, 3, 2, 16, 24) and batch.latents is None
    assert batch.captions == [f"caption {k}" for k in batch.keys] and len(batch) == 2
