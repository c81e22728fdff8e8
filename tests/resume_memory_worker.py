"""Peak host memory of restoring a checkpoint, measured in a fresh process.

``python resume_memory_worker.py write DIR`` trains a 5M-parameter UNet one step and writes a
checkpoint (UNet, EMA, optimizer: about 80 MB) to DIR. ``... measure DIR`` builds the same
UNet, EMA and optimizer, then restores the checkpoint as the training loop does, with a 4 MiB
read window (the loop's mechanism at this size), and reports the growth of its peak resident
memory (VmHWM, reset before the restore); then it holds the whole checkpoint in memory (as
every rank used to) and reports the peak again, to show the measurement sees whole loads.
Prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch

from pixeldance import PixelDanceUNet
from pixeldance.train import checkpoint
from pixeldance.train.ema import EMA


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> int:
    """Start measuring the peak anew; returns the resident memory now. (``ru_maxrss`` would
    carry the parent's peak over exec, so the mm's own high-water mark is used.)"""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    return _status("VmRSS")


def peak_bytes() -> int:
    return _status("VmHWM")


def build():
    torch.manual_seed(0)
    unet = PixelDanceUNet(
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    ).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return unet, optimizer, schedule, EMA(unet.named_parameters(), 0.99)


def write(folder: Path) -> None:
    unet, optimizer, schedule, ema = build()
    out = unet(torch.randn(1, 8, 2, 8, 8), torch.tensor([3]), torch.randn(1, 4, 32)).sample
    out.pow(2).mean().backward()
    optimizer.step()
    schedule.step()
    ema.step(unet.parameters())
    extra = {"ema_optimization_step": ema.optimization_step}
    rngs = [checkpoint.rng_state()]
    state = (schedule.state_dict(), rngs, extra, 0, True)
    checkpoint.save_checkpoint(folder, 1, unet, ema, optimizer, *state)


def measure(folder: Path) -> dict:
    from safetensors.torch import load_file

    path = folder / "checkpoint-00000001"
    files = [path / f"{n}.safetensors" for n in ("unet", "ema", "optimizer")]
    unet, optimizer, schedule, ema = build()
    params = sum(p.numel() * p.element_size() for p in unet.parameters())
    checkpoint.READ_WINDOW = 4 << 20
    gc.collect()
    base = reset_peak()
    checkpoint.restore_checkpoint(path, unet, ema, optimizer, schedule, rank=0)
    restored = peak_bytes() - base
    # every rank used to hold the whole checkpoint in host memory (``load_file``, then the
    # copies to the device read every page); clone() reads every page here
    whole = [{k: v.clone() for k, v in load_file(f).items()} for f in files]
    loaded = peak_bytes() - base
    del whole
    return {
        "checkpoint_bytes": sum(f.stat().st_size for f in files),
        "moments_bytes": 2 * params,  # AdamW's two moments, allocated by the restore
        "restore_peak_growth": restored,
        "whole_load_peak_growth": loaded,
    }


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "write":
        write(folder)
    else:
        print(json.dumps(measure(folder)))
