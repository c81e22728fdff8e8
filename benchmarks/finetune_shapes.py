"""The fine-tuning worked example (TRAINING.md): the shipped model before and after a LoRA
adapter trained on hexagons, a shape the shipped model never saw.

New skill: on held-out hexagon clips (``sample_clip(..., shapes=("hexagon",))`` from the
held-out seeds), given their first and last frames (tau 10 of 20 DDIM steps), the PSNR of the
frames in between (``hexagon_middle_psnr``: the instructions pin frames 0 and F-1, the shape
has to be drawn in the rest) and of the whole clip. Old skills, on the standard held-out
clips (benchmarks/shapes_scores.py): frame 0 PSNR (first and last frame given, tau 10) and
last frame PSNR at full tau, as benchmarks/shapes_quick.py scores them.

    python benchmarks/finetune_shapes.py --adapter runs/hexagon-lora/adapter [--clips 8]

One JSON line: the scores without and with the adapter, and their differences.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from pixeldance import PixelDancePipeline  # noqa: E402
from pixeldance.data.shapes import sample_clip  # noqa: E402
from pixeldance.folders import shipped_model_path  # noqa: E402
from pixeldance.generation import make_scheduler  # noqa: E402
from shapes_bench import run  # noqa: E402
from shapes_scores import HELD_OUT_BASE, held_out_clips, psnr, render_at  # noqa: E402


def hexagon_clips(n: int, fps: float, frames: int, size: tuple[int, int]):
    """Held-out clips drawn with hexagons only (seeds the training set does not use)."""
    out = []
    for k in range(n):
        clip = sample_clip(HELD_OUT_BASE + k, aspect="1:1", shapes=("hexagon",))
        out.append((clip, render_at(clip, fps, frames, size)))
    return out


def score(pipe, clips: int, fps: float = 4.0) -> dict:
    frames, size = pipe.generation_config.num_frames, pipe.default_size()
    common = dict(frames=frames, size=size, steps=20, guidance=1.0)

    def given_both(data, tau):
        gts = np.stack([v for _, v in data])
        prompts = [c.caption for c, _ in data]
        return gts, run(pipe, prompts, gts[:, 0], gts[:, -1], tau=tau, **common)

    hex_gts, hex_videos = given_both(hexagon_clips(clips, fps, frames, size), 10)
    old = held_out_clips(clips, fps, frames, size)
    gts, videos = given_both(old, 10)
    _, full = given_both(old, 20)
    pairs = list(zip(hex_videos, hex_gts, strict=True))
    return {
        "hexagon_middle_psnr": float(np.mean([psnr(v[1:-1], g[1:-1]) for v, g in pairs])),
        "hexagon_clip_psnr": float(np.mean([psnr(v, g) for v, g in pairs])),
        "frame0_psnr": float(np.mean([psnr(v[0], g[0]) for v, g in zip(videos, gts, strict=True)])),
        "last_frame_psnr_full_tau": float(
            np.mean([psnr(v[-1], g[-1]) for v, g in zip(full, gts, strict=True)])
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(shipped_model_path()), help="the base pipeline")
    p.add_argument("--adapter", required=True, help="the LoRA run's adapter/ folder")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--clips", type=int, default=8)
    args = p.parse_args()
    t0 = time.time()
    out = {}
    for name, adapter in (("before", None), ("after", args.adapter)):
        pipe = PixelDancePipeline.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
        if adapter:
            pipe.load_lora(adapter, args.scale)
        out[name] = score(pipe, args.clips)
    out["change_db"] = {k: out["after"][k] - out["before"][k] for k in out["before"]}
    out.update(clips=args.clips, guidance=1.0, steps=20, seconds=round(time.time() - t0, 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
