"""Build what training needs from a Config: the components and the data stream."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..diffusion import make_training_scheduler
from ..encoders import PromptEncoder, latent_channels, load_text_encoder, text_embed_dim
from ..keyframes import extra_channels
from ..models import PixelDanceUNet
from ..models.codec import SpaceToDepthCodec
from .config import Config
from .pretrained import PIPELINE_INITS, load_pretrained
from .trainable import Trainable, select_trainable

logger = logging.getLogger(__name__)


@dataclass
class Components:
    unet: PixelDanceUNet
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object  # DDPMScheduler with the training prediction_type
    trainable: Trainable | None = None  # what trains (optim.trainable)
    generation: object | None = None  # a pretrained pipeline's GenerationConfig (carried)
    text_encoder_from_package: bool = False  # save the text encoder as the packaged MiniLM


def _load_vae(cfg: Config):
    m = cfg.model
    if m.vae == "codec":
        return SpaceToDepthCodec(
            patch_size=m.codec_patch_size, scaling_factor=m.codec_scaling_factor
        )
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(m.vae, subfolder=m.vae_subfolder, use_safetensors=True)


def build_components(cfg: Config) -> Components:
    """UNet (new, inflated from Stable Diffusion, or continued), frozen VAE and text encoder."""
    m = cfg.model
    if m.motion_loss_weight < 0:
        raise ValueError(
            f"model.motion_loss_weight must be >= 0 (0 disables it), got {m.motion_loss_weight}"
        )
    scheduler = make_training_scheduler(m.prediction_type)
    generation, packaged = None, m.text_encoder is None and m.init == "scratch"
    if m.init in PIPELINE_INITS:
        if not m.pretrained:
            raise ValueError(f"model.init={m.init} needs model.pretrained (a pipeline folder)")
        buckets = [b for stage in cfg.data.stages for b in stage.buckets] + cfg.data.buckets
        source = load_pretrained(m.pretrained, buckets)
        unet, vae, te, tok = source.unet, source.vae, source.text_encoder, source.tokenizer
        if m.unet.get("frame_embedding"):  # a module a continued UNet can gain
            unet = unet.with_frame_embedding()
        if m.unet.get("c_image_layout") == "mask":  # the keyframe marks, zero-initialised
            unet = unet.with_keyframe_channels()
        scheduler = make_training_scheduler(m.prediction_type, **source.schedule)
        generation, packaged = source.generation, source.text_encoder_from_package
    elif m.init == "stable-diffusion":
        from diffusers import AutoencoderKL, UNet2DConditionModel

        if not m.pretrained:
            raise ValueError(
                "model.init=stable-diffusion needs model.pretrained (a Stable Diffusion folder)"
            )
        unet2d = UNet2DConditionModel.from_pretrained(
            m.pretrained, subfolder="unet", use_safetensors=True
        )
        layout = m.unet.get("c_image_layout", "zeros")
        unet, info = PixelDanceUNet.from_unet2d(
            unet2d, output_loading_info=True, c_image_layout=layout
        )
        logger.info("inflated Stable Diffusion UNet: %d new temporal tensors", len(info.new_keys))
        vae = AutoencoderKL.from_pretrained(m.pretrained, subfolder="vae", use_safetensors=True)
        te, tok = load_text_encoder(m.pretrained, subfolder="text_encoder")
        sd_sched = Path(m.pretrained) / "scheduler" / "scheduler_config.json"
        if sd_sched.exists():
            from diffusers import DDPMScheduler

            scheduler = make_training_scheduler(
                m.prediction_type,
                **_schedule_of(DDPMScheduler.from_pretrained(m.pretrained, subfolder="scheduler")),
            )
    elif m.init == "scratch":
        vae = _load_vae(cfg)
        te, tok = load_text_encoder(m.text_encoder)
        c = latent_channels(vae)
        main = cfg.data.buckets[0]
        sample = (main.height // _scale(vae), main.width // _scale(vae))
        unet = PixelDanceUNet(
            **{
                "in_channels": 2 * c + extra_channels(m.unet.get("c_image_layout", "zeros")),
                "out_channels": c,
                "cross_attention_dim": text_embed_dim(te),
                "sample_size": sample,
                **m.unet,
            }
        )
        if unet.conv_skip is not None and m.prediction_type == "sample":
            unet.init_input_skip_as_instruction_copy()
    else:
        raise ValueError(
            f"model.init must be scratch, stable-diffusion or pipeline; got {m.init!r}"
        )
    layout = unet.config.get("c_image_layout", "zeros")
    if cfg.instructions.sketch_last_prob > 0 and layout != "mask":
        raise ValueError(
            "instructions.sketch_last_prob > 0 needs model.unet.c_image_layout: mask (sketches "
            f"are marked by its kind channel); this UNet's layout is {layout!r}"
        )
    if m.max_text_tokens:
        tok.model_max_length = min(m.max_text_tokens, tok.model_max_length or m.max_text_tokens)
    vae.requires_grad_(False).eval()
    te.requires_grad_(False).eval()
    trainable = select_trainable(unet, cfg.optim.trainable, cfg.optim.lora)
    return Components(unet, vae, te, tok, scheduler, trainable, generation, packaged)


def _scale(vae) -> int:
    from ..encoders import vae_scale_factor

    return vae_scale_factor(vae)


def _schedule_of(scheduler) -> dict:
    c = scheduler.config
    return dict(
        num_train_timesteps=c.num_train_timesteps,
        beta_schedule=c.beta_schedule,
        beta_start=c.beta_start,
        beta_end=c.beta_end,
    )


def prompt_encoder(components: Components) -> PromptEncoder:
    return PromptEncoder(components.text_encoder, components.tokenizer)
