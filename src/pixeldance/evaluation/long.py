"""Long videos scored chunk by chunk (the paper's Fig. 8: FVD of every 16-frame chunk of
autoregressively chained videos, to see quality hold or drift as the video goes on).

Each sample becomes an N-frame video by chaining clips (``pipe.generate_story``: clip k+1
starts from clip k's last frame, passed as a latent; the shared frame appears once), so
ceil((N - 1) / (F - 1)) clips of F frames are generated and the result cut to N frames. It is
written whole (``{out}/long/videos/{i:05d}.mp4``) and as consecutive chunks of ``chunk``
frames (``{out}/long/chunks/{k:03d}/{i:05d}.mp4``), each encoded once from the generated
frames. Chunk k of every sample is then scored like any generated set
(:func:`pixeldance.evaluation.score.score`, the reference statistics computed once and reused
from the cache), giving one row per chunk: a table and a plot.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..files import atomic_path, write_video
from .generate import _check_record
from .inputs import Item

CHUNK_METRICS = ("fvd", "fid", "is", "video_is", "clipsim", "flicker")  # per chunk


def clips_needed(frames: int, clip_frames: int) -> int:
    """Clips of ``clip_frames`` chained (one shared frame each) to reach ``frames``."""
    return max(1, math.ceil((frames - 1) / (clip_frames - 1)))


def generate_long(
    pipe,
    settings,
    items: Sequence[Item],
    out: str | Path,
    frames: int,
    chunk: int,
    seed: int = 0,
    first_frames: Sequence[Path | None] | None = None,
    record: dict | None = None,
) -> list[list[Item]]:
    """Generate an N-frame chained video per item; return, per chunk index, the items with
    ``video`` set to that chunk's file (see module docs)."""
    from ..images import frames_to_uint8
    from ..pipeline import Shot

    if frames < chunk:
        raise ValueError(f"--long {frames}: shorter than one {chunk}-frame chunk")
    out = Path(out) / "long"
    _check_record(out / "videos", {**(record or {}), "seed": seed, "long_frames": frames})
    count, chunks = clips_needed(frames, settings.num_frames), frames // chunk
    per_chunk: list[list[Item]] = [[] for _ in range(chunks)]
    for i, it in enumerate(tqdm(items, desc="long videos", leave=False)):
        paths = [out / "chunks" / f"{k:03d}" / f"{i:05d}.mp4" for k in range(chunks)]
        if not all(p.is_file() for p in paths):
            result = pipe.generate_story(
                [Shot(prompt=it.prompt or "")] * count,
                first_frame=None if first_frames is None else first_frames[i],
                generator=settings.placement.generator(seed + i),
                output_type="np",
                settings=settings,
            )
            video = frames_to_uint8(result.frames)[:frames]
            write_video(video, out / "videos" / f"{i:05d}.mp4", fps=settings.fps)
            for k, p in enumerate(paths):
                p.parent.mkdir(parents=True, exist_ok=True)
                write_video(video[k * chunk : (k + 1) * chunk], p, fps=settings.fps)
        for k, p in enumerate(paths):
            per_chunk[k].append(Item(prompt=it.prompt, video=p))
    return per_chunk


def score_chunks(chunks: list[list[Item]], references, extractors, config) -> dict:
    """The report of a long run: one row per chunk (its scores), the protocol of chunk 0."""
    from .score import score

    metrics = [m for m in (config.metrics or CHUNK_METRICS) if m in CHUNK_METRICS]
    config = dataclasses.replace(config, metrics=tuple(metrics))
    rows, first, warnings = [], None, []
    for k, items in enumerate(chunks):
        report = score(items, references, extractors, config)
        first = first or report
        warnings += [w for w in report["warnings"] if w not in warnings]
        row = {"chunk": k, "frames": f"{k * config.frames}-{(k + 1) * config.frames - 1}"}
        rows.append(row | {key: e["value"] for key, e in report["scores"].items()})
    return {
        "scores": {},
        "long": {"chunk_frames": config.frames, "chunks": rows, "protocols": first["scores"]},
        "protocol": first["protocol"],
        "warnings": warnings,
    }


def long_table(long: dict) -> list[str]:
    keys = [k for k in long["chunks"][0] if k not in ("chunk", "frames")]
    lines = [
        "| chunk | frames | " + " | ".join(keys) + " |",
        "| --- | --- |" + " --- |" * len(keys),
    ]
    for row in long["chunks"]:
        values = " | ".join(f"{row[k]:.4g}" for k in keys)
        lines.append(f"| {row['chunk']} | {row['frames']} | {values} |")
    return lines


def write_long(out: str | Path, long: dict) -> list[Path]:
    """``long.json``, ``long.md`` and, if matplotlib is installed, ``long.png`` (each score
    against the chunk index) in ``out``."""
    out = Path(out)
    written = []
    with atomic_path(out / "long.json") as tmp:
        tmp.write_text(json.dumps(long, indent=1, default=str))
    written.append(out / "long.json")
    with atomic_path(out / "long.md") as tmp:
        tmp.write_text("\n".join(["# Score by chunk", "", *long_table(long)]) + "\n")
    written.append(out / "long.md")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    keys = [k for k in long["chunks"][0] if k not in ("chunk", "frames")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    x = np.array([r["chunk"] for r in long["chunks"]])
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(x, [r[key] for r in long["chunks"]], marker="o")
        ax.set_xlabel(f"chunk ({long['chunk_frames']} frames each)")
        ax.set_title(key)
    fig.tight_layout()
    with atomic_path(out / "long.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    written.append(out / "long.png")
    return written
