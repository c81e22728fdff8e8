"""Earlier names for the shipped model's folder and a model's generation defaults.

Kept so that code written against them keeps working; new code uses
:mod:`pixeldance.folders` and :class:`pixeldance.generation.GenerationConfig`.
"""

from __future__ import annotations

from .folders import shipped_model_path
from .generation import GenerationConfig

__all__ = ["generation_defaults", "shipped_model_path"]


def generation_defaults(pipe) -> dict:
    """A pipeline's (or pipeline folder's) generation settings as a dict:
    ``GenerationConfig.load(pipe).to_dict()``."""
    return GenerationConfig.load(pipe).to_dict()
