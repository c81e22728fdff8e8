"""Long videos as a story of shots (paper, sec. 3.4): each shot has its own prompt, optional
last frame, tau and keyframes; shot k+1 starts from shot k's last frames, passed as latents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from .generation import GenerationSettings
from .images import ImageInput
from .keyframe_inputs import context_keyframes
from .keyframes import Keyframe
from .outputs import PixelDancePipelineOutput

# the call's arguments that are generation settings (unset: the model's generation_config)
SETTING_ARGS = (
    "num_inference_steps",
    "guidance_scale",
    "guidance_interval",
    "tau",
    "num_frames",
    "height",
    "width",
    "instruction_noise",
    "cache_interval",
)


@dataclass
class Shot:
    """One shot of a long video: its own prompt, an optional last frame and tau."""

    prompt: str
    last_frame: ImageInput | None = None
    tau: int | None = None
    num_frames: int | None = None
    keyframes: list[Keyframe] | None = None  # more keyframes, indices within this shot


class StoryMixin:
    """:meth:`generate_story` for :class:`~pixeldance.pipeline.PixelDancePipeline`: it calls
    the pipeline once a shot and decodes the whole story at once."""

    @torch.no_grad()
    def generate_story(
        self,
        shots: Sequence[Shot],
        first_frame: ImageInput | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_shot: Callable[[int, torch.Tensor], None] | None = None,
        settings: GenerationSettings | None = None,
        context_frames: int = 1,
        **kwargs,
    ) -> PixelDancePipelineOutput | tuple:
        """A long video of several shots, each with its own prompt, last frame, tau and
        keyframes.

        Clip k+1 starts from clip k's last ``context_frames`` frames, passed as latents and
        pinned as its keyframes 0..K-1 (no decode/encode round trip, so colours do not drift);
        the shared frames appear once in the output. K = 1 is the paper's chaining (the last
        frame becomes the next first frame).
        Other keyword arguments are as for ``__call__``: the setting arguments (``tau`` and
        ``num_frames`` are the defaults for shots that do not set their own) are merged with
        the model's ``generation_config`` and checked once for the whole story, the shots'
        taus and frames with them; or ``settings`` resolved already (with ``shot_taus`` and
        ``shot_frames``).
        """
        if not shots:
            raise ValueError("a story needs at least one shot")
        shots = [s if isinstance(s, Shot) else Shot(**s) for s in shots]
        choices = {k: kwargs.pop(k) for k in SETTING_ARGS if k in kwargs}
        if settings is None:
            taus, frames = [s.tau for s in shots], [s.num_frames for s in shots]
            settings = self.generation_settings(**choices, shot_taus=taus, shot_frames=frames)
        elif any(v is not None for v in choices.values()):
            raise ValueError("pass settings or the setting arguments, not both")
        taus = settings.shot_taus or (settings.tau,) * len(shots)
        frames = settings.shot_frames or (settings.num_frames,) * len(shots)
        chunk = kwargs.setdefault("decode_chunk_size", 16)
        context, parts = [], []
        for k, shot in enumerate(shots):
            out = self(
                prompt=shot.prompt,
                first_frame=first_frame if k == 0 else None,
                last_frame=shot.last_frame,
                keyframes=[*context, *(shot.keyframes or ())],
                output_type="latent",
                settings=replace(settings, tau=taus[k], num_frames=frames[k]),
                **kwargs,
            )
            z = out.latents
            parts.append(z[:, :, len(context) :])  # the shared frames are shot k-1's last
            context = context_keyframes(z, context_frames)
            if callback_on_shot is not None:
                callback_on_shot(k, z)
        latents = torch.cat(parts, dim=2)
        frames = self.decode(latents, output_type, chunk)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return PixelDancePipelineOutput(frames=frames, latents=latents)
