"""First-frame instructions made from the prompt, the paper's two-stage zero-shot protocol.

PixelDance's zero-shot numbers are "text + first frame", the first frame made from the prompt
by Stable Diffusion 2.1 (paper v1, sec. 4.2.1). Two makers, one interface
(``maker(prompt, seed) -> uint8 (H, W, 3)``):

- :class:`TextToImage` (``--first-frame t2i --t2i FOLDER``): a diffusers text-to-image
  pipeline from a local folder (safetensors only, nothing downloaded);
- :class:`SelfImage` (``--first-frame self``): the PixelDance model's own image mode, one
  frame (F = 1, the temporal layers skipped, as in its image batches) with no image
  instruction.

:func:`cached_first_frame` keeps each made frame as ``{out}/first_frames/{i:05d}.png`` and
reuses it, so a resumed run conditions on the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..files import atomic_path

Maker = Callable[[str, int], np.ndarray]
FIRST_FRAMES_DIR = "first_frames"


class TextToImage:
    """A diffusers text-to-image pipeline (``DiffusionPipeline.from_pretrained`` of a local
    folder: Stable Diffusion 2.1 is the paper's), called with ``steps``, ``guidance`` and a
    generator seeded per sample; ``height``/``width`` None: the pipeline's own size."""

    def __init__(
        self,
        folder: str | Path,
        steps: int = 50,
        guidance: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        device: str = "cpu",
    ):
        from diffusers import DiffusionPipeline

        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"--t2i {folder}: not a diffusers pipeline folder (no model_index.json); give "
                "a local text-to-image folder such as Stable Diffusion 2.1's"
            )
        self.folder, self.steps, self.guidance = folder, steps, guidance
        self.height, self.width, self.device = height, width, device
        self.pipe = DiffusionPipeline.from_pretrained(
            folder,
            local_files_only=True,
            use_safetensors=True,
            safety_checker=None,
            requires_safety_checker=False,
        ).to(device)
        self.pipe.set_progress_bar_config(disable=True)

    def protocol(self) -> dict:
        return {
            "t2i_model": str(self.folder.resolve()),
            "t2i_pipeline": type(self.pipe).__name__,
            "t2i_scheduler": type(self.pipe.scheduler).__name__,
            "t2i_steps": self.steps,
            "t2i_guidance": self.guidance,
            "t2i_size": f"{self.height}x{self.width}" if self.height else "the model's own",
        }

    @torch.no_grad()
    def __call__(self, prompt: str, seed: int) -> np.ndarray:
        out = self.pipe(
            prompt,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            height=self.height,
            width=self.width,
            generator=torch.Generator(self.device).manual_seed(seed),
            output_type="np",
        )
        return (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)


class SelfImage:
    """The PixelDance pipeline's own image mode: one frame from the prompt alone, with the
    model's generation settings (steps, guidance, size) but ``num_frames=1``."""

    def __init__(self, pipe, settings):
        self.pipe, self.settings = pipe, settings

    def protocol(self) -> dict:
        return {
            "first_frame_model": "the evaluated model, num_frames=1, no image instruction, "
            "its generation settings"
        }

    @torch.no_grad()
    def __call__(self, prompt: str, seed: int) -> np.ndarray:
        from dataclasses import replace

        from ..images import frames_to_uint8

        out = self.pipe(  # the image mode: one frame, no instruction (temporal layers idle)
            prompt,
            generator=self.settings.placement.generator(seed),
            output_type="np",
            settings=replace(self.settings, num_frames=1),
        )
        return frames_to_uint8(out.frames)[0]  # (F=1, H, W, 3) -> its one frame


def cached_first_frame(maker: Maker, prompt: str, seed: int, out: Path, index: int) -> Path:
    """The first frame of sample ``index`` made by ``maker`` from ``prompt`` with ``seed``,
    as ``{out}/first_frames/{index:05d}.png`` (reused if there)."""
    path = Path(out) / FIRST_FRAMES_DIR / f"{index:05d}.png"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    image = maker(prompt, seed)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def first_frame_maker(
    source: str,
    pipe,
    settings,
    t2i: str | Path | None = None,
    t2i_steps: int = 50,
    t2i_guidance: float = 7.5,
    device: str = "cpu",
) -> tuple[Maker | None, dict]:
    """The maker for a first-frame ``source`` (None unless ``t2i`` or ``self``) and what to
    record about it."""
    if source == "t2i":
        if t2i is None:
            raise ValueError("--first-frame t2i needs --t2i FOLDER (a local text-to-image model)")
        maker = TextToImage(t2i, t2i_steps, t2i_guidance, device=device)
        return maker, maker.protocol()
    if t2i is not None:
        raise ValueError("--t2i is only used with --first-frame t2i")
    if source == "self":
        maker = SelfImage(pipe, settings)
        return maker, maker.protocol()
    return None, {}
