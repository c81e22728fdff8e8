"""pixeldance: PixelDance latent video diffusion (text + first frame + optional last frame).

The public names load on first use, so ``import pixeldance`` (and the command line's
``--help`` and input checks) does not import torch, diffusers or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "GenerationConfig": "generation",
    "InstructionConfig": "instructions",
    "Keyframe": "keyframes",
    "PixelDancePipeline": "pipeline",
    "PixelDancePipelineOutput": "pipeline",
    "PixelDanceUNet": "models",
    "Shot": "pipeline",
    "SpaceToDepthCodec": "models.codec",
    "build_c_image": "instructions",
}

__all__ = [
    "GenerationConfig",
    "InstructionConfig",
    "Keyframe",
    "PixelDancePipeline",
    "PixelDancePipelineOutput",
    "PixelDanceUNet",
    "Shot",
    "SpaceToDepthCodec",
    "build_c_image",
    "__version__",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pixeldance' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # for type checkers and editors
    from .generation import GenerationConfig
    from .instructions import InstructionConfig, build_c_image
    from .keyframes import Keyframe
    from .models import PixelDanceUNet
    from .models.codec import SpaceToDepthCodec
    from .pipeline import PixelDancePipeline, PixelDancePipelineOutput, Shot
