"""Export a trained pipeline for shipping: a complete copy, the UNet in float16, its
``generation.json`` written."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .folders import pipeline_folder
from .generation import GenerationConfig


def export_pipeline(
    src: str | Path,
    out: str | Path,
    half: bool = True,
    generation: GenerationConfig | None = None,
) -> Path:
    """Copy the pipeline folder ``src`` to ``out`` (complete, then renamed into place).

    ``half`` stores the UNet's floating-point tensors in float16 (they load back as float32);
    ``generation``, if given, replaces the copy's ``generation.json``.
    """
    from safetensors.torch import load_file, save_file

    src, out = pipeline_folder(src), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
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
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
