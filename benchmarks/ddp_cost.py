"""What DDP's search for unused parameters costs a training step, on 2 CPU processes (gloo).

With image mixing on, the training loop asks DDP to find unused parameters (image batches skip
the temporal layers). This times an optimizer step (forward, backward, gradient all-reduce,
clipping, AdamW) of a config's UNet on random latents of its first bucket, set up as the loop
sets it up, in three modes: videos only without the search (what the loop does with no image
source), videos only with it (the price of the search), and an image batch every
``image_every``-th step with it (what a mixing run does). The UNet, batch and text width come
from the config; the data path and the autoencoder are left out.

    python benchmarks/ddp_cost.py [--config configs/tiny.yaml] [--steps 30] [--warmup 5]

Last line: one JSON object with the median step time per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "videos, no search": (False, 0),
    "videos, search": (True, 0),
    "images mixed, search": (True, 8),
}


def child(args) -> None:
    import torch
    from accelerate import Accelerator

    from pixeldance.encoders import vae_scale_factor
    from pixeldance.train.config import load_config
    from pixeldance.train.distributed import ddp_kwargs
    from pixeldance.train.setup import build_components, data_buckets

    find_unused, image_every = MODES[args.mode]
    cfg = load_config(args.config)
    torch.manual_seed(0)
    comps = build_components(cfg)
    unet = comps.unet.train()
    if cfg.optim.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    accelerator = Accelerator(cpu=True, kwargs_handlers=[ddp_kwargs(find_unused)])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    bucket = data_buckets(cfg)[0]
    scale = vae_scale_factor(comps.vae)
    c, h, w = unet.module.config.out_channels, bucket.height // scale, bucket.width // scale
    text = torch.randn(bucket.batch_size, 8, unet.module.config.cross_attention_dim)
    times = []
    for step in range(args.warmup + args.steps):
        frames = 1 if image_every and (step + 1) % image_every == 0 else bucket.frames
        x = torch.randn(bucket.batch_size, 2 * c, frames, h, w)
        t = torch.randint(0, 1000, (bucket.batch_size,))
        accelerator.wait_for_everyone()
        start = time.perf_counter()
        loss = unet(x, t, text).sample.pow(2).mean()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        accelerator.wait_for_everyone()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    if accelerator.is_main_process:
        params = sum(p.numel() for p in unet.parameters())
        print(json.dumps({"median_s": statistics.median(times), "params": params}))
    accelerator.end_training()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        return child(args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    results = {}
    for i, mode in enumerate(MODES):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29700 + os.getpid() % 200 + i),
            __file__,
            "--config",
            args.config,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--mode",
            mode,
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{mode}: failed\n{done.stderr[-3000:]}")
        line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
        results[mode] = json.loads(line)
        print(f"{mode:>22}: {results[mode]['median_s'] * 1000:8.1f} ms/step", flush=True)
    base = results["videos, no search"]["median_s"]
    summary = {
        "config": str(Path(args.config).name),
        "params": results["videos, no search"]["params"],
        "processes": 2,
        "steps": args.steps,
        "median_ms": {m: round(r["median_s"] * 1000, 1) for m, r in results.items()},
        "search_overhead": round(results["videos, search"]["median_s"] / base - 1, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
