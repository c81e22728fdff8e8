"""Clip sizes for aspect-ratio buckets: from the manifest's ``height``/``width`` columns, or
probed from the files once and cached beside the manifest's index.

Nothing is probed when there is one bucket (every clip goes there) or when the manifest holds
every size. Otherwise the rows without a size are probed by one process (the others wait on a
file lock, then read its result), with ``workers`` processes in parallel and a progress bar,
and the sizes are written into the index folder, so later starts and other ranks read them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .buckets import Bucket, assign_buckets
from .manifest import Manifest, Record
from .manifest_index import file_lock
from .video import probe

logger = logging.getLogger(__name__)


def probe_size(path: str, image: bool = False) -> tuple[int, int]:
    """``(height, width)`` of a video (or an image), or ``(0, 0)`` if it cannot be read."""
    try:
        if image:
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
            return h, w
        info = probe(path)
        return info.height, info.width
    except Exception:  # unreadable: bucketed anywhere, skipped when loaded
        return 0, 0


def _probe_job(job: tuple[str, bool]) -> tuple[int, int]:
    return probe_size(*job)


def probe_sizes(
    manifest: Manifest, rows: np.ndarray, image: bool, workers: int = 0, progress: bool = True
) -> np.ndarray:
    """``(len(rows), 2)`` int32 heights and widths of the given rows' files, probed."""
    from tqdm import tqdm

    jobs = ((manifest.path(int(i)), image) for i in rows)
    bar = dict(total=len(rows), desc="probing sizes", disable=not progress, mininterval=2)
    if workers > 1:
        from multiprocessing import Pool

        with Pool(workers) as pool:
            found = list(tqdm(pool.imap(_probe_job, jobs, chunksize=64), **bar))
    else:
        found = [_probe_job(j) for j in tqdm(jobs, **bar)]
    return np.array(found, np.int32).reshape(-1, 2)


def _cached_probe(
    manifest: Manifest, rows: np.ndarray, image: bool, workers: int, progress: bool
) -> np.ndarray:
    """Probed sizes of ``rows``, read from the index folder or probed once and written there."""
    from ..files import atomic_path

    cache = manifest.index / f"probed-{'image' if image else 'video'}.bin"

    def cached() -> np.ndarray | None:
        if cache.exists() and cache.stat().st_size == rows.size * 8:
            return np.fromfile(cache, np.int32).reshape(-1, 2)
        return None

    found = cached()
    if found is None:
        with file_lock(cache.with_suffix(".lock")):
            found = cached()  # another rank may have probed while this one waited
            if found is None:
                logger.info(
                    "probing %d files for their sizes (once; cached in %s)", rows.size, cache
                )
                found = probe_sizes(manifest, rows, image, workers, progress)
                with atomic_path(cache) as tmp:
                    found.tofile(tmp)
    return found


def manifest_sizes(
    manifest: Manifest, image: bool = False, workers: int = 0, progress: bool = True
) -> np.ndarray:
    """``(n, 2)`` int32 height and width of every record: the manifest's own where it has
    them, probed (once, cached beside an index) where not; ``(0, 0)``: unreadable."""
    n = len(manifest)
    if manifest.sizes is None:
        sizes, missing = np.zeros((n, 2), np.int32), np.arange(n)
    else:
        sizes = manifest.sizes  # mapped; copied only if some rows must be filled in
        missing = np.flatnonzero((sizes[:, 0] <= 0) | (sizes[:, 1] <= 0))
    if missing.size:
        sizes = np.array(sizes, np.int32)
        if manifest.index is None:
            sizes[missing] = probe_sizes(manifest, missing, image, workers, progress)
        else:
            sizes[missing] = _cached_probe(manifest, missing, image, workers, progress)
    return sizes


def record_buckets(
    records: Manifest | Sequence[Record],
    buckets: list[Bucket],
    images: bool = False,
    workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Bucket index of each record (int16): without looking at any file when there is one
    bucket, else from the sizes of :func:`manifest_sizes`."""
    if len(buckets) == 1:
        return np.zeros(len(records), np.int16)
    if not isinstance(records, Manifest):
        records = Manifest.from_records(list(records))
    sizes = manifest_sizes(records, images, workers, progress)
    return assign_buckets(sizes[:, 0], sizes[:, 1], buckets)
