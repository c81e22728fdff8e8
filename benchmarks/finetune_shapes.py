"""The fine-tuning worked example (TRAINING.md): the shipped model before and after a LoRA
adapter trained on a motion it never saw, ``fade`` (``make-shapes --motions fade,...``): the
object fades into the background and is gone by the end of the clip.

New skill, on held-out fade clips (seeds the training sets do not use, a still camera, square):
given the first frame and the caption alone (no last frame), how much of each object is still
there in the last generated frame (``fade_remaining``: the share of the object's frame-0 pixels
that still show its colour; the ground truth's is 0, a model that keeps the object scores 1),
and the share of objects that fade below a quarter (``fade_rate``). The control asks the same
first frames with "fades away" swapped for "grows bigger" (a motion of the world that keeps
every pixel of the object; the truth's share is 1): an adapter that fades every object whatever
the caption says shows there (``control_remaining``, ``control_fade_rate``).
Old skills, on the standard held-out clips (benchmarks/shapes_scores.py): frame 0 PSNR (first
and last frame given, tau 10 of 20) and last frame PSNR at full tau, as
benchmarks/shapes_quick.py scores them.

    python benchmarks/finetune_shapes.py --adapter runs/fade-lora/adapter [--clips 16]

One JSON line: the scores without and with the adapter, and their differences.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from pixeldance import PixelDancePipeline  # noqa: E402
from pixeldance.data.captions import caption_for  # noqa: E402
from pixeldance.data.shapes import COLOURS, sample_clip  # noqa: E402
from pixeldance.files import atomic_path  # noqa: E402
from pixeldance.folders import shipped_model_path  # noqa: E402
from pixeldance.generation import make_scheduler  # noqa: E402
from shapes_bench import run  # noqa: E402
from shapes_scores import (  # noqa: E402
    HELD_OUT_BASE,
    held_out_clips,
    psnr,
    render_at,
    shows_colour,
)

GONE = 0.25  # an object counts as faded when less than this share of it is left


def fade_clips(n: int, fps: float, frames: int, size: tuple[int, int]):
    """Held-out square clips whose objects all fade, under a still camera."""
    out, seed = [], HELD_OUT_BASE
    while len(out) < n:
        clip = sample_clip(seed, aspect="1:1", motions=("fade",))
        seed += 1
        if clip.camera == "static":
            out.append((clip, render_at(clip, fps, frames, size)))
    return out


def growing(clip):
    """The clip with every fading object growing instead, captioned afresh."""
    out = copy.deepcopy(clip)
    for obj in out.objects:
        obj.motion = "grow"
    out.caption = caption_for(out, np.random.default_rng(clip.seed))
    return out


def remaining(video: np.ndarray, truth: np.ndarray, colour) -> float | None:
    """Share of the object's pixels in the true first frame (those that show its colour there
    and not in the true last frame, so background of a like colour is left out) that still show
    its colour in ``video``'s last frame; None if the object covers fewer than 3 pixels."""
    region = shows_colour(truth[0], colour) & ~shows_colour(truth[-1], colour)
    if region.sum() < 3:
        return None
    return float(shows_colour(video[-1], colour)[region].mean())


def fade_scores(videos, data) -> dict:
    shares = [
        share
        for video, (clip, truth) in zip(videos, data, strict=True)
        for obj in clip.objects
        if (share := remaining(video, truth, COLOURS[obj.colour])) is not None
    ]
    return {
        "remaining": float(np.mean(shares)),
        "rate": float(np.mean([s < GONE for s in shares])),
        "objects": len(shares),
    }


def score(pipe, clips: int, fps: float = 4.0, shown: dict | None = None) -> dict:
    """The scores; ``shown``, if given, gets the fade clips' truth and the two generations."""
    frames, size = pipe.generation_config.num_frames, pipe.default_size()
    common = dict(frames=frames, size=size, steps=20)
    shipped = dict(guidance=15.0, interval=(700, 1000))  # the shipped model's guidance

    fades = fade_clips(clips, fps, frames, size)
    firsts = np.stack([v[0] for _, v in fades])
    captions = [c.caption for c, _ in fades]
    grows = [growing(c) for c, _ in fades]
    told = run(pipe, captions, firsts, **common, **shipped)
    control = run(pipe, [c.caption for c in grows], firsts, **common, **shipped)
    truth = fade_scores(np.stack([v for _, v in fades]), fades)
    grow_truth = np.stack([render_at(c, fps, frames, size) for c in grows])
    new, ctrl = fade_scores(told, fades), fade_scores(control, fades)
    if shown is not None:
        shown.update(truth=np.stack([v for _, v in fades]), told=told, control=control)

    def given_both(data, tau):
        gts = np.stack([v for _, v in data])
        prompts = [c.caption for c, _ in data]
        return gts, run(pipe, prompts, gts[:, 0], gts[:, -1], tau=tau, guidance=1.0, **common)

    old = held_out_clips(clips, fps, frames, size)
    gts, videos = given_both(old, 10)
    _, full = given_both(old, 20)
    return {
        "fade_remaining": new["remaining"],
        "fade_rate": new["rate"],
        "fade_clip_psnr": float(
            np.mean([psnr(v, g) for v, (_, g) in zip(told, fades, strict=True)])
        ),
        "control_remaining": ctrl["remaining"],
        "control_fade_rate": ctrl["rate"],
        "frame0_psnr": float(np.mean([psnr(v[0], g[0]) for v, g in zip(videos, gts, strict=True)])),
        "last_frame_psnr_full_tau": float(
            np.mean([psnr(v[-1], g[-1]) for v, g in zip(full, gts, strict=True)])
        ),
        "truth_remaining": truth["remaining"],
        "control_truth_remaining": fade_scores(grow_truth, fades)["remaining"],
        "objects": new["objects"],
    }


def draw_sheet(shown: dict, path: str, clips: int = 3) -> None:
    """One row per video: per clip the truth, then for each model the fade caption's and the
    'grows' caption's generation; every 3rd frame, 2x nearest-neighbour."""
    from PIL import Image

    truth = next(iter(shown.values()))["truth"]
    rows = []
    for k in range(min(clips, len(truth))):
        rows.append(truth[k])
        for videos in shown.values():
            rows += [videos["told"][k], videos["control"][k]]
    grid = np.concatenate([np.concatenate(list(v[::3]), axis=1) for v in rows], axis=0)
    img = Image.fromarray(grid)
    with atomic_path(path) as tmp:
        img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST).save(tmp, "PNG")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(shipped_model_path()), help="the base pipeline")
    p.add_argument("--adapter", required=True, help="the LoRA run's adapter/ folder")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--clips", type=int, default=16, help="clips per score (default 16)")
    p.add_argument(
        "--sheet",
        metavar="PNG",
        help="also draw the first 3 fade clips (every 3rd frame): the truth, then before and "
        "after with the fade caption and with the 'grows' caption",
    )
    p.add_argument(
        "--skip-before", action="store_true", help="score only the model with the adapter"
    )
    args = p.parse_args()
    t0 = time.time()
    out, shown = {}, {}
    runs = (
        (("after", args.adapter),)
        if args.skip_before
        else (("before", None), ("after", args.adapter))
    )
    for name, adapter in runs:
        pipe = PixelDancePipeline.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
        if adapter:
            pipe.load_lora(adapter, args.scale)
        shown[name] = {}
        out[name] = score(pipe, args.clips, shown=shown[name])
    if "before" in out:
        out["change"] = {k: out["after"][k] - out["before"][k] for k in out["before"]}
    if args.sheet:
        draw_sheet(shown, args.sheet)
    out.update(clips=args.clips, steps=20, seconds=round(time.time() - t0, 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
