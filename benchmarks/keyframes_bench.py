"""Keyframes measured on held-out Dancing Shapes clips (issue 33, item 5).

For each pipeline folder, on held-out clips and several seeds (DDIM, few steps, the model's
guidance):
- middle keyframe: first frame + the truth's frame ``--middle`` pinned, at each tau: PSNR at
  the pinned index against its keyframe, PSNR at frame 0, whole-clip PSNR against the truth
  beside copying the first frame, and motion continuity across the pinned frame (the mean
  absolute change, in uint8 levels, into and out of it, beside the truth's mean step);
- chained story: two shots continued from the last K frames (``--context``), the change
  across the shot boundary beside the mean change within the shots and the truth's step;
- sketch ending (models with the "mask" layout only): first frame + the Canny sketch of the
  truth's last frame; edge F-score of the generated last frame's edges against the sketch
  (1-pixel tolerance) beside the same model without the sketch, and the last frame's PSNR
  against the truth (its colours come from the first frame and the text alone).

    python benchmarks/keyframes_bench.py src/pixeldance/assets/pixeldance-shapes /tmp/kf_probe \
        [--clips 3 --seeds 2 --steps 10]

One JSON line per folder and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from pixeldance import PixelDancePipeline
from pixeldance.data.sketch import edge_map, to_sketch
from pixeldance.keyframes import Keyframe
from pixeldance.pipeline import Shot
from shapes_scores import held_out_clips, psnr, to_uint8


def step_change(video: np.ndarray) -> np.ndarray:
    """Mean absolute change between consecutive frames (F-1,), uint8 levels."""
    v = video.astype(np.float32)
    return np.abs(v[1:] - v[:-1]).mean(axis=(1, 2, 3))


def pixels(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1


def edge_f_score(frame: np.ndarray, sketch_edges: torch.Tensor) -> float:
    """F1 of the frame's Canny edges against the sketch's, each within 1 pixel of the other."""
    e = edge_map(pixels(frame), "canny")
    near = lambda m: F.max_pool2d(m, 3, 1, 1) > 0  # noqa: E731
    p = float((e.bool() & near(sketch_edges)).sum() / e.sum().clamp_min(1))
    r = float((sketch_edges.bool() & near(e)).sum() / sketch_edges.sum().clamp_min(1))
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def bench(folder: str, args) -> dict:
    pipe = PixelDancePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    layout = pipe.unet.config.get("c_image_layout", "zeros")
    h, w = pipe.default_size()
    clips = held_out_clips(args.clips, 4.0, 16, (h, w))
    common = dict(num_inference_steps=args.steps, num_frames=16, output_type="np", tau=0)
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(float(value))

    t0 = time.time()
    m = args.middle
    for clip, truth in clips:
        truth_step = step_change(truth).mean()
        add("truth_step", truth_step)
        copy = np.repeat(truth[:1], len(truth), axis=0)
        add("copy_first_psnr", psnr(copy, truth))
        for seed in range(args.seeds):
            gen = lambda s=seed: torch.Generator().manual_seed(s)  # noqa: E731
            for tau in args.taus:
                kf = [Keyframe(m, image=truth[m], tau=tau)]
                v = to_uint8(pipe(clip.caption, first_frame=truth[0], keyframes=kf,
                                  generator=gen(), **common).frames)[0]  # fmt: skip
                add(f"middle_psnr_tau{tau}", psnr(v[m], truth[m]))
                add(f"frame0_psnr_tau{tau}", psnr(v[0], truth[0]))
                add(f"clip_psnr_tau{tau}", psnr(v, truth))
                d = step_change(v)
                add(f"jump_at_middle_tau{tau}", (d[m - 1] + d[m]) / 2)
                add(f"mean_step_tau{tau}", d.mean())
            for k in args.context:
                shots = [Shot(clip.caption, num_frames=16), Shot(clip.caption, num_frames=16)]
                story = pipe.generate_story(shots, first_frame=truth[0], context_frames=k,
                                            generator=gen(), **common).frames  # fmt: skip
                d = step_change(to_uint8(story)[0])
                add(f"boundary_jump_k{k}", d[15])
                add(f"within_step_k{k}", np.delete(d, 15).mean())
            if layout == "mask":
                sketch = to_sketch(pixels(truth[-1]), "canny")
                edges = edge_map(pixels(truth[-1]), "canny")
                sketch_img = ((sketch[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
                for name, kfs in (("sketch", [Keyframe(-1, image=sketch_img, kind="sketch", tau=args.steps)]),
                                  ("nosketch", [])):  # fmt: skip
                    v = to_uint8(pipe(clip.caption, first_frame=truth[0], keyframes=kfs,
                                      generator=gen(), **common).frames)[0]  # fmt: skip
                    add(f"{name}_edge_f1", edge_f_score(v[-1], edges))
                    add(f"{name}_last_psnr", psnr(v[-1], truth[-1]))
    out = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
    out.update(folder=folder, layout=layout, clips=args.clips, seeds=args.seeds,
               steps=args.steps, seconds=round(time.time() - t0))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--middle", type=int, default=8)
    ap.add_argument("--taus", type=int, nargs="+", default=[10, 5])
    ap.add_argument("--context", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [bench(f, args) for f in args.folders]
    for r in results:
        print(json.dumps(r), flush=True)
    keys = sorted({k for r in results for k in r} - {"folder"})
    print("| metric | " + " | ".join(r["folder"] for r in results) + " |")
    print("| --- |" + " --- |" * len(results))
    for k in keys:
        print(f"| {k} | " + " | ".join(str(r.get(k, "-")) for r in results) + " |")


if __name__ == "__main__":
    main()
