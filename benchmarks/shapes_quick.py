"""Quick instruction-following scores for comparing pipeline folders (ablations, training curves).

A cheaper cousin of ``shapes_bench.py`` (same held-out clips and scorers, 20 DDIM steps, the
same guidance and clip frame rate for every folder, 1.0 and 4 fps unless told):
- frame 0 PSNR and whole-clip PSNR given first and last frames (tau 10 of 20), last frame PSNR
  at full tau;
- motion direction accuracy from text alone and from a first frame, and how far the mover
  travels from a first frame (pixels, beside the ground truth's travel);
- the one-step x0 estimate of a held-out clip at a few noise levels (how well the denoiser
  rebuilds frame 0 from its instruction and the other frames from the noisy clip);
- the share of single movers whose one-step x0 estimate at t = 999 / 900 / 800, given the first
  frame and caption, moves the caption's way (``x0_direction_accuracy``), and the same from the
  caption alone (``x0_direction_accuracy_text``);
- how much the caption's words help it: on single-mover clips given their first frame, the x0
  estimate's error with words swapped over its error with the true caption, in dB (0 when the
  model ignores those words). ``motion_word_gain_db`` swaps each direction word for its
  opposite; ``colour_word_gain_db`` swaps the colour names, a reference showing the probe can
  see text use. ``motion_word_gain_text_only_db`` swaps the direction words with no first frame
  given, where the caption is the only source of the direction (given a first frame, a mover's
  start position already tells its direction in this world: it starts on the far side).

    python benchmarks/shapes_quick.py runs/a/pipeline runs/b/pipeline [--clips 8] \
        [--guidance 5 --guidance-interval 700 1000]

One JSON line per folder.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np
import torch

from pixeldance import PixelDancePipeline
from pixeldance.diffusion import Denoiser
from pixeldance.generation import make_scheduler
from pixeldance.instructions import build_c_image
from shapes_bench import add_guidance_interval, run
from shapes_scores import (
    decode_videos,
    direction_accuracy,
    encode_videos,
    held_out_clips,
    mover_truth,
    psnr,
    travel_px,
)

NOISE_LEVELS = (999, 600, 200, 50)
OPPOSITE_DIRECTIONS = {
    "left": "right",
    "right": "left",
    "leftward": "rightward",
    "rightward": "leftward",
    "up": "down",
    "down": "up",
    "upward": "downward",
    "downward": "upward",
    "top": "bottom",
    "bottom": "top",
}
OTHER_COLOURS = {
    "red": "cyan",
    "cyan": "red",
    "green": "pink",
    "pink": "green",
    "blue": "orange",
    "orange": "blue",
    "yellow": "purple",
    "purple": "yellow",
}


@torch.no_grad()
def x0_estimate(pipe, z: torch.Tensor, c_image: torch.Tensor, text: torch.Tensor, t: int):
    """The UNet's one-step x0 estimate of latents ``z`` noised to step t (noise seeded by t)."""
    sched = pipe.scheduler
    tt = torch.full((z.shape[0],), t, dtype=torch.long)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(t))
    zt = sched.add_noise(z, noise, tt)
    return Denoiser(pipe.unet, sched).x0(zt, tt, c_image, text)


def swap_words(caption: str, swap: dict[str, str]) -> str:
    """The caption with every whole word that is a key of ``swap`` replaced by its value."""
    pattern = r"\b(" + "|".join(swap) + r")\b"
    return re.sub(pattern, lambda m: swap[m.group(1)], caption)


@torch.no_grad()
def word_swap_gain(
    pipe,
    videos: np.ndarray,
    prompts: list[str],
    swap: dict[str, str],
    levels=(999, 800, 600),
    first_frame: bool = True,
) -> dict:
    """dB by which the x0 estimate of frames 1.. (given frame 0, unless ``first_frame`` is
    False, and the noisy clip) is better with the true caption than with the words of ``swap``
    swapped; 0 if the model ignores them."""
    z = encode_videos(pipe.vae, videos)
    c_image = instructions_of(z, first_frame)
    true = pipe.prompt_encoder.encode(prompts)
    swapped = pipe.prompt_encoder.encode([swap_words(p, swap) for p in prompts])
    out = {}
    for t in levels:
        err = {
            name: float(((x0_estimate(pipe, z, c_image, text, t) - z)[:, :, 1:] ** 2).mean())
            for name, text in (("true", true), ("swapped", swapped))
        }
        out[t] = round(10 * float(np.log10(err["swapped"] / err["true"])), 3)
    return out


@torch.no_grad()
def instructions_of(z: torch.Tensor, first_frame: bool) -> torch.Tensor:
    """c_image holding frame 0 of latents ``z``, or none (text only)."""
    keep = torch.full((z.shape[0],), first_frame)
    return build_c_image(z.shape[2], z[:, :, 0], first_mask=keep)


@torch.no_grad()
def x0_direction(
    pipe,
    videos: np.ndarray,
    prompts: list[str],
    truth,
    levels=(999, 900, 800),
    first_frame: bool = True,
):
    """Share of single-mover clips whose one-step x0 estimate (given frame 0 unless
    ``first_frame`` is False, the caption and the clip noised to step t) moves the mover the
    caption's way: how much motion the denoiser knows at the high-noise steps where sampling
    decides it."""
    z = encode_videos(pipe.vae, videos)
    c_image = instructions_of(z, first_frame)
    text = pipe.prompt_encoder.encode(prompts)
    out = {}
    for t in levels:
        rec = decode_videos(pipe.vae, x0_estimate(pipe, z, c_image, text, t))
        out[t] = round(direction_accuracy(rec, truth), 3)
    return out


@torch.no_grad()
def one_step_x0(pipe, videos: np.ndarray, prompts: list[str]) -> dict:
    """PSNR of the model's x0 estimate (frame 0, other frames) from the clip noised to t."""
    z = encode_videos(pipe.vae, videos)
    text = pipe.prompt_encoder.encode(prompts)
    c_image = build_c_image(z.shape[2], z[:, :, 0])
    out = {}
    for t in NOISE_LEVELS:
        rec = decode_videos(pipe.vae, x0_estimate(pipe, z, c_image, text, t))
        out[t] = {
            "frame0": round(
                float(np.mean([psnr(r[0], v[0]) for r, v in zip(rec, videos, strict=True)])), 2
            ),
            "rest": round(
                float(np.mean([psnr(r[1:], v[1:]) for r, v in zip(rec, videos, strict=True)])), 2
            ),
        }
    return out


def score(
    path: str,
    clips: int,
    direction_clips: int,
    guidance: float,
    fps: float,
    interval: tuple[int, int] | None = None,
) -> dict:
    t0 = time.time()
    pipe = PixelDancePipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    d = pipe.generation_config
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    frames, size = d.num_frames, pipe.default_size()
    common = dict(guidance=guidance, frames=frames, size=size, steps=20, interval=interval)
    data = held_out_clips(clips, fps, frames, size)
    gts = np.stack([v for _, v in data])
    prompts = [c.caption for c, _ in data]
    videos = run(pipe, prompts, gts[:, 0], gts[:, -1], tau=10, **common)
    full = run(pipe, prompts, gts[:, 0], gts[:, -1], tau=20, **common)
    movers = held_out_clips(direction_clips, fps, frames, size, single_mover=True)
    mv_prompts = [c.caption for c, _ in movers]
    mv_videos = np.stack([v for _, v in movers])
    mv_first = mv_videos[:, 0]
    truth = mover_truth(movers)

    def accuracy(vids):
        return direction_accuracy(vids, truth)

    def travel(vids):
        return travel_px(vids, truth)

    from_first = run(pipe, mv_prompts, mv_first, seed=2, **common)

    return {
        "model": str(path),
        "frame0_psnr": float(np.mean([psnr(v[0], g[0]) for v, g in zip(videos, gts, strict=True)])),
        "clip_psnr": float(np.mean([psnr(v, g) for v, g in zip(videos, gts, strict=True)])),
        "last_frame_psnr_full_tau": float(
            np.mean([psnr(v[-1], g[-1]) for v, g in zip(full, gts, strict=True)])
        ),
        "direction_accuracy_text": accuracy(run(pipe, mv_prompts, seed=1, **common)),
        "direction_accuracy_first_frame": accuracy(from_first),
        "travel_first_frame_px": travel(from_first),
        "travel_ground_truth_px": travel(mv_videos),
        "one_step_x0_psnr": one_step_x0(pipe, gts, prompts),
        "x0_direction_accuracy": x0_direction(pipe, mv_videos, mv_prompts, truth),
        "x0_direction_accuracy_text": x0_direction(
            pipe, mv_videos, mv_prompts, truth, first_frame=False
        ),
        "motion_word_gain_db": word_swap_gain(pipe, mv_videos, mv_prompts, OPPOSITE_DIRECTIONS),
        "motion_word_gain_text_only_db": word_swap_gain(
            pipe, mv_videos, mv_prompts, OPPOSITE_DIRECTIONS, first_frame=False
        ),
        "colour_word_gain_db": word_swap_gain(pipe, mv_videos, mv_prompts, OTHER_COLOURS),
        "copy_first_frame_clip_psnr": float(
            np.mean([psnr(np.repeat(g[:1], frames, 0), g) for g in gts])
        ),
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="pipeline folders")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--direction-clips", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=1.0, help="the same for every folder")
    add_guidance_interval(parser, "every step")
    parser.add_argument("--fps", type=float, default=4.0, help="held-out clips' frame rate")
    args = parser.parse_args()
    for path in args.models:
        interval = tuple(args.guidance_interval) if args.guidance_interval else None
        s = score(path, args.clips, args.direction_clips, args.guidance, args.fps, interval)
        out = {**s, "guidance": args.guidance, "guidance_interval": args.guidance_interval}
        print(json.dumps({**out, "fps": args.fps}), flush=True)


if __name__ == "__main__":
    main()
