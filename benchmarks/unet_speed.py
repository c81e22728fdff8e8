"""Train-step speed of PixelDanceUNet against diffusers' UNet3DConditionModel.

Both networks get the same widths, depth, heads, text width and frames; each step is a
forward and backward pass of a mean-squared loss at batch 2, 16 frames, 16x16 latents.
Reports the median step time of each, the speedup, and the achieved FLOP/s of our step
(FLOPs counted by torch.utils.flop_counter) over a large fp32 matmul's FLOP/s measured in the
same process. Last line: one JSON object.

    python benchmarks/unet_speed.py [--repeats 5] [--device cpu|cuda] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from diffusers import UNet3DConditionModel
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from pixeldance import PixelDanceUNet

WIDTHS = (64, 128, 128)
HEADS = 4
TEXT_DIM = 64
LAYERS = 1
GROUPS = 32


def ours() -> PixelDanceUNet:
    return PixelDanceUNet(
        in_channels=8,
        out_channels=4,
        block_out_channels=WIDTHS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=LAYERS,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=HEADS,
        norm_num_groups=GROUPS,
    )


def theirs() -> UNet3DConditionModel:
    return UNet3DConditionModel(
        in_channels=8,
        out_channels=4,
        block_out_channels=WIDTHS,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        layers_per_block=LAYERS,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=HEADS,
        norm_num_groups=GROUPS,
    )


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kw):
    return sdpa_backward_flop_count(grad_shape, q_shape, k_shape, v_shape)


# torch's counter knows the CUDA attention kernels but not the CPU flash-attention ones.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def make_step(model, x, t, ctx):
    def step():
        model.zero_grad(set_to_none=True)
        out = model(x, t, ctx).sample
        out.float().square().mean().backward()

    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_s(device, dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_time(lambda: a @ b, device, repeats)
    return 2 * n**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=16, help="latent height and width")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)

    x = torch.randn(args.batch, 8, args.frames, args.size, args.size, device=device, dtype=dtype)
    t = torch.randint(0, 1000, (args.batch,), device=device)
    ctx = torch.randn(args.batch, 8, TEXT_DIM, device=device, dtype=dtype)

    results = {}
    for name, build in (("ours", ours), ("diffusers", theirs)):
        model = build().to(device=device).train()
        if dtype != torch.float32:
            model.to(dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        step = make_step(model, x, t, ctx)
        results[name] = median_time(step, device, args.repeats)
        print(f"{name:10s} {params / 1e6:6.2f}M params  median step {results[name]:.3f} s")
        if name == "ours":
            with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
                step()
            flops = counter.get_total_flops()
        del model, step

    peak = matmul_flops_per_s(device, dtype, 2048 if device.type == "cpu" else 8192, args.repeats)
    achieved = flops / results["ours"]
    print(
        f"our step: {flops / 1e9:.2f} GFLOP, {achieved / 1e9:.1f} GFLOP/s; matmul {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        json.dumps(
            {
                "ours_s": round(results["ours"], 4),
                "diffusers_s": round(results["diffusers"], 4),
                "speedup": round(results["diffusers"] / results["ours"], 3),
                "utilisation": round(achieved / peak, 3),
                "device": str(device),
                "dtype": args.dtype,
            }
        )
    )


if __name__ == "__main__":
    main()
