"""Writing a Dancing Shapes dataset: mp4 clips, a WebVid-style manifest, each clip's parameters
and captioned stills, from the world in :mod:`pixeldance.data.shapes`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .captions import still_caption
from .shapes import (
    background_texture,
    clip_to_json,
    is_single_mover,
    render_clip,
    render_frame,
    sample_clip,
    unknown_choice,
)

# offsets within a dataset seed's stream (seed * 1_000_003 + offset): clips from 0, stills
# from 500_000, candidates for the extra single movers of ``mover_share`` from 700_000
_STILLS_OFFSET = 500_000
_MOVERS_OFFSET = 700_000


def mover_seeds(seed: int, count: int) -> list[int]:
    """Seeds of ``count`` single-mover clips from the dataset seed's mover stream, in order:
    the world's own single movers (every colour, shape, direction, wording and background)."""
    out, s = [], seed * 1_000_003 + _MOVERS_OFFSET
    while len(out) < count:
        if is_single_mover(sample_clip(s)):
            out.append(s)
        s += 1
        if s >= (seed + 1) * 1_000_003:  # pragma: no cover - about 8% of clips qualify
            raise ValueError(f"too many single movers asked of seed {seed}: {count}")
    return out


def write_dataset(
    out: str | Path,
    num: int,
    seed: int = 0,
    num_images: int | None = None,
    workers: int = 1,
    progress: bool = True,
    mover_share: float = 0.0,
    shapes: tuple[str, ...] | None = None,
    motions: tuple[str, ...] | None = None,
    motion_share: float = 1.0,
) -> Path:
    """Write ``num`` clips and ``num_images`` captioned stills under ``out``.

    Layout: ``videos/{page_dir}/{videoid}.mp4``, ``params/{videoid}.json``,
    ``manifest.csv`` (videoid, name, page_dir, duration, path, height, width), ``images/*.png`` + ``.txt`` and
    ``images.csv`` (path, caption). Clip i uses seed ``seed * 1_000_003 + i``.

    ``mover_share`` (0-1) replaces that share of the clips, the last ones, by single movers
    under a still camera drawn from the world (:func:`mover_seeds`); in the world's own mix
    they are about 8% of clips. ``shapes``: draw only these shapes (from :data:`SHAPES` and
    :data:`NEW_SHAPES`) in the clips; ``motions``: draw only these motions (from :data:`MOTIONS`
    and :data:`NEW_MOTIONS`; a name given twice is drawn twice as often). Stills and the single
    movers of ``mover_share`` stay the world's own, and so do the clips after the first
    ``motion_share`` (0-1) of the others: a mix of the new motion and the world as it is.
    """
    from tqdm import tqdm

    if not 0.0 <= mover_share <= 1.0:
        raise ValueError(f"mover_share must be between 0 and 1, got {mover_share}")
    if not 0.0 <= motion_share <= 1.0:
        raise ValueError(f"motion_share must be between 0 and 1, got {motion_share}")
    problem = unknown_choice("shape", shapes) or unknown_choice("motion", motions)
    if problem:
        raise ValueError(problem)
    movers = round(mover_share * num)
    seeds = [seed * 1_000_003 + i for i in range(num - movers)] + mover_seeds(seed, movers)
    out = Path(out)
    (out / "params").mkdir(parents=True, exist_ok=True)
    shapes, motions = (tuple(x) if x else None for x in (shapes, motions))
    asked = round(motion_share * (num - movers))  # clips drawn with ``motions``
    jobs = [(out, s, shapes, motions if i < asked else None) for i, s in enumerate(seeds)]
    if workers > 1:
        from multiprocessing import Pool

        with Pool(workers) as pool:
            rows = list(
                tqdm(
                    pool.imap(_write_one, jobs, chunksize=8),
                    total=num,
                    disable=not progress,
                    desc="clips",
                )
            )
    else:
        rows = [_write_one(j) for j in tqdm(jobs, disable=not progress, desc="clips")]
    _write_csv(
        out / "manifest.csv",
        ["videoid", "name", "page_dir", "duration", "path", "height", "width"],
        rows,
    )

    num_images = num // 2 if num_images is None else num_images
    (out / "images").mkdir(exist_ok=True)
    image_rows = []
    for i in tqdm(range(num_images), disable=not progress, desc="images"):
        clip = sample_clip(seed * 1_000_003 + _STILLS_OFFSET + i)
        for o in clip.objects:  # stills: objects are where they are, captions say what they are
            o.motion, o.direction = "still", None
        clip.camera = "static"
        frame = render_frame(clip, background_texture(clip, clip.height, clip.width), 0.0)
        caption = still_caption(clip, np.random.default_rng(clip.seed))
        name = f"images/still{i:06d}.png"
        Image.fromarray(frame).save(out / name)
        (out / name).with_suffix(".txt").write_text(caption)
        image_rows.append({"path": name, "caption": caption})
    _write_csv(out / "images.csv", ["path", "caption"], image_rows)
    return out


def _write_one(job) -> dict:
    from ..files import write_mp4

    out, seed, shapes, motions = job
    clip = sample_clip(seed, shapes=shapes, motions=motions)
    page_dir = f"{seed % 100:03d}"
    rel = f"videos/{page_dir}/{clip.videoid}.mp4"
    write_mp4(render_clip(clip), out / rel, fps=clip.fps)
    (out / "params" / f"{clip.videoid}.json").write_text(json.dumps(clip_to_json(clip)))
    duration = clip.num_frames / clip.fps
    return {
        "videoid": clip.videoid,
        "name": clip.caption,
        "page_dir": page_dir,
        "duration": f"{duration:.3f}",
        "path": rel,
        "height": clip.height,
        "width": clip.width,
    }


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    from ..files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
