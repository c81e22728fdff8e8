"""Evaluation with a printed protocol: metric math (:mod:`.metrics`, pure functions), feature
extractors (:mod:`.features`, loaded from local files by :mod:`.weights`), reference statistics
cached to files (:mod:`.references`), the paper's setups (:mod:`.protocol`), scoring
(:mod:`.score`) and reports (:mod:`.report`). ``pixeldance eval`` is the command line.

Names load on first use, so the command line can build its parser without importing torch.
``score`` (the function) lives in :mod:`pixeldance.evaluation.score`.
"""

from __future__ import annotations

import importlib

# public name -> the submodule that defines it
_EXPORTS = {
    "Extractors": "score",
    "FrameFeatures": "features",
    "ScoreConfig": "score",
    "SmallSampleWarning": "metrics",
    "TextImageFeatures": "features",
    "VideoFeatures": "features",
    "WeightsChecksumError": "weights",
    "WeightsNotFound": "weights",
    "clipsim": "metrics",
    "feature_statistics": "metrics",
    "flicker": "metrics",
    "frechet_distance": "metrics",
    "frechet_distance_from_features": "metrics",
    "inception_score": "metrics",
    "instruction_fidelity": "metrics",
    "last_frame_fidelity_by_tau": "metrics",
    "load_clip": "weights",
    "load_i3d": "weights",
    "load_inception": "weights",
    "psnr": "metrics",
    "ssim": "metrics",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pixeldance.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
