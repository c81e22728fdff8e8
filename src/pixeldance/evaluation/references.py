"""Reference statistics (feature mean and covariance of the real videos), cached to a file.

The cache key is a SHA-256 of the reference set (each file's resolved path, size and
modification time) and of the protocol that made the features (extractor and checksum, frames,
frame rate, preprocessing). A cache file is safetensors (``mu``, ``sigma``; the key, the sample
count and the protocol in its metadata), never pickle. A file whose key matches is reused;
otherwise the statistics are computed again and the file replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_path
from .metrics import RunningStatistics

logger = logging.getLogger(__name__)


@dataclass
class Statistics:
    mu: np.ndarray  # (D,)
    sigma: np.ndarray  # (D, D)
    count: int  # samples the statistics were computed from
    cache: Path | None = None  # the file they were read from or written to
    reused: bool = False  # read from the cache


def reference_key(paths: Sequence[Path], protocol: dict) -> str:
    """SHA-256 of the reference files (resolved path, size, mtime) and the protocol."""
    files = []
    for p in paths:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"files": files, "protocol": protocol}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(cache_dir: Path, metric: str, key: str) -> Path:
    return Path(cache_dir) / f"{metric}-{key[:24]}.safetensors"


def load_statistics(path: Path, key: str) -> Statistics | None:
    """The statistics in ``path`` if it exists and was made for ``key``; else None."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            return Statistics(
                f.get_tensor("mu"), f.get_tensor("sigma"), int(meta["count"]), path, True
            )
    except (OSError, KeyError, ValueError) as err:  # unreadable or foreign: recompute
        logger.warning("ignoring reference statistics cache %s (%s)", path, err)
        return None


def save_statistics(path: Path, key: str, stats: Statistics, protocol: dict) -> Path:
    from safetensors.numpy import save_file

    meta = {"key": key, "count": str(stats.count), "protocol": json.dumps(protocol, default=str)}
    with atomic_path(path) as tmp:
        save_file({"mu": stats.mu, "sigma": stats.sigma}, str(tmp), metadata=meta)
    return path


def cached_statistics(
    metric: str,
    paths: Sequence[Path],
    protocol: dict,
    cache_dir: Path | None,
    compute: Callable[[], RunningStatistics],
) -> Statistics:
    """Statistics of the reference set ``paths`` under ``protocol``: read from ``cache_dir``
    when a file there matches, else ``compute()``-d (and written if ``cache_dir``)."""
    key = reference_key(paths, protocol)
    path = cache_path(cache_dir, metric, key) if cache_dir is not None else None
    if path is not None:
        hit = load_statistics(path, key)
        if hit is not None:
            return hit
    running = compute()
    mu, sigma = running.statistics()
    stats = Statistics(mu, sigma, running.count, path, False)
    if path is not None:
        save_statistics(path, key, stats, protocol)
    return stats


# ---------------------------------------------------------------- how reference clips are drawn
REFERENCE_MODES = ("start", "fvd2048_16f")
FVD2048_CLIPS = 2048  # StyleGAN-V (Skorokhodov et al., CVPR 2022): FVD on 2048 16-frame clips


@dataclass(frozen=True)
class ReferenceSampling:
    """How reference clips are drawn. ``start``: one clip per video, its first ``frames``
    frames from t = 0 at ``fps`` (None: the video's own rate, consecutive frames).
    ``fvd2048_16f`` (StyleGAN-V's protocol): ``clips`` clips of consecutive frames at each
    video's own rate, each from a video and a start drawn with ``np.random.default_rng(seed)``
    (video index, then start, per clip)."""

    mode: str = "start"
    frames: int = 16
    fps: float | None = None
    clips: int = FVD2048_CLIPS
    seed: int = 0

    def describe(self) -> str:
        rate = "each video's own rate" if self.fps is None else f"{self.fps:g} fps"
        if self.mode == "start":
            return f"the first {self.frames} frames of each reference video from t = 0 at {rate}"
        return (
            f"{self.clips} clips of {self.frames} consecutive frames at each video's own rate, "
            f"each from a random video (with replacement) at a random start, numpy "
            f"default_rng({self.seed}) (fvd2048_16f, StyleGAN-V's protocol"
            + ("" if self.clips == FVD2048_CLIPS else f", but {self.clips} clips, not 2048")
            + ")"
        )

    def key(self) -> dict:
        return {"mode": self.mode, "frames": self.frames, "fps": self.fps} | (
            {"clips": self.clips, "seed": self.seed} if self.mode != "start" else {}
        )

    def draw(self, paths: Sequence[Path]):
        """Yield ``(path, clip or the VideoError that stopped it)`` in a fixed order."""
        from ..data.video import VideoError
        from .inputs import sample_clip

        if self.mode not in REFERENCE_MODES:
            raise ValueError(f"reference mode must be one of {', '.join(REFERENCE_MODES)}")
        if self.mode == "start":
            picks = [(p, 0.0, None) for p in paths]
        else:
            rng = np.random.default_rng(self.seed)
            picks = [(paths[int(rng.integers(len(paths)))], None, rng) for _ in range(self.clips)]
        for path, start, rng in picks:
            try:
                yield path, sample_clip(path, self.frames, self.fps, start=start, rng=rng)
            except VideoError as err:
                yield path, err
