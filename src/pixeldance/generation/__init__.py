"""A model's generation settings: the defaults it ships with, merged with a user's choices once.

A pipeline folder may hold ``generation.json``, the settings the model was measured best with.
:class:`GenerationConfig` holds them (load, save, validate, :meth:`~GenerationConfig.from_training`);
:func:`resolve` merges what a user asked for with them and checks tau, steps, frames, size and
guidance in one place, and where generation runs (device, dtype, offload: see
:mod:`pixeldance.devices`). Every entry point (``pixeldance generate`` and ``story``, the web
demo, Python code) goes through it, so a default or a check cannot differ between them.

The concept lives in two files: :mod:`.config` (a model's defaults on disk and its sizes) and
:mod:`.resolve` (a user's choices merged with them and checked). Neither imports torch or
diffusers at the top, so a command can check its settings before any model loads (torch is
asked about the hardware only when a device choice needs it).
"""

from .config import (
    ASPECTS,
    GENERATION_FILE,
    SCHEDULERS,
    GenerationConfig,
    Geometry,
    SettingError,
    make_scheduler,
)
from .resolve import (
    DEFAULT_MAX_PIXELS,
    MAX_FRAMES,
    MAX_STEPS,
    GenerationSettings,
    check_prompt,
    check_size,
    resolve,
)

__all__ = [
    "ASPECTS",
    "DEFAULT_MAX_PIXELS",
    "MAX_FRAMES",
    "MAX_STEPS",
    "check_prompt",
    "GENERATION_FILE",
    "SCHEDULERS",
    "GenerationConfig",
    "GenerationSettings",
    "Geometry",
    "SettingError",
    "check_size",
    "make_scheduler",
    "resolve",
]
