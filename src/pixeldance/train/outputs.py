"""What training leaves behind besides checkpoints: sample videos and the final pipeline, made
from a whole (unsharded) UNet holding the EMA weights."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..models import PixelDanceUNet
from ..models.lora import copy_lora_layout, has_lora, save_adapter
from .checkpoint import gather_whole
from .config import Config
from .distributed import is_sharded


def whole_unet(unet: nn.Module, ema, main: bool) -> nn.Module | None:
    """A whole UNet with the EMA weights (the weights themselves without EMA) on the main
    process, None on the others. Every process must call it: shards are gathered."""
    if not any(is_sharded(p) for p in unet.parameters()):
        if not main:
            return None
        if ema is None:
            return unet
        copied = copy.deepcopy(unet)
        params = dict(copied.named_parameters())
        with torch.no_grad():
            for name, shadow in ema.named_shadows():  # the parameters that train
                params[name].copy_(shadow)
        return copied
    source = dict(unet.state_dict())
    source.update(ema.named_shadows() if ema is not None else {})
    tensors = gather_whole(source.items(), main)
    if not main:
        return None
    model = PixelDanceUNet.from_config(unet.config)
    if has_lora(unet):  # the same adapters, to load the trained ones into
        copy_lora_layout(unet, model)
    model.load_state_dict(tensors, strict=True)
    return model.to(next(iter(unet.parameters())).device)


def build_pipeline(comps, unet: nn.Module):
    """A pipeline around ``unet`` (the components' VAE, text encoder and schedule, DDIM)."""
    from diffusers import DDIMScheduler

    from ..pipeline import PixelDancePipeline

    scheduler = DDIMScheduler.from_config(comps.scheduler.config, timestep_spacing="trailing")
    return PixelDancePipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
    )


def final_folder(cfg: Config, out: Path) -> Path:
    """Where a run's result goes: ``pipeline/``, or ``adapter/`` for a LoRA run."""
    return Path(out) / ("adapter" if cfg.optim.trainable == "lora" else "pipeline")


def save_pipeline(cfg: Config, comps, unet: nn.Module, folder: Path) -> None:
    """Write the final pipeline folder, with the frame count, frame rate and sizes it was
    trained at as its generation settings (so generate and the benchmarks use them); for a
    LoRA run, the adapter alone (peft's folder, safetensors)."""
    from ..generation import GenerationConfig
    from .pretrained import carried_generation

    if has_lora(unet):  # a LoRA run leaves its adapter alone (export --merge makes a pipeline)
        from ..owned import replacing

        with replacing(folder) as tmp:  # complete, then renamed into place
            save_adapter(unet, unet.peft_config["default"], tmp, cfg.model.pretrained)
        return
    pipe = build_pipeline(comps, unet)
    pipe.generation_config = GenerationConfig.from_training(cfg)
    if comps.generation is not None:  # fine-tuned: the source model's settings carried
        pipe.generation_config = carried_generation(comps.generation, pipe.generation_config)
    pipe.save_pretrained(folder, text_encoder_from_package=comps.text_encoder_from_package)


def write_sample(cfg: Config, comps, unet: nn.Module, buckets, out: Path, step: int) -> None:
    """A sample video of ``cfg.run.sample_prompt`` at the first bucket's size."""
    from ..files import write_video
    from ..images import frames_to_uint8

    pipe = build_pipeline(comps, unet)
    pipe.set_progress_bar_config(disable=True)
    b = buckets[0]
    frames = pipe(
        cfg.run.sample_prompt,
        num_frames=max(b.frames, 2),
        height=b.height,
        width=b.width,
        num_inference_steps=cfg.run.sample_steps,
        tau=0,
        output_type="np",
        generator=torch.Generator().manual_seed(cfg.run.seed),
    ).frames
    write_video(frames_to_uint8(frames), out / "samples" / f"step-{step:08d}.mp4", fps=cfg.data.fps)
    unet.train()
