"""What a generation returns, and the checks of a call's inputs that are not generation
settings (those are :func:`pixeldance.generation.resolve`'s)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class NonFiniteLatents(RuntimeError):
    """Denoising produced NaN or infinite latents; no frames are made from them."""


@dataclass
class PixelDancePipelineOutput(BaseOutput):
    """``frames``: by ``output_type``: "pil" a list (batch) of lists of PIL images; "np" float
    ``(B, F, H, W, 3)`` in [0, 1]; "pt" float ``(B, 3, F, H, W)`` in [0, 1]; "latent" the
    latents ``(B, C, F, h, w)``. ``latents``: the final latents ``(B, C, F, h, w)``."""

    frames: object
    latents: torch.Tensor | None = None


def call_inputs(prompt, negative_prompt, decode_chunk_size, output_type):
    """``(prompts, negative prompts or None)``, or ValueError naming the argument that is wrong
    (the call's inputs that are not generation settings)."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("prompt must be a string or a non-empty list of strings")
    negative = None
    if negative_prompt is not None:
        one = isinstance(negative_prompt, str)
        negative = [negative_prompt] * len(prompts) if one else list(negative_prompt)
    chunk = decode_chunk_size
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"decode_chunk_size must be a positive integer or None, got {chunk!r}")
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}")
    return prompts, negative
