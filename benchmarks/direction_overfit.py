"""Can the model learn direction words at all? A controlled overfit from text alone.

Eight Dancing Shapes clips that differ only in the mover's direction (same shape, colour,
background, travel; each starts on the far side as in the world), captioned "A <colour> <shape>
moves <direction>". Two copies of a trained model train on them from text alone (no first
frame) for the same steps, noise and timesteps:
- ``words``: the true captions;
- ``no_words``: the captions with the direction removed ("A red circle moves"), a control that
  cannot know the direction.
Each copy is then asked for its one-step x0 estimate from pure noise (t = 999) for each
caption and several noise seeds, and the mover's direction is read off its colour centroid.
If ``words`` follows the captions and ``no_words`` does not, the network can read direction
words when the signal is concentrated, and what the full model lacks is data or steps; if
neither does, the text pathway is the bottleneck.

    python benchmarks/direction_overfit.py [--model PATH] [--steps 300]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace

import numpy as np
import torch

from pixeldance import PixelDancePipeline
from pixeldance.data.captions import _DIR_WORDS
from pixeldance.data.shapes import COLOURS, DIRECTIONS, _unit
from pixeldance.diffusion import diffusion_loss
from pixeldance.encoders import decode_latents, encode_frames
from pixeldance.shipped import shipped_model_path
from shapes_bench import direction_of, held_out_clips, render_at


def eight_directions(frames: int, size: int, fps: float = 4.0):
    """(clips, uint8 videos (8, F, H, W, 3)): one held-out single mover in all 8 directions."""
    base = held_out_clips(1, fps, frames, (size, size), single_mover=True)[0][0]
    clips, videos = [], []
    for name in DIRECTIONS:
        obj = base.objects[0]
        dx, dy = _unit(name)
        start = (0.5 - dx * obj.travel / 2, 0.5 - dy * obj.travel / 2)
        clip = replace(base, objects=[replace(obj, direction=name, start=start)])
        clip.caption = f"A {obj.colour} {obj.shape} moves {_DIR_WORDS[name][0]}"
        clips.append(clip)
        videos.append(render_at(clip, fps, frames, (size, size)))
    return clips, np.stack(videos)


def train_copy(pipe, latents, text, steps: int, lr: float, seed: int) -> tuple[object, float]:
    unet = copy.deepcopy(pipe.unet).float().train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    c_image = torch.zeros_like(latents)  # text only
    losses = []
    for step in range(steps):
        g = torch.Generator().manual_seed(seed * 100_003 + step)
        loss = diffusion_loss(unet, pipe.scheduler, latents, c_image, text, g).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            print(f"  step {step + 1}: loss {np.mean(losses[-50:]):.4f}", flush=True)
    return unet.eval(), float(np.mean(losses[-50:]))


def accuracy(recs: list[np.ndarray], truth: list[str], colour) -> float:
    """Share of (seed, clip) estimates whose mover goes the caption's way."""
    return float(
        np.mean(
            [
                direction_of(v.astype(np.uint8), colour) == d
                for r in recs
                for v, d in zip(r, truth, strict=True)
            ]
        )
    )


@torch.no_grad()
def x0_from_noise(pipe, unet, latents, text, seeds) -> list[np.ndarray]:
    """Decoded one-step x0 estimates at t = 999 from pure noise, text only, per noise seed."""
    t = torch.full((latents.shape[0],), 999, dtype=torch.long)
    out = []
    for s in seeds:
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(s))
        x = torch.cat([noise, torch.zeros_like(latents)], 1)
        rec = decode_latents(pipe.vae, unet(x, t, text).sample)
        out.append(((rec.permute(0, 2, 3, 4, 1).numpy() + 1) * 127.5).round().clip(0, 255))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-seeds", type=int, default=4)
    args = parser.parse_args()
    t0 = time.time()
    torch.manual_seed(0)
    path = args.model or str(shipped_model_path())
    pipe = PixelDancePipeline.from_pretrained(path)
    size = pipe.default_size()[0]
    clips, videos = eight_directions(16, size)
    x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    latents = encode_frames(pipe.vae, x)
    colour = COLOURS[clips[0].objects[0].colour]
    truth = [c.objects[0].direction for c in clips]
    captions = [c.caption for c in clips]
    plain = [f"A {clips[0].objects[0].colour} {clips[0].objects[0].shape} moves"] * len(clips)
    result = {"model": path, "captions": captions, "steps": args.steps, "lr": args.lr}
    seeds = list(range(args.eval_seeds))
    before = x0_from_noise(
        pipe, pipe.unet.float().eval(), latents, pipe.prompt_encoder.encode(captions), seeds
    )
    result["before_accuracy"] = accuracy(before, truth, colour)
    for arm, texts in (("words", captions), ("no_words", plain)):
        print(f"{arm}: training {args.steps} steps", flush=True)
        text = pipe.prompt_encoder.encode(texts)
        unet, loss = train_copy(pipe, latents, text, args.steps, args.lr, seed=0)
        recs = x0_from_noise(pipe, unet, latents, text, seeds)
        hits = accuracy(recs, truth, colour)
        result[arm] = {"final_loss": round(loss, 5), "x0_direction_accuracy": hits}
    result["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
