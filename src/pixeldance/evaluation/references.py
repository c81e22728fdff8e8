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
