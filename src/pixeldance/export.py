"""Export a trained pipeline for shipping: a complete copy, the UNet in float16, its
``generation.json`` written."""

from __future__ import annotations

import shutil
from pathlib import Path

from .folders import pipeline_folder
from .generation import GenerationConfig
from .owned import check_destination, replacing


def export_pipeline(
    src: str | Path,
    out: str | Path,
    half: bool = True,
    generation: GenerationConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the pipeline folder ``src`` to ``out`` (complete, then renamed into place).

    ``out`` must be new, empty, or (with ``overwrite``) a pipeline folder this project wrote;
    anything else raises ValueError before anything is written. ``half`` stores the UNet's
    floating-point tensors in float16 (they load back as float32); ``generation``, if given,
    replaces the copy's ``generation.json``.
    """
    from safetensors.torch import load_file, save_file

    src = pipeline_folder(src)
    out = check_destination(out, "pipeline", overwrite, sources=[src])
    with replacing(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        if half:
            for weights in (tmp / "unet").glob("*.safetensors"):
                tensors = load_file(weights)
                save_file(
                    {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()},
                    weights,
                )
        if generation is not None:
            generation.save(tmp)
    return out
