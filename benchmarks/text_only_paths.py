"""The two text-only paths of the shipped model on Dancing Shapes direction.

Held-out single movers (``shapes_scores.held_out_clips``); from each caption alone, the model
makes a clip two ways, with its own generation settings and seed ``i`` for clip ``i``:

- ``text_only``: no first-frame instruction (``pixeldance generate`` without ``--first-frame``);
- ``self``: first its own image mode makes a first frame (``num_frames=1``, no image
  instruction, seed ``i``), then the clip is generated from caption + that frame
  (``pixeldance eval --first-frame self``; the paper's two-stage idea with the model as its
  own text-to-image model).

Scores: direction accuracy (the mover, tracked by colour, goes the caption's way; 8
directions, chance 12.5%), the share of clips where the mover's colour is found at all, and
travel in pixels.

    PYTHONPATH=benchmarks python benchmarks/text_only_paths.py --clips 8 --out results/text_only.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pixeldance import PixelDancePipeline
from pixeldance.evaluation.first_frames import SelfImage
from pixeldance.folders import shipped_model_path
from pixeldance.images import frames_to_uint8
from shapes_scores import direction_accuracy, held_out_clips, mover_truth, track, travel_px


def generate(pipe, settings, prompts, first_frames=None) -> list[np.ndarray]:
    out = []
    for i, prompt in enumerate(prompts):
        result = pipe(
            prompt,
            first_frame=None if first_frames is None else first_frames[i],
            generator=torch.Generator().manual_seed(i),
            output_type="np",
            settings=settings,
        )
        out.append(frames_to_uint8(result.frames))
    return out


def scores(videos, truth) -> dict:
    found = [
        sum(p is not None for p in track(v, col)) >= 2
        for v, (_, col) in zip(videos, truth, strict=True)
    ]
    return {
        "direction_accuracy": direction_accuracy(videos, truth),
        "mover_found": float(np.mean(found)),
        "travel_px": travel_px(videos, truth),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="pipeline folder (default: the shipped model)")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    pipe = PixelDancePipeline.from_pretrained(args.model or shipped_model_path())
    pipe.set_progress_bar_config(disable=True)
    settings = pipe.generation_settings()
    movers = held_out_clips(
        args.clips, settings.fps, settings.frames, (settings.height, settings.width), True
    )
    truth, prompts = mover_truth(movers), [c.caption for c, _ in movers]
    result: dict = {"clips": args.clips, "settings": str(settings)}
    t0 = time.time()
    result["text_only"] = scores(generate(pipe, settings, prompts), truth)
    result["text_only"]["seconds"] = round(time.time() - t0, 1)
    t0 = time.time()
    maker = SelfImage(pipe, settings)
    firsts = [maker(p, i) for i, p in enumerate(prompts)]
    result["self"] = scores(generate(pipe, settings, prompts, firsts), truth)
    result["self"]["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
