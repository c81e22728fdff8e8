"""Manifests held compactly: parsed once into a memory-mapped index beside the manifest.

A manifest (CSV or JSONL) is read once into an index folder of flat binary files: the paths
and the captions each as one UTF-8 byte blob with an offsets array, and the optional
``height``/``width`` columns as an int32 array. Training opens the index with ``np.memmap``:
no Python object per row, nothing copied into DataLoader workers (they share the mapped pages,
and a pickled :class:`Manifest` carries only the folder's name). The index lives beside the
manifest (``.NAME.index/``) or, where that folder is read-only, in the user's cache; it records
the manifest's size and modification time and is rebuilt when they change. One process builds
it under a file lock and renames it into place, so several ranks starting together build it
once. File sizes probed for aspect-ratio buckets are cached in the same folder
(:mod:`pixeldance.data.sizes`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest_index import build_index, file_lock, index_dir, index_is_valid

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Record:
    path: str
    caption: str
    height: int | None = None
    width: int | None = None


class Strings:
    """Strings stored as one UTF-8 blob ``data`` and ``offsets`` (n + 1): item i is
    ``data[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    @classmethod
    def from_list(cls, items: list[str]) -> Strings:
        encoded = [s.encode() for s in items]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode()


def _map(path: Path, dtype, shape=None) -> np.ndarray:
    if path.stat().st_size == 0:  # mmap cannot map an empty file
        return np.zeros(shape or 0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


class Manifest(Sequence[Record]):
    """Records of a manifest: ``manifest[i]`` -> :class:`Record`, built on demand.

    ``index`` is the folder the arrays are mapped from (None for a manifest held in memory);
    relative paths are resolved against ``base`` when read.
    """

    def __init__(
        self,
        paths: Strings,
        captions: Strings,
        sizes: np.ndarray | None = None,
        base: Path | None = None,
        index: Path | None = None,
    ):
        self.paths, self.captions, self.base, self.index = paths, captions, base, index
        self.sizes = sizes  # (n, 2) int32 height, width; 0 where unknown; None: no columns

    @classmethod
    def from_records(cls, records: list[Record]) -> Manifest:
        sizes = np.array([(r.height or 0, r.width or 0) for r in records], np.int32).reshape(-1, 2)
        has_sizes = any(r.height and r.width for r in records)
        return cls(
            Strings.from_list([r.path for r in records]),
            Strings.from_list([r.caption for r in records]),
            sizes if has_sizes else None,
        )

    @classmethod
    def open(cls, index: Path, base: Path | None = None) -> Manifest:
        meta = json.loads((index / "meta.json").read_text())
        n = meta["rows"]
        paths = Strings(_map(index / "paths.bin", np.uint8), _map(index / "paths.off", np.int64))
        captions = Strings(
            _map(index / "captions.bin", np.uint8), _map(index / "captions.off", np.int64)
        )
        sizes = _map(index / "sizes.bin", np.int32, (n, 2)) if meta["has_sizes"] else None
        return cls(paths, captions, sizes, base, index)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        rel = self.paths[i]
        if self.base is None or "://" in rel or os.path.isabs(rel):
            return rel
        return os.path.join(self.base, rel)

    def __getitem__(self, i: int) -> Record:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        h, w = (int(self.sizes[i, 0]), int(self.sizes[i, 1])) if self.sizes is not None else (0, 0)
        return Record(self.path(i), self.captions[i], h or None, w or None)

    def __iter__(self) -> Iterator[Record]:
        return (self[i] for i in range(len(self)))

    def __getstate__(self):  # workers reopen the mapped index instead of receiving its bytes
        if self.index is None:
            return dict(self.__dict__)
        return {"index": self.index, "base": self.base}

    def __setstate__(self, state):
        if "paths" in state:
            self.__dict__.update(state)
        else:
            self.__dict__.update(Manifest.open(state["index"], state["base"]).__dict__)


def read_video_records(manifest: str | Path, root: str | Path | None = None) -> Manifest:
    """The training records (path, caption, optional size) of a CSV or JSONL manifest of
    videos, from its index (built on first use). Also the schema of a captioned image list
    (:func:`read_image_records`); an evaluation manifest has its own reader
    (:mod:`pixeldance.evaluation.inputs`).

    Paths come from a ``path``-like column (relative to ``root``, default the manifest's
    folder), or from WebVid's own columns as ``{root}/{page_dir}/{videoid}.mp4`` (``root``
    defaulting to the manifest's ``videos/`` folder if it exists). Captions come from a
    ``caption``-like column or WebVid's ``name``. Optional ``height``/``width`` columns let
    batches be bucketed without probing the files.
    """
    manifest = Path(manifest)
    if manifest.is_dir():
        raise ValueError(f"the manifest is a folder, not a CSV or JSONL file: {manifest}")
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    index = index_dir(manifest)
    if not index_is_valid(index, manifest):
        lock = index.with_name(index.name + ".lock")
        made_lock = not lock.exists()
        try:
            with file_lock(lock):
                if not index_is_valid(index, manifest):  # another process may have built it
                    build_index(manifest, index)
        except BaseException:
            if made_lock:  # a manifest that cannot be read leaves nothing beside it
                lock.unlink(missing_ok=True)
            raise
    meta = json.loads((index / "meta.json").read_text())
    base = Path(root) if root else manifest.parent
    if meta["webvid"] and root is None and (manifest.parent / "videos").is_dir():
        base = manifest.parent / "videos"
    return Manifest.open(index, base)


def read_image_records(source: str | Path) -> Manifest:
    """Captioned images from a CSV/JSONL (path, caption) or a folder of images with ``.txt``
    captions beside them (the img2dataset layout)."""
    source = Path(source)
    if not source.is_dir():
        return read_video_records(source)
    records = []
    for p in sorted(source.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            txt = p.with_suffix(".txt")
            records.append(Record(str(p), txt.read_text().strip() if txt.exists() else ""))
    if not records:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {source}")
    return Manifest.from_records(records)
