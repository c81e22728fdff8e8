"""Small data (issue 32 item 6): merge small buckets into the nearest one, or draw their
global batches with replacement within the bucket? A tiny A/B on Dancing Shapes.

Both arms train the tiny config (``configs/tiny.yaml``, 3 aspect buckets, micro-batch 2,
accumulation 4: a global batch of 8, as 2 processes x 2 x accumulation 2) on the same
clips, seed and steps, in this process. Only the batch sampler differs:

- merge: the project's policy (:func:`pixeldance.data.datasets.merge_small_buckets`);
- replace: no merge; a bucket with fewer clips than its global batch emits one global batch
  an epoch, its clips shuffled and drawn again (in the same shuffled order) until the batch
  is full, so every clip trains once an epoch at its own size, some twice in the batch.

Then each final model (EMA weights, as saved) is scored by its training loss on clips at
their own bucket's size, per bucket, for the training clips and for held-out clips, with the
same noise, timesteps and instruction draws for both arms (``--draws`` per clip). Last line:
one JSON object.

    python docs/experiments/small_data_policy.py --out /tmp/small_data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pixeldance.data.batch import collate
from pixeldance.data.datasets import BucketBatchSampler, VideoClipDataset
from pixeldance.data.manifest import read_video_records
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.data.sizes import record_buckets
from pixeldance.train import loop, stream
from pixeldance.train.config import load_config
from pixeldance.train.outputs import whole_unet
from pixeldance.train.step import batch_inputs, compute_loss

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"


class ReplaceSampler(BucketBatchSampler):
    """:class:`BucketBatchSampler` without the merge: a small bucket's global batch is its
    clips, shuffled, repeated up to the global batch (one such batch an epoch)."""

    def __init__(self, record_bucket, buckets, seed=0, start=0, rank=0, world_size=1, grad_accum=1):
        self.record_bucket = np.asarray(record_bucket, np.int16)
        self.buckets, self.seed, self.start = buckets, seed, start
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.slices = world_size * grad_accum
        self.global_sizes = [b.batch_size * self.slices for b in buckets]
        self.merged = []
        counts = np.bincount(self.record_bucket, minlength=len(buckets))
        self.per_epoch = int(
            sum(max(c // g, int(c > 0)) for c, g in zip(counts, self.global_sizes, strict=True))
        )
        self._epoch = None

    def _plan(self, epoch: int):
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1:]
        n = len(self.record_bucket)
        order = np.arange(n, dtype=np.int64)
        np.random.default_rng([self.seed, epoch]).shuffle(order)
        dealt = self.record_bucket[order]
        positions, done, bucket_of, row_of = [], [], [], []
        for b, g in enumerate(self.global_sizes):
            pos = np.flatnonzero(dealt == b)
            if 0 < len(pos) < g:  # small: drawn again, in order, up to the global batch
                last = pos[-1:]  # the batch is emitted when its last clip is dealt
                pos = np.resize(pos, g)
            else:
                last = None
            m = len(pos) // g
            positions.append(pos)
            done.append(pos[g - 1 : m * g : g] if last is None else last)
            bucket_of.append(np.full(m, b, np.int16))
            row_of.append(np.arange(m))
        fill = np.argsort(np.concatenate(done), kind="stable")
        bucket_of, row_of = np.concatenate(bucket_of)[fill], np.concatenate(row_of)[fill]
        self._epoch = (epoch, order, positions, bucket_of, row_of)
        return self._epoch[1:]


def train_arm(policy: str, data: Path, out: Path, steps: int, seed: int):
    """Train one arm; returns (per-step losses, per-step bucket heights x widths, final UNet)."""
    stream.BucketBatchSampler = ReplaceSampler if policy == "replace" else BucketBatchSampler
    sets = [f"data.manifest={data / 'manifest.csv'}", "data.images=null", "data.image_every=0"]
    sets += [f"optim.max_steps={steps}", "optim.grad_accum=4", f"run.seed={seed}"]
    sets += [f"run.output_dir={out}", "run.checkpoint_every=0", "run.sample_every=0"]
    cfg = load_config(TINY, sets)
    shapes, kept = [], {}
    micro_loss, save_final = loop.micro_batch_loss, loop.save_final

    def record(run, batch, generator):
        shapes.append(tuple(batch.pixels.shape[-2:]))
        return micro_loss(run, batch, generator)

    def grab(run):
        kept["run"] = run
        return save_final(run)

    losses, train_step = [], loop.train_step
    loop.micro_batch_loss, loop.save_final = record, grab
    loop.train_step = lambda run: losses.append(train_step(run)) or losses[-1]
    try:
        loop.train(cfg)
    finally:
        loop.micro_batch_loss, loop.save_final, loop.train_step = micro_loss, save_final, train_step
        stream.BucketBatchSampler = BucketBatchSampler
    run = kept["run"]
    return losses, shapes[:: cfg.optim.grad_accum], run, whole_unet(run.base, run.ema, True)


@torch.no_grad()
def score(run, unet, data: Path, draws: int) -> dict:
    """Mean loss per bucket on ``data``'s clips at their own bucket's size (fixed draws)."""
    cfg = run.cfg
    buckets = cfg.data.buckets
    records = read_video_records(data / "manifest.csv")
    bucket_of = record_buckets(records, buckets)
    ds = VideoClipDataset(records, buckets, cfg.data.fps, seed=0)
    unet.eval()
    out = {}
    for b, bucket in enumerate(buckets):
        ks = np.flatnonzero(bucket_of == b)
        vals = []
        for k in ks:
            inputs = batch_inputs(
                collate([ds[(int(k), b)]]), run.comps.vae, run.prompts, None, "cpu", torch.float32
            )
            for d in range(draws):
                g = torch.Generator().manual_seed(1_000 * int(k) + d)
                loss = compute_loss(
                    unet, run.comps.scheduler, inputs, cfg.instructions, g,
                    cfg.model.snr_gamma, cfg.model.motion_loss_weight,
                )  # fmt: skip
                vals.append(float(loss))
        out[bucket.name] = {"clips": len(ks), "loss": round(float(np.mean(vals)), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for the clips and the runs")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--heldout", type=int, default=24)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--draws", type=int, default=4, help="noise draws per clip when scoring")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    train = write_dataset(out / "train", args.clips, seed=3, num_images=0, progress=False)
    heldout = write_dataset(out / "heldout", args.heldout, seed=11, num_images=0, progress=False)
    results = []
    for seed in args.seeds:
        for policy in ("merge", "replace"):
            t = time.perf_counter()
            losses, shapes, run, unet = train_arm(
                policy, train, out / f"{policy}-{seed}", args.steps, seed
            )
            found = {
                "policy": policy,
                "seed": seed,
                "train_s": round(time.perf_counter() - t, 1),
                "steps_per_size": {
                    f"{h}x{w}": shapes.count((h, w)) for h, w in sorted(set(shapes))
                },
                "loss_first_10": round(float(np.mean(losses[:10])), 4),
                "loss_last_10": round(float(np.mean(losses[-10:])), 4),
                "train_clips": score(run, unet, train, args.draws),
                "heldout_clips": score(run, unet, heldout, args.draws),
            }
            print(json.dumps(found), flush=True)
            results.append(found)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
