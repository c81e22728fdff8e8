"""Instruction following of a PixelDance model on held-out Dancing Shapes clips.

Clips are drawn from seeds never used in training (the shipped model trained on seed base 1;
this uses base 99) and rendered with their ground truth. Scores (PSNR in dB on [0, 255] frames,
capped at 100 dB for identical images):

- frame0_psnr: generated frame 0 against the first-frame instruction;
- last_frame_psnr_by_tau: generated last frame against the last-frame instruction, tau in
  {0, 10, 25, 40, 50} of 50 DDIM steps;
- clip_psnr: the whole clip against the ground truth, given first and last frames (tau 25);
- direction_accuracy_text / _first_frame: one moving object; its colour centroid is tracked
  (pixels of its colour in every frame left out as background) and the direction of its
  displacement (of 8) compared with the caption's;
- flicker: mean |x[t+1] - 2 x[t] + x[t-1]| (second temporal difference, 0-255 scale);
- drift_db: PSNR of the static background of the last frame of 4 chained clips against the
  first frame's background (pixels far from every object colour);
- dpm20_vs_ddim100: clip PSNR with DPM-Solver++ at 20 steps over DDIM at 100 steps.

Two baselines give each number its floor and ceiling: copying the first frame to every frame,
and the autoencoder's reconstruction of the ground truth. Writes a markdown table and a plot of
the tau curve to --out; the last line printed is one JSON object with every score.

    python benchmarks/shapes_bench.py [--model PATH] [--clips 8] [--aspect 1:1|16:9|9:16]
        [--out benchmarks/results/shapes]

The headline scores are square (1:1); ``--aspect`` draws the held-out clips at 16:9 or 9:16
instead and generates at the model's size for that aspect.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pixeldance import PixelDancePipeline, Shot
from pixeldance.evaluation.metrics import (
    flicker,
    instruction_fidelity,
    last_frame_fidelity_by_tau,
    mean_psnr,
)
from pixeldance.folders import shipped_model_path
from pixeldance.generation import ASPECTS, make_scheduler
from shapes_scores import (
    background_psnr,
    decode_videos,
    direction_accuracy,
    encode_videos,
    held_out_clips,
    mover_truth,
    to_uint8,
)

TAUS = (0, 10, 25, 40, 50)


def run(
    pipe,
    prompts,
    firsts=None,
    lasts=None,
    tau=0,
    steps=50,
    guidance=1.0,
    frames=16,
    size=(48, 48),
    seed=0,
    batch=8,
    interval=None,
):
    outs = []
    for i in range(0, len(prompts), batch):
        sl = slice(i, i + batch)
        out = pipe(
            prompts[sl],
            first_frame=list(firsts[sl]) if firsts is not None else None,
            last_frame=list(lasts[sl]) if lasts is not None else None,
            tau=tau,
            num_inference_steps=steps,
            guidance_scale=guidance,
            guidance_interval=interval,
            num_frames=frames,
            height=size[0],
            width=size[1],
            output_type="np",
            generator=torch.Generator().manual_seed(seed + i),
        ).frames
        outs.append(to_uint8(out))
    return np.concatenate(outs)


def reconstruct(pipe, videos: np.ndarray) -> np.ndarray:
    return decode_videos(pipe.vae, encode_videos(pipe.vae, videos))


def scores_for(videos, gts, firsts, lasts) -> dict:
    """Instruction fidelity (frame 0 / last frame PSNR and SSIM), whole-clip PSNR, flicker."""
    return {
        **instruction_fidelity(videos, firsts, lasts),
        "clip_psnr": mean_psnr(videos, gts),
        "flicker": float(np.mean([flicker(v) for v in videos])),
    }


def add_guidance_interval(parser: argparse.ArgumentParser, default: str) -> None:
    """The ``--guidance-interval LOW HIGH`` option of this bench and the quick one."""
    parser.add_argument(
        "--guidance-interval",
        type=int,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help=f"guide only timesteps in [LOW, HIGH] (default: {default})",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="pipeline folder (default: the shipped model)"
    )
    parser.add_argument("--clips", type=int, default=8, help="held-out clips per score")
    parser.add_argument("--direction-clips", type=int, default=16)
    parser.add_argument(
        "--aspect",
        choices=ASPECTS,
        default="1:1",
        help="aspect (width:height) of the held-out clips and the generated ones",
    )
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's")
    add_guidance_interval(parser, "the model's; none: every step")
    parser.add_argument("--out", default="benchmarks/results/shapes")
    args = parser.parse_args()
    t0 = time.time()
    path = Path(args.model) if args.model else shipped_model_path()
    pipe = PixelDancePipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    d = pipe.generation_config
    guidance = args.guidance if args.guidance is not None else d.guidance_scale
    interval = args.guidance_interval or d.guidance_interval
    interval = tuple(interval) if interval else None
    frames, size, fps = d.num_frames, d.size_for(args.aspect, pipe.geometry), d.fps
    ddim = make_scheduler("ddim", pipe.scheduler.config)
    pipe.scheduler = ddim

    data = held_out_clips(args.clips, fps, frames, size, aspect=args.aspect)
    gts = np.stack([v for _, v in data])
    prompts = [c.caption for c, _ in data]
    firsts, lasts = gts[:, 0], gts[:, -1]
    common = dict(guidance=guidance, frames=frames, size=size, interval=interval)

    # 1. first frame, last frame by tau, whole clip
    videos_by_tau = {
        tau: run(pipe, prompts, firsts, lasts, tau=tau, steps=50, **common) for tau in TAUS
    }
    by_tau = last_frame_fidelity_by_tau(videos_by_tau, lasts)
    results = {"model": scores_for(videos_by_tau[25], gts, firsts, lasts)}
    copy = np.repeat(gts[:, :1], frames, axis=1)
    recon = reconstruct(pipe, gts)
    results["copy_first_frame"] = scores_for(copy, gts, firsts, lasts)
    results["reconstruction"] = scores_for(recon, gts, firsts, lasts)

    # 2. motion direction, text only and first frame + text
    movers = held_out_clips(
        args.direction_clips, fps, frames, size, single_mover=True, aspect=args.aspect
    )
    mv_prompts = [c.caption for c, _ in movers]
    mv_gt = np.stack([v for _, v in movers])
    truth = mover_truth(movers)

    def accuracy(videos):
        return direction_accuracy(videos, truth)

    direction = {
        "text": accuracy(run(pipe, mv_prompts, steps=50, seed=1, **common)),
        "first_frame": accuracy(run(pipe, mv_prompts, mv_gt[:, 0], steps=50, seed=2, **common)),
        "ground_truth": accuracy(mv_gt),
        "copy_first_frame": accuracy(np.repeat(mv_gt[:, :1], frames, axis=1)),
    }

    # 3. drift of a static background over 4 chained clips
    static = [
        (c, v)
        for c, v in held_out_clips(4 * args.clips, fps, frames, size, aspect=args.aspect)
        if c.camera == "static"
    ][:4]
    drifts = []
    for clip, video in static:
        out = pipe.generate_story(
            [Shot(clip.caption)] * 4,
            first_frame=video[0],
            tau=0,
            num_inference_steps=50,
            guidance_scale=guidance,
            guidance_interval=interval,
            num_frames=frames,
            height=size[0],
            width=size[1],
            output_type="np",
            generator=torch.Generator().manual_seed(3),
        ).frames
        chain = to_uint8(out)[0]
        drifts.append(background_psnr(chain[-1], video[0]))
    drift_db = float(np.nanmean(drifts)) if drifts else float("nan")

    # 4. DPM-Solver++ 20 steps against DDIM 100 steps
    ddim100 = run(pipe, prompts, firsts, lasts, tau=50, steps=100, **common)
    pipe.scheduler = make_scheduler("dpm++", ddim.config)
    dpm20 = run(pipe, prompts, firsts, lasts, tau=10, steps=20, **common)
    pipe.scheduler = ddim
    ddim_psnr, dpm_psnr = mean_psnr(ddim100, gts), mean_psnr(dpm20, gts)

    m, c, r = results["model"], results["copy_first_frame"], results["reconstruction"]
    summary = {
        "frame0_psnr": m["frame0_psnr"],
        "last_frame_psnr_by_tau": by_tau,
        "clip_psnr": m["clip_psnr"],
        "direction_accuracy_text": direction["text"],
        "direction_accuracy_first_frame": direction["first_frame"],
        "flicker": m["flicker"],
        "drift_db": drift_db,
        "dpm20_vs_ddim100": dpm_psnr / ddim_psnr,
        "dpm20_clip_psnr": dpm_psnr,
        "ddim100_clip_psnr": ddim_psnr,
        "baselines": {
            "copy_first_frame": {
                **c,
                "direction_accuracy": direction["copy_first_frame"],
                "drift_db": 100.0,
            },
            "reconstruction": {**r, "direction_accuracy": direction["ground_truth"]},
        },
        "ground_truth_flicker": float(np.mean([flicker(v) for v in gts])),
        "clips": args.clips,
        "direction_clips": args.direction_clips,
        "guidance": guidance,
        "guidance_interval": list(interval) if interval else None,
        "aspect": args.aspect,
        "size": list(size),
        "frames": frames,
        "seconds": round(time.time() - t0, 1),
    }
    write_report(Path(args.out), summary)
    print(json.dumps(summary))


def write_report(out: Path, s: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    c, r = s["baselines"]["copy_first_frame"], s["baselines"]["reconstruction"]
    rows = [
        ("frame 0 PSNR (dB)", s["frame0_psnr"], c["frame0_psnr"], r["frame0_psnr"]),
        (
            "last frame PSNR at tau=50 (dB)",
            s["last_frame_psnr_by_tau"][50],
            c["last_frame_psnr"],
            r["last_frame_psnr"],
        ),
        ("whole clip PSNR (dB)", s["clip_psnr"], c["clip_psnr"], r["clip_psnr"]),
        (
            "direction accuracy, text only",
            s["direction_accuracy_text"],
            c["direction_accuracy"],
            r["direction_accuracy"],
        ),
        (
            "direction accuracy, first frame",
            s["direction_accuracy_first_frame"],
            c["direction_accuracy"],
            r["direction_accuracy"],
        ),
        ("flicker (lower is smoother)", s["flicker"], c["flicker"], r["flicker"]),
        ("background drift over 4 clips (dB)", s["drift_db"], c["drift_db"], float("nan")),
    ]
    lines = ["| score | model | copy first frame | reconstruction |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {a:.3f} | {b:.3f} | {c_:.3f} |" for name, a, b, c_ in rows]
    lines += [
        "",
        "| tau (of 50) | " + " | ".join(str(t) for t in s["last_frame_psnr_by_tau"]) + " |",
        "| --- |" + " --- |" * len(s["last_frame_psnr_by_tau"]),
        "| last frame PSNR (dB) | "
        + " | ".join(f"{v:.2f}" for v in s["last_frame_psnr_by_tau"].values())
        + " |",
        "",
        f"DPM-Solver++ 20 steps / DDIM 100 steps, clip PSNR: {s['dpm20_clip_psnr']:.2f} / {s['ddim100_clip_psnr']:.2f} dB"
        f" = {s['dpm20_vs_ddim100']:.3f}",
        "",
        f"Aspect {s.get('aspect', '1:1')}, {s['size'][0]}x{s['size'][1]} (height x width). "
        f"Guidance {s['guidance']}"
        + (
            f" on timesteps {s['guidance_interval'][0]}-{s['guidance_interval'][1]} only"
            if s["guidance_interval"]
            else " on every step"
        )
        + ".",
    ]
    (out / "shapes_bench.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        taus = list(s["last_frame_psnr_by_tau"])
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(taus, list(s["last_frame_psnr_by_tau"].values()), marker="o", label="model")
        ax.axhline(c["last_frame_psnr"], color="grey", linestyle="--", label="copy first frame")
        ax.set_xlabel("tau (of 50 DDIM steps)")
        ax.set_ylabel("last frame PSNR (dB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "tau_curve.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot")


if __name__ == "__main__":
    main()
