"""Tiny webdataset shard sets written in a test (tar files of mp4 + txt + json per sample)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from pixeldance.files import write_mp4


def write_shards(root: Path, n_shards: int = 4, per_shard: int = 3) -> list[str]:
    """``shard-00000.tar ...``: ``per_shard`` random 16x24 clips of 30 frames at 8 fps each,
    captioned ``caption {key}``; returns the shard paths."""
    urls = []
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        path = root / f"shard-{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                key = f"{s:05d}{i:04d}"
                buf = root / f"{key}.mp4"
                write_mp4(rng.integers(0, 255, (30, 16, 24, 3), dtype=np.uint8), buf, fps=8)
                members = {
                    f"{key}.mp4": buf.read_bytes(),
                    f"{key}.txt": f"caption {key}".encode(),
                    f"{key}.json": json.dumps({"key": key, "status": "success"}).encode(),
                }
                buf.unlink()
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        urls.append(str(path))
    return urls


def pattern(root: Path, n_shards: int) -> str:
    return f"{root}/shard-{{00000..{n_shards - 1:05d}}}.tar"
