"""What the datasets give and what a training step takes: a :class:`Sample` per item, a
:class:`Batch` per micro-batch (collated by :func:`collate`, the one place that knows both).

A sample holds pixels (decoded clips and images) or cached latents with their text states
(a latent cache), never both. Layouts are the UNet's: ``(C, F, H, W)`` per sample,
``(B, C, F, H, W)`` per batch; an image is a one-frame clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

BadFiles = list[tuple[str, str]]  # (path or key, reason) of each file skipped


@dataclass
class Sample:
    """One clip or image, or the files that failed in its place (``pixels`` and ``latents``
    both None)."""

    caption: str | None = None
    pixels: torch.Tensor | None = None  # (3, F, H, W) in [-1, 1]
    latents: torch.Tensor | None = None  # (C, F, h, w) from a latent cache
    text: torch.Tensor | None = None  # (L, D) text states from a latent cache
    bad: BadFiles = field(default_factory=list)
    key: str | None = None  # the sample's key in its shard (streamed shards only)

    @property
    def empty(self) -> bool:
        return self.pixels is None and self.latents is None


@dataclass
class Batch:
    """One micro-batch: the samples that loaded, stacked, and the files skipped on the way."""

    captions: list[str] = field(default_factory=list)
    pixels: torch.Tensor | None = None  # (B, 3, F, H, W) in [-1, 1]
    latents: torch.Tensor | None = None  # (B, C, F, h, w) from a latent cache
    text: torch.Tensor | None = None  # (B, L, D) text states from a latent cache
    bad: BadFiles = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # each sample's key (streamed shards only)

    @property
    def empty(self) -> bool:
        """No sample loaded (every file of the micro-batch failed)."""
        return self.pixels is None and self.latents is None

    def __len__(self) -> int:
        return len(self.captions)


def _stack(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return torch.stack(tensors) if tensors and all(t is not None for t in tensors) else None


def collate(samples: list[Sample]) -> Batch:
    """Stack the samples that loaded (pixels, or latents and text); keep the files skipped."""
    ok = [s for s in samples if not s.empty]
    return Batch(
        captions=[s.caption for s in ok],
        pixels=_stack([s.pixels for s in ok]),
        latents=_stack([s.latents for s in ok]),
        text=_stack([s.text for s in ok]),
        bad=[b for s in samples for b in s.bad],
        keys=[s.key for s in ok if s.key is not None],
    )
