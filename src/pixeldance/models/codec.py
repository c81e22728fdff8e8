"""A lossless space-to-depth image codec with the interface of diffusers' ``AutoencoderKL``.

``encode`` folds each ``p x p`` pixel patch into channels, ``(N, 3, H, W) -> (N, 3p^2, H/p,
W/p)``; ``decode`` unfolds it. Nothing is learned, so there is no reconstruction ceiling and
no autoencoder training time: an option for small models trained from scratch on simple
worlds (the Dancing Shapes default). Real footage wants a learned VAE (Stable Diffusion's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput


class _Deterministic:
    """A posterior with no spread: ``mode()`` and ``sample()`` both return the latent."""

    def __init__(self, z: torch.Tensor):
        self.z = z

    def mode(self) -> torch.Tensor:
        return self.z

    def sample(self, generator=None) -> torch.Tensor:
        return self.z


@dataclass
class CodecEncoderOutput(BaseOutput):
    latent_dist: _Deterministic


@dataclass
class CodecDecoderOutput(BaseOutput):
    sample: torch.Tensor


class SpaceToDepthCodec(ModelMixin, ConfigMixin):
    """Lossless pixel <-> latent codec: ``pixel_unshuffle`` by ``patch_size``.

    Args:
        patch_size: pixels per latent along each axis (the spatial compression).
        in_channels: image channels (3).
        scaling_factor: multiplies latents after encoding, as in ``AutoencoderKL``.
    """

    @register_to_config
    def __init__(self, patch_size: int = 4, in_channels: int = 3, scaling_factor: float = 1.0):
        super().__init__()
        # A buffer so the (parameter-free) codec saves and loads like any diffusers model.
        self.register_buffer("patch", torch.tensor(patch_size), persistent=True)

    @property
    def spatial_compression(self) -> int:
        return self.config.patch_size

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels * self.config.patch_size**2

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        p = self.config.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(
                f"image size {tuple(x.shape[-2:])} is not a multiple of patch_size={p}"
            )
        z = F.pixel_unshuffle(x, p)
        return CodecEncoderOutput(latent_dist=_Deterministic(z)) if return_dict else (z,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        x = F.pixel_shuffle(z, self.config.patch_size)
        return CodecDecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).latent_dist.mode()).sample
