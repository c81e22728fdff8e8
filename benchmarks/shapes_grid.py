"""A picture for comparing models by eye: held-out Dancing Shapes clips, truth and each model.

For each of a few held-out clips (the seeds of ``shapes_bench.py``), one row of ground-truth
frames, then one row per model folder generated from the clip's caption, first frame and last
frame (tau = half the DDIM steps, as the clip PSNR of ``shapes_quick.py``), every other frame.

    python benchmarks/shapes_grid.py src/pixeldance/assets/pixeldance-shapes RUN/pipeline \\
        --out grid.png [--clips 3]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from pixeldance import PixelDancePipeline
from pixeldance.files import atomic_path
from pixeldance.generation import make_scheduler
from shapes_bench import run
from shapes_scores import held_out_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="pipeline folders, one row each per clip")
    parser.add_argument("--out", required=True, help="output .png")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--scale", type=int, default=2, help="pixel zoom of the picture")
    args = parser.parse_args()
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out must be a .png file, got {args.out!r}")

    rows_per_clip: list[list[np.ndarray]] = []
    for k, path in enumerate(args.models):
        pipe = PixelDancePipeline.from_pretrained(path)
        pipe.set_progress_bar_config(disable=True)
        d = pipe.generation_config
        pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
        frames, size = d.num_frames, pipe.default_size()
        data = held_out_clips(args.clips, 4.0, frames, size)
        gts = np.stack([v for _, v in data])
        videos = run(
            pipe,
            [c.caption for c, _ in data],
            gts[:, 0],
            gts[:, -1],
            tau=args.steps // 2,
            steps=args.steps,
            frames=frames,
            size=size,
        )
        if k == 0:
            rows_per_clip = [[g] for g in gts]
        for rows, v in zip(rows_per_clip, videos, strict=True):
            rows.append(v)
    rows = [np.concatenate(list(r[::2]), axis=1) for clip in rows_per_clip for r in clip]
    grid = np.concatenate(rows, axis=0)
    img = Image.fromarray(grid).resize(
        (grid.shape[1] * args.scale, grid.shape[0] * args.scale), Image.Resampling.NEAREST
    )
    with atomic_path(args.out) as tmp:
        img.save(tmp, format="PNG")
    print(f"wrote {args.out}: per clip, rows truth then {', '.join(args.models)}")


if __name__ == "__main__":
    main()
