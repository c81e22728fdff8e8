"""Should inference noise the image instructions as training does (paper: to t = 100)?

Generates held-out Dancing Shapes clips with clean instructions and with instructions noised
to ``--noise-timestep`` (default: the training level the model's generation.json records,
else the paper's 100) and compares frame 0 against the first-frame
instruction and the last frame against the last-frame instruction. The better setting is the
pipeline's ``instruction_noise`` default for the model (its generation.json). Last line: JSON.

    python benchmarks/instruction_noise.py [--model PATH] [--clips 8]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from pixeldance import PixelDancePipeline
from pixeldance.folders import shipped_model_path
from shapes_scores import held_out_clips, psnr, to_uint8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument(
        "--noise-timestep",
        type=int,
        default=None,
        help="default: the model's training level (generation.json), else 100 (paper)",
    )
    args = parser.parse_args()
    pipe = PixelDancePipeline.from_pretrained(args.model or shipped_model_path())
    pipe.set_progress_bar_config(disable=True)
    d = pipe.generation_config
    if args.noise_timestep is None:
        args.noise_timestep = d.training_instruction_noise or 100
    size = pipe.default_size()
    data = held_out_clips(args.clips, d.fps, d.num_frames, size)
    gts = np.stack([v for _, v in data])
    prompts = [c.caption for c, _ in data]
    result = {}
    for noise in (0, args.noise_timestep):
        out = to_uint8(
            pipe(
                prompts,
                first_frame=list(gts[:, 0]),
                last_frame=list(gts[:, -1]),
                tau=args.steps // 2,
                num_inference_steps=args.steps,
                guidance_scale=d.guidance_scale,
                num_frames=d.num_frames,
                height=size[0],
                width=size[1],
                instruction_noise=noise,
                output_type="np",
                generator=torch.Generator().manual_seed(0),
            ).frames
        )
        result[f"noise_{noise}"] = {
            "frame0_psnr": float(
                np.mean([psnr(v[0], g[0]) for v, g in zip(out, gts, strict=True)])
            ),
            "last_frame_psnr": float(
                np.mean([psnr(v[-1], g[-1]) for v, g in zip(out, gts, strict=True)])
            ),
            "clip_psnr": float(np.mean([psnr(v, g) for v, g in zip(out, gts, strict=True)])),
        }
        print(noise, result[f"noise_{noise}"])
    clean, noised = result["noise_0"], result[f"noise_{args.noise_timestep}"]
    result["better"] = "clean" if clean["clip_psnr"] >= noised["clip_psnr"] else "noised"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
