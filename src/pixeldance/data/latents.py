"""Latent cache: clips encoded to VAE latents and captions to text states, once.

``pixeldance preprocess`` (:mod:`pixeldance.data.preprocess`) writes a folder of safetensors
shards, one bucket per shard, each with ``latents`` ``(N, C, F, h, w)`` and ``text``
``(N, L, D)`` in float16 and the captions in the shard's metadata, plus ``empty_text.safetensors`` (the empty prompt, for text dropout) and
``index.json``. Training reads it instead of videos, so no decoding or encoding happens per step.

The index records the autoencoder that made the latents (class, latent channels, scaling
factor). A reader asked for another scaling factor rescales the latents on load (the factor is
a plain multiply after encoding, so this is exact up to float16 rounding); a reader whose
autoencoder has other latent channels is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .batch import Sample
from .buckets import Bucket, image_buckets


def write_shard(path: Path, latents: torch.Tensor, text: torch.Tensor, captions: list[str]) -> None:
    from ..files import atomic_path

    with atomic_path(path) as tmp:
        save_file(
            {"latents": latents.half().contiguous(), "text": text.half().contiguous()},
            tmp,
            metadata={"captions": json.dumps(captions)},
        )


def read_empty_text(folder: Path):
    """The cached empty prompt's text states (float32), or None if the cache has none."""
    empty = Path(folder) / "empty_text.safetensors"
    if not empty.exists():
        return None
    with safe_open(empty, "pt") as f:
        return f.get_tensor("text").float()


class LatentCacheWriter:
    """Accumulates encoded samples per bucket and writes a shard each ``shard_size`` samples."""

    def __init__(
        self, out: str | Path, buckets: list[Bucket], shard_size: int = 256, kind: str = "video"
    ):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.buckets, self.shard_size, self.kind = buckets, shard_size, kind
        self.pending: dict[int, list] = {}
        self.shards: list[dict] = []

    def add(self, bucket: int, latents: torch.Tensor, text: torch.Tensor, caption: str) -> None:
        self.pending.setdefault(bucket, []).append((latents.cpu(), text.cpu(), caption))
        if len(self.pending[bucket]) >= self.shard_size:
            self._flush(bucket)

    def _flush(self, bucket: int) -> None:
        items = self.pending.pop(bucket, [])
        if not items:
            return
        name = f"{self.kind}-{len(self.shards):05d}.safetensors"
        write_shard(
            self.out / name,
            torch.stack([i[0] for i in items]),
            torch.stack([i[1] for i in items]),
            [i[2] for i in items],
        )
        self.shards.append({"file": name, "bucket": bucket, "count": len(items), "kind": self.kind})

    def close(self) -> list[dict]:
        for bucket in list(self.pending):
            self._flush(bucket)
        return self.shards


def write_index(out: Path, shards: list[dict], buckets: list[Bucket], info: dict) -> None:
    from ..files import atomic_path

    index = {"shards": shards, "buckets": [vars(b) for b in buckets], **info}
    with atomic_path(Path(out) / "index.json") as tmp:
        tmp.write_text(json.dumps(index, indent=1))


class LatentCache:
    """Read side of the cache: ``cache[(k, bucket)]`` like the video datasets, for one kind
    (``"video"`` or ``"image"``)."""

    def __init__(
        self,
        folder: str | Path,
        kind: str = "video",
        scaling_factor: float | None = None,
        latent_channels: int | None = None,
    ):
        self.folder = Path(folder)
        index_file = self.folder / "index.json"
        if not index_file.exists():
            raise FileNotFoundError(f"not a latent cache (no index.json): {self.folder}")
        self.index = json.loads(index_file.read_text())
        made_by = self.index.get("vae", {})
        cached_channels = made_by.get("latent_channels")
        if latent_channels is not None and cached_channels not in (None, latent_channels):
            raise ValueError(
                f"the latent cache {self.folder} holds {cached_channels}-channel latents "
                f"({made_by.get('class')}) but the model's autoencoder makes {latent_channels}; "
                "run `pixeldance preprocess` again with this config"
            )
        cached_scale = made_by.get("scaling_factor")
        self.rescale = 1.0
        if (
            scaling_factor is not None
            and cached_scale is not None
            and cached_scale != scaling_factor
        ):
            self.rescale = float(scaling_factor) / float(cached_scale)
        self.buckets = [Bucket(**b) for b in self.index["buckets"]]
        if kind == "image":
            self.buckets = image_buckets(self.buckets)
        # one row per sample in flat arrays (shard number, row in it, bucket), not an object
        # per sample, so millions of samples stay small and DataLoader workers share them
        shards = [s for s in self.index["shards"] if s.get("kind", "video") == kind]
        self.shard_files = [s["file"] for s in shards]
        counts = np.array([s["count"] for s in shards], np.int64)
        self.shard_of = np.repeat(np.arange(len(shards), dtype=np.int32), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        self.row_of = (np.arange(int(counts.sum())) - starts).astype(np.int32)
        self.bucket_of = np.repeat(np.array([s["bucket"] for s in shards], np.int16), counts)
        self._handles: dict[str, object] = {}
        self.empty_text = read_empty_text(self.folder)

    def __len__(self) -> int:
        return len(self.shard_of)

    def select(self, buckets: list[Bucket]) -> LatentCache:
        """The samples of these buckets only (matched by name), numbered by their place in
        ``buckets``: one stage's part of a cache made for several. Refused if a bucket is not
        in the cache."""
        names = [b.name for b in self.buckets]
        missing = [b.name for b in buckets if b.name not in names]
        if missing:
            raise ValueError(
                f"the latent cache {self.folder} has no bucket {missing[0]!r} (it has "
                f"{', '.join(names)}); run `pixeldance preprocess` again with this config"
            )
        place = np.full(len(names), -1, np.int16)
        for i, b in enumerate(buckets):
            place[names.index(b.name)] = i
        keep = place[self.bucket_of] >= 0
        self.shard_of, self.row_of = self.shard_of[keep], self.row_of[keep]
        self.bucket_of = place[self.bucket_of[keep]]
        self.buckets = list(buckets)
        return self

    @property
    def record_buckets(self) -> np.ndarray:
        return self.bucket_of

    def _handle(self, shard: str):
        if shard not in self._handles:
            h = safe_open(self.folder / shard, "pt")
            self._handles[shard] = (h, json.loads(h.metadata()["captions"]))
        return self._handles[shard]

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        k, _ = key
        i = k % len(self)
        row = int(self.row_of[i])
        handle, captions = self._handle(self.shard_files[self.shard_of[i]])
        latents = handle.get_slice("latents")[row : row + 1][0].float()
        if self.rescale != 1.0:
            latents = latents * self.rescale
        text = handle.get_slice("text")[row : row + 1][0].float()
        return Sample(captions[row], latents=latents, text=text)

    def __getstate__(self):  # handles are reopened in each worker
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state
