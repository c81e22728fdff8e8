"""Starting a run from a trained pixeldance pipeline folder (``model.init: pipeline``).

The UNet, the autoencoder (or codec) and the text encoder come from the folder, with its
diffusion schedule and its ``generation.json`` (carried to the result, with the new run's
frame count, frame rate and sizes); the optimizer and LR schedule start fresh. Other buckets
and frame counts than the folder's model was trained at are fine; an input layout the model
cannot take (channels that do not fit its autoencoder, sizes that are not multiples of its
down-sampling) is refused in one line before anything loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# the names model.init takes for a pixeldance pipeline folder ("pixeldance" came first)
PIPELINE_INITS = ("pipeline", "pixeldance")


def _config(folder: Path, sub: str) -> dict:
    path = folder / sub / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"model.pretrained: cannot read {path} ({err})") from err


def _latent_channels(vae: dict) -> int:
    if "patch_size" in vae:  # the space-to-depth codec: every pixel of a patch is a channel
        return int(vae.get("in_channels", 3)) * int(vae["patch_size"]) ** 2
    return int(vae["latent_channels"])


def check_layout(folder: str | Path, buckets) -> None:
    """Refuse (ValueError, one line) a pipeline folder whose UNet cannot take what this run
    feeds it: ``in_channels`` must be twice the autoencoder's latent channels (z_t and c_image,
    paper eq. 2), ``out_channels`` equal to them, and every bucket's height and width a
    multiple of the folder's size multiple. Reads the configs only."""
    from ..generation import Geometry

    folder = Path(folder)
    unet, vae = _config(folder, "unet"), _config(folder, "vae")
    c = _latent_channels(vae)
    if unet.get("in_channels") != 2 * c or unet.get("out_channels") != c:
        raise ValueError(
            f"model.pretrained {folder}: its UNet takes {unet.get('in_channels')} input and "
            f"{unet.get('out_channels')} output channels but its autoencoder makes {c}-channel "
            f"latents (a PixelDance UNet takes {2 * c}: z_t and c_image, and predicts {c}); "
            "this input layout cannot be fine-tuned"
        )
    multiple = Geometry.of(unet, vae).multiple
    for b in buckets:
        if b.height % multiple or b.width % multiple:
            raise ValueError(
                f"data.buckets {b.name!r}: {b.height}x{b.width} does not fit model.pretrained "
                f"{folder}, whose sizes must be multiples of {multiple}"
            )


@dataclass
class Pretrained:
    """What a run takes from a pipeline folder."""

    unet: object
    vae: object
    text_encoder: object
    tokenizer: object
    schedule: dict  # the diffusion schedule's betas (DDPMScheduler arguments)
    generation: object  # the folder's GenerationConfig
    text_encoder_from_package: bool  # the folder names the packaged MiniLM, not weights


def load_pretrained(folder: str | Path, buckets) -> Pretrained:
    """The components of the pipeline folder ``folder``, checked against ``buckets``."""
    from ..folders import pipeline_folder
    from ..pipeline import PACKAGED_TEXT_ENCODER, PixelDancePipeline

    folder = pipeline_folder(folder)
    check_layout(folder, buckets)
    pipe = PixelDancePipeline.from_pretrained(folder)
    c = pipe.scheduler.config
    schedule = dict(
        num_train_timesteps=c.num_train_timesteps,
        beta_schedule=c.beta_schedule,
        beta_start=c.beta_start,
        beta_end=c.beta_end,
    )
    return Pretrained(
        pipe.unet,
        pipe.vae,
        pipe.text_encoder,
        pipe.tokenizer,
        schedule,
        pipe.generation_config,
        (folder / PACKAGED_TEXT_ENCODER).exists(),
    )


def carried_generation(source, trained):
    """The source model's generation settings (its measured guidance, tau, steps...) with the
    frame count, frame rate, sizes and instruction noise of the run that fine-tuned it."""
    from ..generation import GenerationConfig

    values = source.to_dict()
    new = trained.to_dict()
    for key in ("num_frames", "fps", "sizes", "training_instruction_noise"):
        values[key] = new[key]
    return GenerationConfig.from_dict(values, "generation settings")
