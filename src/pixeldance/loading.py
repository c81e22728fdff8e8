"""Loading a pipeline folder the one way every entry point does (``generate``, ``story``, the
demo, ``eval``): placed where its resolved settings say, with their scheduler."""

from __future__ import annotations

from pathlib import Path


class PipelineLoadError(ValueError):
    """A pipeline folder whose components could not be built from their files."""


def load_pipeline(folder: Path, settings, generation_config=None, loras=()):
    """The pipeline in ``folder`` where ``settings`` (a resolved
    :class:`~pixeldance.generation.GenerationSettings`) place it, with their scheduler: how
    ``generate``, ``story``, ``demo`` and ``eval`` load one. ``generation_config``: the
    folder's ``generation.json`` if the caller has read it already (it is not read again).
    ``loras``: ``(adapter path, scale)`` pairs applied to the UNet before it is placed."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .generation import make_scheduler
    from .pipeline import PixelDancePipeline

    diffusers_logging.disable_progress_bar()  # one progress bar at most: the denoising one
    transformers_logging.disable_progress_bar()
    placement = settings.placement
    try:
        pipe = PixelDancePipeline.from_pretrained(
            folder, generation_config=generation_config, dtype=placement.torch_dtype
        )
    except (ValueError, RuntimeError, OSError, KeyError) as err:
        first = " ".join(str(err).split(". ")[0].split())[:300]
        raise PipelineLoadError(
            f"the pipeline in {folder} could not be loaded: {first} (does each component's "
            "config.json still fit its weights?)"
        ) from err
    for path, scale in loras:
        pipe.load_lora(path, scale)
    placement.apply(pipe)
    pipe.set_progress_bar_config(desc="denoising", leave=False)
    if settings.scheduler:
        pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler.config)
    return pipe
