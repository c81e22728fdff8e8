"""A short probe of the keyframe recipe: does it learn middle keyframes and sketch endings?

Fine-tunes the shipped model with the "mask" c_image layout (its two new input channels start
at zero weights, so step 0 is the shipped model) on Dancing Shapes training clips (seeds far
from the held-out ones), with middle keyframes, context prefixes and sketch last frames drawn
per sample (instructions.py), then writes a pipeline folder for keyframes_bench.py. Not the
retrain of the shipped model: a few hundred steps on one thread, to see whether the recipe
moves the numbers at all.

    python benchmarks/keyframes_probe.py --out /tmp/kf_probe --minutes 12
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pixeldance import PixelDancePipeline
from pixeldance.diffusion import make_training_scheduler
from pixeldance.folders import pipeline_folder
from pixeldance.instructions import InstructionConfig
from pixeldance.train.step import StepInputs, compute_loss, step_generator
from shapes_scores import encode_videos, held_out_clips

TRAIN_BASE = 5 * 1_000_003  # far from the held-out (99 * 1_000_003) seeds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--middle", type=float, default=0.5)
    ap.add_argument("--prefix", type=float, default=0.25)
    ap.add_argument("--sketch", type=float, default=0.5)
    args = ap.parse_args()
    torch.manual_seed(0)

    pipe = PixelDancePipeline.from_pretrained(pipeline_folder(None))
    unet = pipe.unet.with_keyframe_channels().train()
    scheduler = make_training_scheduler(pipe.scheduler.config.prediction_type)
    cfg = InstructionConfig(
        noise_timestep=pipe.generation_config.training_instruction_noise or 15,
        first_frame_drop_prob=0.15,
        middle_keyframe_prob=args.middle,
        max_middle_keyframes=2,
        context_prefix_prob=args.prefix,
        sketch_last_prob=args.sketch,
    )
    clips = held_out_clips(args.clips, 4.0, 16, (48, 48), base=TRAIN_BASE)
    latents = encode_videos(pipe.vae, np.stack([v for _, v in clips]))
    text = pipe.prompt_encoder.encode([c.caption for c, _ in clips])
    empty = pipe.prompt_encoder.empty(1)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    log, start, step = [], time.time(), 0
    while time.time() - start < args.minutes * 60:
        g = step_generator(1, step, 0, torch.device("cpu"))
        pick = torch.randint(0, len(clips), (args.batch,), generator=g)
        inputs = StepInputs(latents[pick], text[pick], empty, pipe.vae)
        loss = compute_loss(unet, scheduler, inputs, cfg, g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        log.append(loss.item())
        if step % 25 == 0:
            print(
                f"step {step} loss {np.mean(log[-25:]):.4f} {time.time() - start:.0f}s", flush=True
            )
        step += 1
    pipe.unet = unet.eval()
    pipe.register_modules(unet=unet.eval())
    out = Path(args.out)
    pipe.save_pretrained(out, text_encoder_from_package=True)
    summary = {
        "steps": step,
        "first_loss": float(np.mean(log[:25])),
        "last_loss": float(np.mean(log[-25:])),
        **vars(args),
    }
    (out / "probe.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
