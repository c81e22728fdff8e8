"""Evaluation with a printed protocol: metric math (:mod:`.metrics`, pure functions), feature
extractors (:mod:`.features`, loaded from local files by :mod:`.weights`), reference statistics
cached to files (:mod:`.references`), the paper's setups (:mod:`.protocol`), scoring
(:mod:`.score`) and reports (:mod:`.report`). ``pixeldance eval`` is the command line."""

from .features import FrameFeatures, TextImageFeatures, VideoFeatures
from .metrics import (
    SmallSampleWarning,
    clipsim,
    feature_statistics,
    flicker,
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    instruction_fidelity,
    last_frame_fidelity_by_tau,
    psnr,
    ssim,
)
from .score import Extractors, ScoreConfig, score
from .weights import WeightsChecksumError, WeightsNotFound, load_clip, load_i3d, load_inception

__all__ = [
    "Extractors",
    "FrameFeatures",
    "ScoreConfig",
    "SmallSampleWarning",
    "TextImageFeatures",
    "VideoFeatures",
    "WeightsChecksumError",
    "WeightsNotFound",
    "clipsim",
    "feature_statistics",
    "flicker",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "instruction_fidelity",
    "last_frame_fidelity_by_tau",
    "load_clip",
    "load_i3d",
    "load_inception",
    "psnr",
    "score",
    "ssim",
]
