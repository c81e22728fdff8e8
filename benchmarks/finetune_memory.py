"""What each fine-tuning mode costs: trainable parameters, optimizer-state bytes, peak host
memory and seconds per training step, for ``optim.trainable`` = all / temporal / LoRA rank 8
and rank 32, on the CPU at 16 frames of 32 x 32 latents (batch 1).

Models: the shipped PixelDance-Shapes UNet, and a random-weight UNet with Stable Diffusion
1.5's layout. A full SD 1.5-width training step on the CPU needs more memory than the shared
2-core machine has (weights, gradients and AdamW state alone are 14 GB for ``all``), so its
parameter counts and optimizer-state bytes are exact (the model built on the meta device,
AdamW's two fp32 moments per trainable value), and its memory and time are measured on the
narrow SD-shaped variant benchmarks/gpu_smoke.py uses (the same layers, widths 32-64).

Each (model, mode) runs in its own process, so its peak resident memory (the kernel's VmHWM)
is its own; a step is forward, backward and AdamW over the trainable parameters, as
``pixeldance train`` makes it. Run: ``python benchmarks/finetune_memory.py [--steps 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from gpu_smoke import SD15  # noqa: E402

NARROW = {**SD15, "block_out_channels": (32, 64, 64, 64), "cross_attention_dim": 64}
MODES = {
    "all": ("all", 0),
    "temporal": ("temporal", 0),
    "lora8": ("lora", 8),
    "lora32": ("lora", 32),
}
FRAMES, SIZE = 16, 32  # latents (B=1, C, 16, 32, 32)


def _unet(model: str):
    from pixeldance.models import PixelDanceUNet

    if model == "shapes":
        from pixeldance.folders import shipped_model_path

        return PixelDanceUNet.from_pretrained(shipped_model_path() / "unet")
    return PixelDanceUNet(**(SD15 if model == "sd15" else NARROW))


def _select(unet, mode: str):
    from pixeldance.train.trainable import LoraSettings, count_parameters, select_trainable

    kind, rank = MODES[mode]
    trainable = select_trainable(unet, kind, LoraSettings(rank=max(rank, 1)))
    return trainable, count_parameters(unet, trainable)


def exact_counts(model: str) -> dict:
    """Trainable parameters and AdamW state bytes of ``model`` per mode, built on meta."""
    import torch

    out = {}
    for mode in MODES:
        with torch.device("meta"):
            unet = _unet(model)
        _, (trainable, total) = _select(unet, mode)
        tensors = [p for p in unet.parameters() if p.requires_grad]
        out[mode] = {
            "trainable_params": trainable,
            "total_params": total,
            # exp_avg and exp_avg_sq, fp32, whole tensors (a partly trained one too), + step
            "optimizer_state_bytes": sum(2 * 4 * p.numel() + 4 for p in tensors),
        }
    return out


def measure(model: str, mode: str, steps: int) -> dict:
    """One process: build, select, ``steps`` AdamW steps; time all but the first."""
    import torch

    torch.manual_seed(0)
    unet = _unet(model)
    trainable, (count, total) = _select(unet, mode)
    optimizer = torch.optim.AdamW(trainable.param_groups(unet, 0.01), lr=1e-4)
    trainable.freeze_slices(unet, optimizer)
    c = unet.config.out_channels
    x = torch.randn(1, 2 * c, FRAMES, SIZE, SIZE)
    text = torch.randn(1, 16, unet.config.cross_attention_dim)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = unet(x, torch.tensor([500]), text).sample.square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    state = sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )
    status = Path("/proc/self/status").read_text()
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
    timed = sorted(times[1:] or times)
    return {
        "trainable_params": count,
        "total_params": total,
        "optimizer_state_bytes": state,
        "peak_host_bytes": peak,
        "step_s": timed[len(timed) // 2],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="steps per run (the first is warm-up)")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_memory.json"))
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.steps)))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    results = {"latents": f"1 x C x {FRAMES} x {SIZE} x {SIZE}", "threads": 1, "runs": {}}
    for model in ("shapes", "sd15_narrow"):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--one", model, mode, "--steps", str(args.steps)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            results["runs"][f"{model}/{mode}"] = json.loads(done.stdout.splitlines()[-1])
            print(model, mode, results["runs"][f"{model}/{mode}"], flush=True)
    results["sd15_exact"] = exact_counts("sd15")
    print("sd15 (exact counts)", results["sd15_exact"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
