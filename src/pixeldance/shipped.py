"""The shipped default model (PixelDance-Shapes) and per-model generation defaults.

A pipeline folder may hold ``generation.json`` with the settings it was measured with:
``{"steps", "guidance", "tau", "frames", "fps", "sizes": {"1:1": [h, w], "16:9": ..., "9:16": ...}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED_NAME = "pixeldance-shapes"
FALLBACK = {"steps": 50, "guidance": 5.0, "tau": 25, "frames": 16, "fps": 8.0}


def shipped_model_path() -> Path:
    """Folder of the model that ships inside the package."""
    return Path(__file__).resolve().parent / "assets" / SHIPPED_NAME


def _generation_file(pipe) -> Path | None:
    name = getattr(pipe, "name_or_path", None)
    if not name:
        return None
    path = Path(str(name)) / "generation.json"
    return path if path.exists() else None


def generation_defaults(pipe) -> dict:
    path = _generation_file(pipe)
    values = dict(FALLBACK)
    if path is not None:
        values.update(json.loads(path.read_text()))
    return values


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
