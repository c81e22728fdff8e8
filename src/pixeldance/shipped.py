"""The shipped default model (PixelDance-Shapes) and per-model generation defaults.

A pipeline folder may hold ``generation.json`` with the settings it was measured with:
``{"steps", "guidance", "guidance_interval", "tau", "frames", "fps", "instruction_noise",
"sizes": {"1:1": [h, w], "16:9": ..., "9:16": ...}}`` (``guidance_interval``: ``[low, high]``
timesteps to guide, or null for every step), and ``training_instruction_noise``, the step the
model's image instructions were noised to in training (written by export; for reference).
"""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED_NAME = "pixeldance-shapes"
FALLBACK = {
    "steps": 50,
    "guidance": 5.0,
    "guidance_interval": None,
    "tau": 25,
    "frames": 16,
    "fps": 8.0,
    "instruction_noise": 0,
}
# every key generation.json may hold
GENERATION_KEYS = (*FALLBACK, "sizes", "training_instruction_noise")


def shipped_model_path() -> Path:
    """Folder of the model that ships inside the package."""
    return Path(__file__).resolve().parent / "assets" / SHIPPED_NAME


def _generation_file(pipe) -> Path | None:
    """``generation.json`` of a pipeline (or of a pipeline folder given as a path)."""
    name = pipe if isinstance(pipe, (str, Path)) else getattr(pipe, "name_or_path", None)
    if not name:
        return None
    path = Path(str(name)) / "generation.json"
    return path if path.exists() else None


def generation_defaults(pipe) -> dict:
    """Generation settings of a pipeline or pipeline folder: its generation.json over FALLBACK."""
    path = _generation_file(pipe)
    values = dict(FALLBACK)
    if path is not None:
        values.update(json.loads(path.read_text()))
    return values


# the aspect ratios generate, story and the demo offer (width : height)
ASPECTS = ("1:1", "16:9", "9:16")


def size_for_aspect(pipe, aspect: str) -> tuple[int, int]:
    """(height, width) for "1:1", "16:9" or "9:16": the model's own sizes if it lists them, else
    its default area at that aspect, rounded to valid sizes."""
    sizes = generation_defaults(pipe).get("sizes", {})
    if aspect in sizes:
        h, w = sizes[aspect]
        return int(h), int(w)
    h0, w0 = pipe.default_size()
    area = h0 * w0
    a, b = (int(x) for x in aspect.split(":"))  # width : height
    m = pipe.size_multiple
    h = max(m, round((area * b / a) ** 0.5 / m) * m)
    w = max(m, round((area * a / b) ** 0.5 / m) * m)
    return h, w


def make_scheduler(name: str, config):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    classes = {
        "ddim": DDIMScheduler,
        "dpm++": DPMSolverMultistepScheduler,
        "euler": EulerDiscreteScheduler,
    }
    if name not in classes:
        raise ValueError(f"unknown scheduler {name!r}; use one of {sorted(classes)}")
    return classes[name].from_config(config)


def export_pipeline(
    src: str | Path, out: str | Path, half: bool = True, generation: dict | None = None
) -> Path:
    """Copy a trained pipeline folder to ``out`` (complete, then renamed), with the UNet stored
    in float16 when ``half`` (it loads back as float32) and ``generation.json`` written."""
    import shutil
    import tempfile

    from safetensors.torch import load_file, save_file

    src, out = Path(src), Path(out)
    if not (src / "model_index.json").exists():
        raise ValueError(f"not a pipeline folder (no model_index.json): {src}")
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
            (tmp / "generation.json").write_text(json.dumps(generation, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def generation_from_config(config_file: str | Path, **choices) -> dict:
    """generation.json values from a training config file: see :func:`generation_for`."""
    from .train.config import load_config

    return generation_for(load_config(config_file), **choices)


def generation_for(cfg, **choices) -> dict:
    """generation.json values for a model trained with ``cfg`` (a train ``Config``): frames, fps
    and sizes per aspect from its buckets, its training instruction noise step, and the
    measured ``choices`` (steps, guidance, guidance_interval, tau, instruction_noise) over the
    fallbacks."""
    buckets = cfg.data.buckets
    sizes = {}
    for b in buckets:
        h, w = b["height"], b["width"]
        aspect = "1:1" if h == w else ("16:9" if w > h else "9:16")
        sizes.setdefault(aspect, [h, w])
    return {
        **FALLBACK,
        "frames": buckets[0].get("frames", 16),
        "fps": cfg.data.fps,
        "training_instruction_noise": cfg.instructions.noise_timestep,
        "sizes": sizes,
        **choices,
    }
