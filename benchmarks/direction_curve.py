"""How soon a training run reads the motion in its captions: the direction curve over its
checkpoints, against wall clock.

For every checkpoint of each run folder, the UNet (raw weights, or ``--weights ema``) makes a
one-step x0 estimate from pure noise (t = 999) for held-out single movers, from their caption
alone and from caption plus first frame; the share whose mover goes the caption's way (of 8
directions, chance 12.5%) is the curve. The clips are drawn at the run's main generation size
(48x48, 16 frames for the shapes configs), whatever size an early stage trained at. Time is
each checkpoint's age since the run's first step (the run folder's config.yaml).

    PYTHONPATH=benchmarks python benchmarks/direction_curve.py runs/a runs/b --out curve.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from pixeldance.diffusion import Denoiser
from pixeldance.instructions import build_c_image
from pixeldance.train.checkpoint import list_checkpoints
from pixeldance.train.config import load_config
from pixeldance.train.setup import build_components, prompt_encoder
from shapes_scores import (
    decode_videos,
    direction_accuracy,
    encode_videos,
    held_out_clips,
    mover_truth,
)


@torch.no_grad()
def one_step_accuracy(unet, comps, z, text, truth, seeds, first_frame: bool) -> float:
    """Direction accuracy of the one-step x0 estimates at t = 999, over noise seeds."""
    t = torch.full((z.shape[0],), 999, dtype=torch.long)
    c_image = build_c_image(z.shape[2], z[:, :, 0]) if first_frame else torch.zeros_like(z)
    hits = []
    for s in seeds:
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(s))
        x0 = Denoiser(unet, comps.scheduler).x0(noise, t, c_image, text)
        video = decode_videos(comps.vae, x0)
        hits.append(direction_accuracy(video, truth))
    return float(np.mean(hits))


def curve(
    run: Path, clips: int, seeds: list[int], weights: str, at=None, every: int = 1
) -> list[dict]:
    """The run's rows; ``at`` = (frames, height, width) to draw the clips at instead of the
    main stage's first bucket; every ``every``-th checkpoint and the last."""
    cfg = load_config(run / "config.yaml")
    torch.manual_seed(cfg.run.seed)
    comps = build_components(cfg)
    main = cfg.data.buckets[0]
    size, frames = (main.height, main.width), main.frames
    if at is not None:
        frames, size = at[0], (at[1], at[2])
    movers = held_out_clips(clips, cfg.data.fps, frames, size, single_mover=True)
    z = encode_videos(comps.vae, np.stack([v for _, v in movers]))
    text = prompt_encoder(comps).encode([c.caption for c, _ in movers])
    truth = mover_truth(movers)
    t0 = (run / "config.yaml").stat().st_mtime
    unet = comps.unet.eval()
    rows = []
    checkpoints = list_checkpoints(run)
    for k, ckpt in enumerate(checkpoints):
        if k % every and k != len(checkpoints) - 1:
            continue
        state = load_file(ckpt / f"{weights}.safetensors")
        unet.load_state_dict(state, strict=weights == "unet")
        row = {
            "run": run.name,
            "step": int(ckpt.name.split("-")[1]),
            "minutes": round((ckpt.stat().st_mtime - t0) / 60, 1),
            "clips_at": f"{frames}x{size[0]}x{size[1]}",
            "text_only": one_step_accuracy(unet, comps, z, text, truth, seeds, False),
            "first_frame": one_step_accuracy(unet, comps, z, text, truth, seeds, True),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with checkpoints)")
    parser.add_argument("--clips", type=int, default=24, help="held-out single movers")
    parser.add_argument("--seeds", type=int, default=4, help="noise seeds per clip")
    parser.add_argument("--weights", choices=["unet", "ema"], default="unet")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    parser.add_argument(
        "--at",
        type=int,
        nargs=3,
        metavar=("F", "H", "W"),
        help="draw the clips at F frames of H x W pixels (default: the run's main size)",
    )
    parser.add_argument(
        "--every", type=int, default=1, help="score every n-th checkpoint (and the last)"
    )
    args = parser.parse_args()
    rows = [
        r
        for run in args.runs
        for r in curve(run, args.clips, list(range(args.seeds)), args.weights, args.at, args.every)
    ]
    lines = [
        f"One-step x0 direction accuracy ({args.weights} weights, {args.clips} held-out movers x "
        f"{args.seeds} noise seeds, chance 12.5%)",
        "",
        "| run | step | minutes | clips (F x H x W) | text only | first frame + text |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['run']} | {r['step']} | {r['minutes']} | {r['clips_at']} | "
            f"{r['text_only']:.0%} | {r['first_frame']:.0%} |"
            for r in rows
        ],
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
