"""Train-step speed of PixelDanceUNet against diffusers' UNet3DConditionModel.

Both networks get the same widths, depth, heads, text width and frames; each step is a
forward and backward pass of a mean-squared loss at batch 2, 16 frames, 16x16 latents.
Reports the median step time of each, the speedup, and the achieved FLOP/s of our step
(FLOPs counted by torch.utils.flop_counter) over a large fp32 matmul's FLOP/s measured in the
same process. Last line: one JSON object.

    python benchmarks/unet_speed.py [--repeats 5] [--device cpu|cuda] [--dtype float32|bfloat16]
        [--threads N] [--no-diffusers] [--clock wall|cpu] [--baseline-src OLD/src]

``--baseline-src`` times another checkout's PixelDanceUNet (its ``pixeldance/models`` package,
loaded under another name) against this one's in the same process, same weights, steps
interleaved: a before/after of a change to the UNet's code in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

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


# wall clock, or this process's CPU time: with one thread on a shared machine the latter leaves
# out the time the thread waits for a core, which the load of other processes decides
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def median_time(fn, device, repeats: int, warmup: int = 2, clock: str = "wall") -> float:
    now = CLOCK[clock]
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        sync(device)
        times.append(now() - start)
    return statistics.median(times)


def load_models_package(src: Path, alias: str = "baseline_models"):
    """Another checkout's ``pixeldance/models`` package, imported as ``alias`` (its imports
    are relative, so it does not touch the installed ``pixeldance``)."""
    folder = src / "pixeldance" / "models"
    if not (folder / "__init__.py").is_file():
        raise SystemExit(f"--baseline-src: no pixeldance/models package under {src}")
    spec = importlib.util.spec_from_file_location(
        alias, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


def interleaved_medians(steps: dict, device, repeats: int, clock: str) -> dict[str, float]:
    """Median time of each step function, run in turn (A B A B ...) after a warm-up of two."""
    now = CLOCK[clock]
    for fn in steps.values():
        fn(), fn()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            sync(device)
            start = now()
            fn()
            sync(device)
            times[name].append(now() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def compare_with_baseline(args, device, dtype, x, t, ctx) -> None:
    """Before/after in one process: the baseline checkout's UNet and ours, same weights."""
    baseline = load_models_package(Path(args.baseline_src))
    new = ours().to(device=device).train()
    old = baseline.PixelDanceUNet.from_config(new.config).to(device=device).train()
    old.load_state_dict(new.state_dict())
    if dtype != torch.float32:
        new.to(dtype=dtype), old.to(dtype=dtype)
    steps = {"before": make_step(old, x, t, ctx), "after": make_step(new, x, t, ctx)}
    medians = interleaved_medians(steps, device, args.repeats, args.clock)
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        steps["after"]()
    flops = counter.get_total_flops()
    n = 2048 if device.type == "cpu" else 8192
    peak = matmul_flops_per_s(device, dtype, n, args.repeats, clock=args.clock)
    for name, seconds in medians.items():
        print(f"{name:7s} median step {seconds:.3f} s, utilisation {flops / seconds / peak:.3f}")
    result = {f"{k}_s": round(v, 4) for k, v in medians.items()}
    result |= {f"{k}_utilisation": round(flops / v / peak, 3) for k, v in medians.items()}
    result |= {
        "speedup": round(medians["before"] / medians["after"], 3),
        "step_gflop": round(flops / 1e9, 2),
        "matmul_gflop_s": round(peak / 1e9, 1),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "device": str(device),
        "dtype": args.dtype,
    }
    print(json.dumps(result))


def matmul_flops_per_s(device, dtype, n: int, repeats: int, clock: str = "wall") -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_time(lambda: a @ b, device, repeats, clock=clock)
    return 2 * n**3 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=16, help="latent height and width")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument(
        "--no-diffusers", action="store_true", help="time only ours (utilisation, no speedup)"
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCK),
        help="time steps and the matmul by wall clock or by this process's CPU time "
        "(cpu: for --threads 1 on a loaded CPU machine)",
    )
    parser.add_argument(
        "--baseline-src",
        help="another checkout's src folder: time its UNet against this one's (before/after)",
    )
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu times CPU work; use it with --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)

    x = torch.randn(args.batch, 8, args.frames, args.size, args.size, device=device, dtype=dtype)
    t = torch.randint(0, 1000, (args.batch,), device=device)
    ctx = torch.randn(args.batch, 8, TEXT_DIM, device=device, dtype=dtype)

    if args.baseline_src:
        compare_with_baseline(args, device, dtype, x, t, ctx)
        return
    results = {}
    models = (("ours", ours),) if args.no_diffusers else (("ours", ours), ("diffusers", theirs))
    for name, build in models:
        model = build().to(device=device).train()
        if dtype != torch.float32:
            model.to(dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        step = make_step(model, x, t, ctx)
        results[name] = median_time(step, device, args.repeats, clock=args.clock)
        print(f"{name:10s} {params / 1e6:6.2f}M params  median step {results[name]:.3f} s")
        if name == "ours":
            with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
                step()
            flops = counter.get_total_flops()
        del model, step

    n = 2048 if device.type == "cpu" else 8192
    peak = matmul_flops_per_s(device, dtype, n, args.repeats, clock=args.clock)
    achieved = flops / results["ours"]
    print(
        f"our step: {flops / 1e9:.2f} GFLOP, {achieved / 1e9:.1f} GFLOP/s; matmul {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        json.dumps(
            {
                "ours_s": round(results["ours"], 4),
                "diffusers_s": round(results["diffusers"], 4) if "diffusers" in results else None,
                "speedup": round(results["diffusers"] / results["ours"], 3)
                if "diffusers" in results
                else None,
                "utilisation": round(achieved / peak, 3),
                "step_gflop": round(flops / 1e9, 2),
                "matmul_gflop_s": round(peak / 1e9, 1),
                "threads": torch.get_num_threads(),
                "clock": args.clock,
                "device": str(device),
                "dtype": args.dtype,
            }
        )
    )


if __name__ == "__main__":
    main()
