"""GPU smoke check of the training path, one command, JSON out, under 10 minutes on a GPU.

1. Tiny config, bf16 autocast, an image batch every 2nd step, gradient accumulation 2 and
   gradient checkpointing, on a few generated Dancing Shapes clips: trains through
   ``pixeldance train`` with a checkpoint half way, then resumes from that checkpoint in a
   second folder and reports how far the resumed run's final weights are from the first's.
2. With two or more GPUs, the same run on 2 GPUs with DDP and with FSDP (``optim.fsdp``).
3. A Stable Diffusion 1.5-shaped PixelDanceUNet (random weights, about 1.04B parameters)
   under bf16 autocast: seconds per training step (forward, backward, AdamW) and peak GPU
   memory at 16 frames of 32x32 latents (256x256 pixels), gradient checkpointing off and on.

Without a GPU it says so and runs a CPU smoke only (fewer steps, a narrow SD-shaped UNet at
8x8 latents), so the script can be checked anywhere.

    python benchmarks/gpu_smoke.py [--out smoke.json] [--keep DIR]

Last line: one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SD15 = dict(  # Stable Diffusion 1.5's UNet layout, made 3D
    in_channels=8,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)


def _run(cmd: list[str], timeout: float) -> tuple[bool, float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start, f"timed out after {timeout} s"
    tail = (done.stdout + done.stderr)[-1500:]
    return done.returncode == 0, round(time.perf_counter() - start, 1), tail


def _train(data: Path, out: Path, steps: int, extra: list[str], procs: int = 1) -> list[str]:
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
        launcher += ["--master_port", str(29900 + os.getpid() % 90)]
    return [
        *launcher,
        "-m",
        "pixeldance.cli",
        "train",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--data",
        str(data / "manifest.csv"),
        "--output-dir",
        str(out),
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        str(steps // 2),
        "--set",
        f"data.images={data / 'images.csv'}",
        *[x for kv in extra for x in ("--set", kv)],
    ]


def _max_diff(a: Path, b: Path) -> float | None:
    from safetensors.torch import load_file

    worst = 0.0
    for name in ("unet", "ema", "optimizer"):
        x, y = load_file(a / f"{name}.safetensors"), load_file(b / f"{name}.safetensors")
        if x.keys() != y.keys():
            return None
        worst = max(worst, max((x[k].float() - y[k].float()).abs().max().item() for k in x))
    return worst


def tiny_runs(work: Path, gpus: int) -> dict:
    data = work / "shapes"
    ok, secs, tail = _run(
        [sys.executable, "-m", "pixeldance.cli", "make-shapes", "--out", str(data), "--num", "8"],
        300,
    )
    if not ok:
        return {"make_shapes": {"ok": False, "log": tail}}
    steps = 8 if gpus else 4
    mix = [
        # one bucket of one clip per process and micro-step: 8 clips fill every global batch
        "data.buckets=[{name: square, height: 32, width: 32, frames: 4, batch_size: 1}]",
        "data.image_batch_size=1",
        "optim.mixed_precision=bf16",
        "data.image_every=2",
        "optim.grad_accum=2",
        "optim.gradient_checkpointing=true",
    ]
    report = {}
    a = work / "tiny-a"
    ok, secs, tail = _run(_train(data, a, steps, mix), 300)
    report["tiny_bf16"] = {
        "ok": ok,
        "steps": steps,
        "seconds": secs,
        **({} if ok else {"log": tail}),
    }
    if ok:  # resume the same run from its half-way checkpoint in another folder
        import shutil

        half = f"checkpoint-{steps // 2:08d}"
        b = work / "tiny-b"
        shutil.copytree(a / half, b / half)
        # the run's config.yaml makes tiny-b a run folder, which --resume requires
        shutil.copy2(a / "config.yaml", b / "config.yaml")
        ok, secs, tail = _run([*_train(data, b, steps, mix), "--resume"], 300)
        end = f"checkpoint-{steps:08d}"
        diff = _max_diff(a / end, b / end) if ok else None
        report["tiny_resume"] = {"ok": ok, "seconds": secs, "max_abs_diff": diff}
        if not ok:
            report["tiny_resume"]["log"] = tail
    if gpus >= 2:
        for name, extra in (("ddp_2gpu", []), ("fsdp_2gpu", ["optim.fsdp=true"])):
            ok, secs, tail = _run(_train(data, work / name, steps, mix + extra, procs=2), 300)
            report[name] = {"ok": ok, "steps": steps, "seconds": secs}
            if not ok:
                report[name]["log"] = tail
    else:
        report["multi_gpu"] = f"skipped: {gpus} GPU(s)"
    return report


def unet_step(device: str, frames: int, size: int, batch: int, checkpointing: bool, **cfg):
    """Median seconds of a bf16-autocast training step and the peak memory (GiB, GPU only)."""
    from pixeldance import PixelDanceUNet

    torch.manual_seed(0)
    with torch.device(device):
        unet = PixelDanceUNet(**cfg).train()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    x = torch.randn(batch, cfg["in_channels"], frames, size, size, device=device)
    text = torch.randn(batch, 77, cfg["cross_attention_dim"], device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(4):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16):
            out = unet(x, t, text).sample
        out.float().pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result = {
        "params": sum(p.numel() for p in unet.parameters()),
        "batch": batch,
        "frames": frames,
        "latent": f"{size}x{size}",
        "gradient_checkpointing": checkpointing,
        "step_s": round(sorted(times[1:])[1], 3),
        "output_dtype": str(out.dtype),
    }
    if device == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del unet, optimizer, out
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def unet_runs(gpus: int) -> dict:
    if not gpus:
        narrow = {**SD15, "block_out_channels": (32, 64, 64, 64), "cross_attention_dim": 64}
        return {"sd15_shaped_narrow_cpu": unet_step("cpu", 4, 8, 1, True, **narrow)}
    out = {}
    for batch, checkpointing in ((1, False), (1, True), (6, True)):  # 6: sd15_webvid's batch
        key = f"sd15_batch{batch}_{'ckpt' if checkpointing else 'no_ckpt'}"
        try:
            out[key] = unet_step("cuda", 16, 32, batch, checkpointing, **SD15)
        except torch.cuda.OutOfMemoryError:
            out[key] = "out of memory"
            torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--keep", help="keep the runs in this folder (default: a temporary one)")
    args = p.parse_args()
    gpus = torch.cuda.device_count()
    report = {
        "device": torch.cuda.get_device_name(0) if gpus else "cpu",
        "gpus": gpus,
        "torch": torch.__version__,
    }
    if not gpus:
        report["note"] = "no GPU: CPU smoke only"
        print("no GPU: CPU smoke only", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        report.update(tiny_runs(work, gpus))
    report.update(unet_runs(gpus))
    report["seconds"] = round(time.perf_counter() - start, 1)
    ran = [v for v in report.values() if isinstance(v, dict)]
    report["ok"] = all(v.get("ok", True) for v in ran) and all(
        v.get("max_abs_diff") is not None for v in ran if "max_abs_diff" in v
    )
    line = json.dumps(report)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
