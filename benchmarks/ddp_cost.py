"""What DDP's search for unused parameters costs a training step, on 2 CPU processes (gloo).

With image mixing on, the training loop asks DDP to find unused parameters (image batches skip
the temporal layers). This times an optimizer step (forward, backward, gradient all-reduce,
clipping, AdamW) of a config's UNet on random latents of its first bucket, wrapped in DDP as
Accelerate wraps it for the loop, in three modes stepped in turn: videos only without the
search (what the loop does with no image source), videos only with it (the price of the
search), and an image batch every 8th step with it (what a mixing run does). The UNet, batch
and text width come from the config (and ``--set`` overrides); the data path and the
autoencoder are left out. The search walks the autograd graph, whose size depends on the
layout, not the widths: a narrow UNet with Stable Diffusion 1.5's layout shows its cost there.

    python benchmarks/ddp_cost.py [--config configs/tiny.yaml] [--set key=value ...]
        [--steps 30] [--warmup 5]

Last line: one JSON object with the median and mean step time per mode.
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
# mode: (find_unused_parameters, image_every)
MODES = {
    "videos, no search": (False, 0),
    "videos, search": (True, 0),
    "images mixed, search": (True, 8),
}


def child(args) -> None:
    """Under torchrun: one DDP replica per mode, stepped in turn, so load on the machine
    falls on every mode alike."""
    import copy

    import torch
    from accelerate import Accelerator

    from pixeldance.encoders import vae_scale_factor
    from pixeldance.train.config import load_config
    from pixeldance.train.setup import build_components

    cfg = load_config(args.config, args.set)
    torch.manual_seed(0)
    comps = build_components(cfg)
    accelerator = Accelerator(cpu=True)  # the process group; DDP built as Accelerate builds it
    base = comps.unet.train()
    if cfg.optim.gradient_checkpointing:
        base.enable_gradient_checkpointing()
    replicas = {}
    for mode, (find_unused, _) in MODES.items():
        unet = torch.nn.parallel.DistributedDataParallel(
            copy.deepcopy(base), find_unused_parameters=find_unused
        )
        replicas[mode] = (unet, torch.optim.AdamW(unet.parameters(), lr=1e-4))
    bucket = cfg.data.buckets[0]
    scale = vae_scale_factor(comps.vae)
    c, h, w = base.config.out_channels, bucket.height // scale, bucket.width // scale
    text = torch.randn(bucket.batch_size, 8, base.config.cross_attention_dim)
    times = {mode: [] for mode in MODES}
    for step in range(args.warmup + args.steps):
        for mode, (unet, optimizer) in replicas.items():
            image_every = MODES[mode][1]
            frames = 1 if image_every and (step + 1) % image_every == 0 else bucket.frames
            x = torch.randn(bucket.batch_size, 2 * c, frames, h, w)
            t = torch.randint(0, 1000, (bucket.batch_size,))
            accelerator.wait_for_everyone()
            start = time.perf_counter()
            loss = unet(x, t, text).sample.pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            accelerator.wait_for_everyone()
            if step >= args.warmup:
                times[mode].append(time.perf_counter() - start)
    if accelerator.is_main_process:
        out = {
            "params": sum(p.numel() for p in base.parameters()),
            "median_ms": {m: round(statistics.median(t) * 1000, 1) for m, t in times.items()},
            "mean_ms": {m: round(statistics.mean(t) * 1000, 1) for m, t in times.items()},
        }
        print(json.dumps(out))
    accelerator.end_training()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--set", action="append", default=[], help="config override key=value")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(29700 + os.getpid() % 200), __file__, "--config", args.config]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--child"]
    cmd += [x for kv in args.set for x in ("--set", kv)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"failed\n{done.stderr[-3000:]}")
    result = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])
    for mode in MODES:
        median, mean = result["median_ms"][mode], result["mean_ms"][mode]
        print(f"{mode:>22}: median {median:8.1f} ms/step, mean {mean:8.1f}", flush=True)
    base = result["median_ms"]["videos, no search"]
    summary = {
        "config": Path(args.config).name,
        "set": args.set,
        "processes": 2,
        "steps": args.steps,
        **result,
        "search_overhead": round(result["median_ms"]["videos, search"] / base - 1, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
