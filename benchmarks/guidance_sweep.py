"""Choose a model's guidance scale and interval on validation clips, not on the scored ones.

Guidance trades motion for closeness to the ground truth: pushing the high-noise steps away
from the unconditional prediction makes movers commit to a path (direction accuracy rises),
while the whole-clip PSNR, which rewards a cautious average, falls. This sweep measures both
on Dancing Shapes clips from the validation seeds (``VALIDATION_BASE``: neither training nor
the held-out clips of ``shapes_bench.py``), so a setting chosen here is scored fairly there.

For each setting (DDIM, 20 steps):
- direction accuracy from a first frame (and from text alone with ``--text``) on
  ``--direction-clips`` single movers, over ``--seeds`` noise seeds, and how far the mover
  travels (pixels; the truth's travel beside it);
- frame 0 and whole-clip PSNR given first and last frames (tau 10 of 20) on ``--clips`` clips.

    PYTHONPATH=benchmarks python benchmarks/guidance_sweep.py [--model PATH] \
        --guidance 5 10 15 20 --guidance-interval 700 1000 [--out FILE.md]

Prints one JSON line per setting; with ``--out`` also writes a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pixeldance import PixelDancePipeline
from pixeldance.folders import shipped_model_path
from pixeldance.generation import make_scheduler
from shapes_bench import add_guidance_interval, run
from shapes_scores import (
    HELD_OUT_BASE,
    VALIDATION_BASE,
    direction_accuracy,
    held_out_clips,
    mover_truth,
    psnr,
    travel_px,
)


def sweep_one(pipe, guidance: float, interval, clips, movers, seeds, text: bool) -> dict:
    d = pipe.generation_config
    frames, size = d.num_frames, pipe.default_size()
    common = dict(guidance=guidance, frames=frames, size=size, steps=20, interval=interval)
    t0 = time.time()
    truth = mover_truth(movers)
    mv_prompts = [c.caption for c, _ in movers]
    mv_first = np.stack([v[0] for _, v in movers])
    acc, travel = [], []
    for seed in seeds:
        videos = run(pipe, mv_prompts, mv_first, seed=seed, **common)
        acc.append(direction_accuracy(videos, truth))
        travel.append(travel_px(videos, truth))
    gts = np.stack([v for _, v in clips])
    prompts = [c.caption for c, _ in clips]
    both = run(pipe, prompts, gts[:, 0], gts[:, -1], tau=10, **common)
    out = {
        "guidance": guidance,
        "guidance_interval": list(interval) if interval else None,
        "direction_accuracy_first_frame": round(float(np.mean(acc)), 3),
        "direction_accuracy_first_frame_by_seed": [round(a, 3) for a in acc],
        "travel_first_frame_px": round(float(np.mean(travel)), 2),
        "frame0_psnr": round(
            float(np.mean([psnr(v[0], g[0]) for v, g in zip(both, gts, strict=True)])), 2
        ),
        "clip_psnr": round(float(np.mean([psnr(v, g) for v, g in zip(both, gts, strict=True)])), 2),
    }
    if text:
        out["direction_accuracy_text"] = round(
            direction_accuracy(run(pipe, mv_prompts, seed=1, **common), truth), 3
        )
    out["seconds"] = round(time.time() - t0, 1)
    return out


def write_table(path: Path, rows: list[dict], reference: dict) -> None:
    lines = [
        "| guidance | interval | direction, first frame | travel (px) | frame 0 dB | clip dB |"
        + (" direction, text only |" if "direction_accuracy_text" in rows[0] else ""),
        "| --- | --- | --- | --- | --- | --- |"
        + (" --- |" if "direction_accuracy_text" in rows[0] else ""),
    ]
    for r in rows:
        low_high = r["guidance_interval"]
        if r["guidance"] == 1:
            iv = "none (no guidance)"
        else:
            iv = "every step" if low_high is None else f"t in [{low_high[0]}, {low_high[1]}]"
        line = (
            f"| {r['guidance']:g} | {iv} | {r['direction_accuracy_first_frame']:.0%} | "
            f"{r['travel_first_frame_px']:.1f} | {r['frame0_psnr']:.2f} | {r['clip_psnr']:.2f} |"
        )
        if "direction_accuracy_text" in r:
            line += f" {r['direction_accuracy_text']:.0%} |"
        lines.append(line)
    lines += [
        "",
        f"Ground truth: travel {reference['travel_ground_truth_px']:.1f} px, tracker direction "
        f"accuracy {reference['direction_accuracy_ground_truth']:.0%}; copying the first frame: "
        f"clip {reference['copy_first_frame_clip_psnr']:.2f} dB.",
    ]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped)")
    parser.add_argument(
        "--guidance", type=float, nargs="+", required=True, help="scales to try (1: none)"
    )
    add_guidance_interval(parser, "every step")
    parser.add_argument("--clips", type=int, default=8, help="validation clips for the PSNRs")
    parser.add_argument("--direction-clips", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3], help="noise seeds")
    parser.add_argument("--text", action="store_true", help="also score text-only direction")
    parser.add_argument(
        "--clip-set",
        choices=("validation", "held-out"),
        default="validation",
        help="validation seeds (choose here) or the held-out ones shapes_bench scores (to check "
        "how far a small sample's scores spread)",
    )
    parser.add_argument("--out", help="markdown table to write")
    args = parser.parse_args()
    if args.clips < 1 or args.direction_clips < 1:
        parser.error("--clips and --direction-clips must be at least 1")
    if any(g < 1 for g in args.guidance):
        parser.error("--guidance scales must be >= 1 (1 disables guidance)")

    pipe = PixelDancePipeline.from_pretrained(args.model or shipped_model_path())
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    d = pipe.generation_config
    frames, size, fps = d.num_frames, pipe.default_size(), d.fps
    base = VALIDATION_BASE if args.clip_set == "validation" else HELD_OUT_BASE
    clips = held_out_clips(args.clips, fps, frames, size, base=base)
    movers = held_out_clips(args.direction_clips, fps, frames, size, single_mover=True, base=base)
    mv_gt = np.stack([v for _, v in movers])
    gts = np.stack([v for _, v in clips])
    reference = {
        "travel_ground_truth_px": travel_px(mv_gt, mover_truth(movers)),
        "direction_accuracy_ground_truth": direction_accuracy(mv_gt, mover_truth(movers)),
        "copy_first_frame_clip_psnr": round(
            float(np.mean([psnr(np.repeat(g[:1], frames, 0), g) for g in gts])), 2
        ),
    }
    print(json.dumps(reference), flush=True)
    interval = tuple(args.guidance_interval) if args.guidance_interval else None
    rows = []
    for g in args.guidance:
        rows.append(sweep_one(pipe, g, interval, clips, movers, args.seeds, args.text))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        write_table(Path(args.out), rows, reference)


if __name__ == "__main__":
    main()
