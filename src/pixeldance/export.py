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
    loras: list[tuple[str, float]] | tuple = (),
) -> Path:
    """Copy the pipeline folder ``src`` to ``out`` (complete, then renamed into place).

    ``out`` must be new, empty, or (with ``overwrite``) a pipeline folder this project wrote;
    anything else raises ValueError before anything is written. ``half`` stores the UNet's
    floating-point tensors in float16 (they load back as float32); ``generation``, if given,
    replaces the copy's ``generation.json``. ``loras``: ``(adapter, scale)`` pairs folded
    into the copy's UNet (a plain UNet: its outputs are the base's with the adapters applied).
    """
    from safetensors.torch import load_file, save_file

    src = pipeline_folder(src)
    out = check_destination(out, "pipeline", overwrite, sources=[src])
    with replacing(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        if loras:
            _merge_into(tmp / "unet", loras)
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


def _merge_into(unet_folder: Path, loras) -> None:
    """Replace the UNet weights in ``unet_folder`` by the UNet with ``loras`` merged in."""
    from .models import PixelDanceUNet
    from .models.lora import load_adapter, merge_lora

    unet = PixelDanceUNet.from_pretrained(unet_folder, use_safetensors=True)
    for path, scale in loras:
        load_adapter(unet, path, scale)
    merge_lora(unet)
    for old in [*unet_folder.glob("*.safetensors"), *unet_folder.glob("*.index.json")]:
        old.unlink()
    unet.save_pretrained(unet_folder, safe_serialization=True)
