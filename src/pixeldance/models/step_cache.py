"""Feature reuse across denoising steps for the PixelDance UNet (DeepCache-style).

DeepCache (Ma, Fang and Wang, CVPR 2024) observes that a diffusion UNet's deep, low-resolution
features change little from one denoising step to the next, while the outer, high-resolution
levels carry the detail. So: on a full step run the whole UNet and keep the input of its
outer up levels (the deep features); on the ``interval - 1`` steps after it run only the outer
levels (``conv_in``, the outer down levels, the outer up levels, ``conv_out``) and take the
kept deep features in place of everything below them.

:class:`StepCache` wraps a :class:`~pixeldance.models.unet.PixelDanceUNet` with the UNet's own
call signature, so a sampling loop uses it where it used the UNet; it goes through the UNet's
``forward`` (device hooks such as CPU offload still run). It is made for one generation: make a
new one per call. A full step is forced whenever the batch or text states change shape (e.g.
when classifier-free guidance stops at the end of a guidance interval), so a cached feature is
never reused for a different batch.
"""

from __future__ import annotations

import torch
from torch import nn


class DeepFeatures:
    """What one full UNet pass leaves for the steps that reuse it.

    ``levels``: how many outer resolution levels the reusing steps recompute (1 = only the
    highest resolution). ``reuse``: whether the next pass reuses ``features`` (set by
    :class:`StepCache`; a pass with it False is a full pass and stores new features).
    """

    def __init__(self, levels: int = 1):
        if levels < 1:
            raise ValueError(f"step cache levels must be at least 1; got {levels}")
        self.levels = levels
        self.features: torch.Tensor | None = None
        self.reuse = False

    def store(self, features: torch.Tensor) -> None:
        self.features = features


class StepCache:
    """A UNet that runs fully every ``interval`` calls and reuses its deep features between.

    Call it as the UNet: ``(sample, timestep, encoder_hidden_states) -> output with .sample``.
    ``interval=1`` runs every call fully (the same outputs as the bare UNet). ``config``,
    ``dtype`` and ``device`` are the UNet's. ``full_calls`` and ``cached_calls`` count the calls
    of each kind.
    """

    def __init__(self, unet: nn.Module, interval: int, levels: int = 1):
        if interval < 1:
            raise ValueError(f"cache interval must be at least 1; got {interval}")
        n = len(unet.config.block_out_channels)
        if not 1 <= levels < n:
            raise ValueError(f"step cache levels must be between 1 and {n - 1}; got {levels}")
        self.unet, self.interval = unet, interval
        self.state = DeepFeatures(levels)
        self._key: tuple | None = None
        self._since_full = 0
        self.full_calls = self.cached_calls = 0

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = True,
    ):
        key = (tuple(sample.shape), tuple(encoder_hidden_states.shape), sample.dtype)
        reuse = key == self._key and self._since_full < self.interval
        self.state.reuse = reuse
        out = self.unet(
            sample, timestep, encoder_hidden_states, return_dict=return_dict, step_cache=self.state
        )
        if reuse:
            self._since_full += 1
            self.cached_calls += 1
        else:
            self._key, self._since_full = key, 1
            self.full_calls += 1
        return out
