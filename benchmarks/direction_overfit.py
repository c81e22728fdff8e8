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

``--broad N`` asks the next question, whether the words can be learnt from the world rather
than from eight look-alikes: a copy fine-tunes on N single movers of the world (any colour,
shape, wording and background; half of them given their first frame, as a recipe would) and
is scored from text alone on held-out movers it never saw:

    python benchmarks/direction_overfit.py --broad 1024 --steps 1500 --batch 8 --lr 3e-4

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
from pixeldance.data.captions import DIRECTION_WORDS
from pixeldance.data.shapes import DIRECTIONS, unit_vector
from pixeldance.diffusion import Denoiser, diffusion_loss
from pixeldance.folders import shipped_model_path
from pixeldance.generation import make_scheduler
from pixeldance.instructions import build_c_image
from shapes_bench import run
from shapes_scores import (
    decode_videos,
    direction_accuracy,
    encode_videos,
    held_out_clips,
    mover_truth,
    render_at,
)

# Seeds of the --broad training movers: neither the shipped model's training (base 1), the
# held-out clips (99) nor the validation clips (77).
BROAD_BASE = 55 * 1_000_003


def eight_directions(frames: int, size: int, fps: float = 4.0):
    """(clips, uint8 videos (8, F, H, W, 3)): one held-out single mover in all 8 directions."""
    base = held_out_clips(1, fps, frames, (size, size), single_mover=True)[0][0]
    clips, videos = [], []
    for name in DIRECTIONS:
        obj = base.objects[0]
        dx, dy = unit_vector(name)
        start = (0.5 - dx * obj.travel / 2, 0.5 - dy * obj.travel / 2)
        clip = replace(base, objects=[replace(obj, direction=name, start=start)])
        clip.caption = f"A {obj.colour} {obj.shape} moves {DIRECTION_WORDS[name][0]}"
        clips.append(clip)
        videos.append(render_at(clip, fps, frames, (size, size)))
    return clips, np.stack(videos)


def train_copy(
    pipe,
    latents,
    text,
    steps: int,
    lr: float,
    seed: int,
    batch: int | None = None,
    first_frame_prob: float = 0.0,
    on_log=None,
) -> tuple[object, float]:
    """A float32 copy of ``pipe.unet`` trained on ``latents`` / ``text``: every clip each step
    (``batch`` None) or ``batch`` clips drawn at random, from text alone or, with
    ``first_frame_prob``, with the clip's first frame as instruction. ``on_log(step, unet)``
    runs every 50 steps."""
    unet = copy.deepcopy(pipe.unet).float().train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    n = latents.shape[0]
    losses = []
    for step in range(steps):
        g = torch.Generator().manual_seed(seed * 100_003 + step)
        idx = torch.arange(n) if batch is None else torch.randint(0, n, (batch,), generator=g)
        z = latents[idx]
        # draws only what the mode needs, so the 8-clip overfit keeps its recorded stream
        keep = (
            torch.rand(len(idx), generator=g) < first_frame_prob
            if first_frame_prob
            else torch.zeros(len(idx), dtype=torch.bool)
        )
        c_image = build_c_image(z.shape[2], z[:, :, 0], first_mask=keep)
        loss = diffusion_loss(unet, pipe.scheduler, z, c_image, text[idx], g).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            print(f"  step {step + 1}: loss {np.mean(losses[-50:]):.4f}", flush=True)
            if on_log is not None:
                unet.eval()
                on_log(step + 1, unet)
                unet.train()
    return unet.eval(), float(np.mean(losses[-50:]))


def accuracy(recs: list[np.ndarray], truth: list[tuple[str, tuple]]) -> float:
    """Share of (seed, clip) estimates whose mover goes the caption's way; ``truth`` holds
    (direction, colour) per clip."""
    return float(np.mean([direction_accuracy(r, truth) for r in recs]))


@torch.no_grad()
def x0_from_noise(pipe, unet, latents, text, seeds) -> list[np.ndarray]:
    """Decoded one-step x0 estimates at t = 999 from pure noise, text only, per noise seed."""
    t = torch.full((latents.shape[0],), 999, dtype=torch.long)
    out = []
    for s in seeds:
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(s))
        x0 = Denoiser(unet, pipe.scheduler).x0(noise, t, torch.zeros_like(latents), text)
        out.append(decode_videos(pipe.vae, x0))
    return out


def broad(pipe, args) -> dict:
    """``--broad N``: fine-tune on N single movers of the world (every colour, shape, wording,
    background), half of them with their first frame, and score direction from text alone on
    the held-out movers: the one-step x0 estimate from pure noise (chance 12.5%) every
    ``--eval-every`` steps, and generated clips (guidance ``--guidance`` on t >= 700) before
    and after."""
    size = pipe.default_size()
    if args.text_layer is not None:
        pipe.prompt_encoder.hidden_layer = args.text_layer
    train = held_out_clips(args.broad, 4.0, 16, size, single_mover=True, base=BROAD_BASE)
    test = held_out_clips(args.test_clips, 4.0, 16, size, single_mover=True)
    z_train = encode_videos(pipe.vae, np.stack([v for _, v in train]))
    z_test = encode_videos(pipe.vae, np.stack([v for _, v in test]))
    text_train = pipe.prompt_encoder.encode([c.caption for c, _ in train])
    prompts = [c.caption for c, _ in test]
    text_test = pipe.prompt_encoder.encode(prompts)
    truth = mover_truth(test)
    seeds = list(range(args.eval_seeds))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    gen = dict(guidance=args.guidance, frames=16, size=size, steps=20, interval=(700, 1000))

    def x0_accuracy(unet) -> float:
        return accuracy(x0_from_noise(pipe, unet, z_test, text_test, seeds), truth)

    curve = {0: x0_accuracy(pipe.unet.float().eval())}
    result = {
        "train_clips": len(train),
        "test_clips": len(test),
        "text_only_generated_before": direction_accuracy(run(pipe, prompts, seed=1, **gen), truth),
    }

    def log(step, unet):
        if step % args.eval_every == 0:
            curve[step] = x0_accuracy(unet)
            print(f"  step {step}: text-only x0 direction {curve[step]:.0%}", flush=True)

    unet, loss = train_copy(
        pipe, z_train, text_train, args.steps, args.lr, args.seed, args.batch, 0.5, on_log=log
    )
    pipe.unet = unet
    result["final_loss"] = round(loss, 5)
    result["x0_direction_accuracy_by_step"] = curve
    if args.save:  # with the source's generation settings (frame rate, sizes, guidance)
        pipe.save_pretrained(args.save, text_encoder_from_package=True)
    result["text_only_generated_after"] = direction_accuracy(
        run(pipe, prompts, seed=1, **gen), truth
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-seeds", type=int, default=4)
    parser.add_argument(
        "--broad", type=int, default=0, metavar="N", help="fine-tune on N world movers instead"
    )
    parser.add_argument("--batch", type=int, default=8, help="clips per step with --broad")
    parser.add_argument("--test-clips", type=int, default=24, help="held-out movers (--broad)")
    parser.add_argument("--eval-every", type=int, default=250, help="steps (--broad)")
    parser.add_argument("--guidance", type=float, default=15.0, help="generation (--broad)")
    parser.add_argument(
        "--text-layer",
        type=int,
        default=None,
        help="text encoder layer whose states condition the UNet (--broad; default: the last)",
    )
    parser.add_argument("--save", help="pipeline folder for the fine-tuned model (--broad)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="batch and noise stream (--broad; another seed to continue a run)",
    )
    args = parser.parse_args()
    if args.eval_every % 50:
        parser.error("--eval-every must be a multiple of 50")
    t0 = time.time()
    torch.manual_seed(0)
    path = args.model or str(shipped_model_path())
    pipe = PixelDancePipeline.from_pretrained(path)
    result = {"model": path, "steps": args.steps, "lr": args.lr}
    if args.broad:
        result.update(broad(pipe, args))
        result["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(result))
        return
    size = pipe.default_size()[0]
    clips, videos = eight_directions(16, size)
    latents = encode_videos(pipe.vae, videos)
    truth = mover_truth([(c, None) for c in clips])
    captions = [c.caption for c in clips]
    plain = [f"A {clips[0].objects[0].colour} {clips[0].objects[0].shape} moves"] * len(clips)
    result["captions"] = captions
    seeds = list(range(args.eval_seeds))
    before = x0_from_noise(
        pipe, pipe.unet.float().eval(), latents, pipe.prompt_encoder.encode(captions), seeds
    )
    result["before_accuracy"] = accuracy(before, truth)
    for arm, texts in (("words", captions), ("no_words", plain)):
        print(f"{arm}: training {args.steps} steps", flush=True)
        text = pipe.prompt_encoder.encode(texts)
        unet, loss = train_copy(pipe, latents, text, args.steps, args.lr, seed=0)
        recs = x0_from_noise(pipe, unet, latents, text, seeds)
        hits = accuracy(recs, truth)
        result[arm] = {"final_loss": round(loss, 5), "x0_direction_accuracy": hits}
    result["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
