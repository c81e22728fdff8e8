"""One training step: a batch (pixels or cached latents) -> latents, instructions, loss."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..data.batch import Batch
from ..data.sketch import sketch_latents
from ..diffusion import diffusion_loss
from ..encoders import PromptEncoder, encode_frames
from ..instructions import InstructionConfig, sample_training_instructions


@dataclass
class StepInputs:
    latents: torch.Tensor  # (B, C, F, h, w)
    text: torch.Tensor  # (B, L, D)
    empty_text: torch.Tensor  # (1, L, D)
    vae: object = None  # to draw sketch instructions from the latents (decode, edges, encode)


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """All randomness of a step (noise, timesteps, instruction draws) comes from this generator,
    seeded by (seed, step, rank): a resumed run draws exactly what an uninterrupted one would."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1_000_003 + step) * 1_009 + rank) % 2**64)  # any 64-bit seed
    return g


def batch_inputs(
    batch: Batch, vae, prompt_encoder: PromptEncoder, empty_cached, device, dtype
) -> StepInputs:
    """Latents and text states for a collated batch of either kind."""
    if batch.latents is not None:
        if empty_cached is None:
            raise ValueError(
                "the latent cache has no empty_text.safetensors (needed for text dropout)"
            )
        return StepInputs(
            batch.latents.to(device, dtype),
            batch.text.to(device, dtype),
            empty_cached.to(device, dtype)[:1],
            vae,
        )
    latents = encode_frames(vae, batch.pixels.to(device))
    text = prompt_encoder.encode(batch.captions)
    return StepInputs(latents.to(dtype), text.to(dtype), prompt_encoder.empty(1).to(dtype), vae)


def compute_loss(
    unet,
    scheduler,
    inputs: StepInputs,
    instructions: InstructionConfig,
    generator: torch.Generator,
    snr_gamma: float | None = None,
    motion_weight: float = 0.0,
) -> torch.Tensor:
    """The paper's recipe (generalised to keyframes by ``instructions``): perturbed
    instructions packed in the UNet's c_image layout, text dropout, diffusion loss."""
    config = getattr(unet, "module", unet).config  # DDP-wrapped or not
    sketcher = None
    if instructions.sketch_last_prob > 0 and inputs.vae is not None:
        sketcher = partial(sketch_latents, inputs.vae, sketch=instructions.sketch_method)
    drawn = sample_training_instructions(
        inputs.latents,
        instructions,
        scheduler,
        generator,
        layout=config.get("c_image_layout", "zeros"),
        sketcher=sketcher,
    )
    text = inputs.text
    drop = ~drawn.keep_text
    if drop.any():
        text = text.clone()
        text[drop] = inputs.empty_text.expand(int(drop.sum()), -1, -1)
    return diffusion_loss(
        unet, scheduler, inputs.latents, drawn.c_image, text, generator, snr_gamma, motion_weight
    ).loss
