"""Generation speed and peak memory: seconds per clip, for the shipped model and an SD 1.5-size one.

Two pipelines:
  (a) ``shipped``: the shipped PixelDance-Shapes model at its own settings (generation.json:
      16 x 48 x 48, 50 steps, guidance 15 on timesteps 700-1000);
  (b) ``sd15``: a PixelDancePipeline of Stable Diffusion 1.5's shapes with random weights, built
      here (nothing is downloaded): the UNet inflated from a diffusers UNet2DConditionModel with
      SD 1.5's config, an AutoencoderKL with SD's config and a CLIP text encoder with SD 1.5's
      (ViT-L/14 text tower) config; the tokenizer is the packaged MiniLM one (CLIP's vocabulary
      files are a download; the token count, 77, is CLIP's). On a GPU it makes the issue's clip:
      16 x 256 x 256, 25 steps, guidance 7.5 at every step. On the CPU it makes 4 x 64 x 64
      clips in the same 25 guided steps, which finish in minutes on 2 cores, and says so.

Each configuration (pipeline x dtype x offload) gets one warm-up call (2 steps), then
``--repeats`` timed calls from the prompt and a first frame to numpy frames (text and image
encoding and the VAE decode included); it prints one JSON object: the median seconds per clip,
the median seconds per denoising step (between step callbacks) and the peak memory: on a GPU
``torch.cuda.max_memory_allocated`` during the timed calls, on the CPU the process's peak
resident memory during them (weights included). The last line is a summary, with the goal:
under 2 s per 16 x 256 x 256 clip for (b) at 25 steps with guidance on one H100.

    python benchmarks/generate_speed.py                      # every configuration this machine has
    python benchmarks/generate_speed.py --only sd15 --repeats 3
    python benchmarks/generate_speed.py --device cpu --sd15-frames 2 --sd15-size 64 --threads 1
    python benchmarks/generate_speed.py --compare-fast [--cache-interval 3] --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

GOAL_SECONDS = 2.0  # the goal on one H100: (b) at 16 x 256 x 256, 25 steps, guidance
PROMPT = "a red circle moves to the right"
FIRST_FRAME = Path(__file__).resolve().parents[1] / "examples" / "red_circle.png"


# ---------------------------------------------------------------- pipelines
def shipped_pipeline():
    from pixeldance import PixelDancePipeline
    from pixeldance.folders import shipped_model_path
    from pixeldance.pipeline import SETTING_ARGS

    pipe = PixelDancePipeline.from_pretrained(shipped_model_path())
    settings = pipe.generation_settings(device="cpu", dtype="float32")
    return pipe, {k: getattr(settings, k) for k in SETTING_ARGS}


def sd15_pipeline(frames: int, size: int, steps: int):
    """A random-weight PixelDancePipeline with SD 1.5's shapes (about 1.1B parameters)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from pixeldance import PixelDancePipeline, PixelDanceUNet
    from pixeldance.encoders import default_text_encoder_path

    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(  # Stable Diffusion 1.5's unet/config.json
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    unet = PixelDanceUNet.from_unet2d(unet2d)
    del unet2d
    vae = AutoencoderKL(  # Stable Diffusion's vae/config.json
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(  # SD 1.5's text_encoder/config.json (CLIP ViT-L/14)
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path())  # ids < 49408
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = PixelDancePipeline(vae, text_encoder.eval(), tokenizer, unet.eval(), scheduler)
    kwargs = dict(
        num_frames=frames,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=7.5,
    )
    return pipe, kwargs


def parameters(pipe) -> dict:
    return {
        name: sum(p.numel() for p in m.parameters())
        for name, m in pipe.components.items()
        if isinstance(m, torch.nn.Module)
    }


# ---------------------------------------------------------------- measuring
class PeakRSS:
    """The process's peak resident memory while in the block.

    On Linux the kernel's high-water mark (VmHWM) is reset on entry (``/proc/self/clear_refs``)
    and read on exit: exact and free. Elsewhere a thread samples the resident memory every 50 ms
    (a sampler every 5 ms halved the speed of the shipped model's many small steps).
    """

    def __enter__(self):
        import psutil

        self.process, self.peak, self._thread = psutil.Process(), 0, None
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
            return self
        except OSError:
            self.exact = False
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.05):
                self.peak = max(self.peak, self.process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.exact:
            status = Path("/proc/self/status").read_text()
            self.peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def clip(pipe, kwargs, device: str, seed: int = 0, steps: list | None = None):
    """One clip; the time at the end of each denoising step is appended to ``steps``."""
    cuda = device.startswith("cuda")

    def tick(i, t, latents):
        if cuda:
            torch.cuda.synchronize()
        if steps is not None:
            steps.append(time.perf_counter())

    generator = torch.Generator(device="cuda" if cuda else "cpu")
    return pipe(
        PROMPT,
        first_frame=FIRST_FRAME,
        generator=generator.manual_seed(seed),
        output_type="np",
        callback=tick,
        **kwargs,
    ).frames


def measure(pipe, kwargs, device: str, repeats: int) -> dict:
    cuda = device.startswith("cuda")
    clip(pipe, {**kwargs, "num_inference_steps": 2}, device)  # warm-up: kernels, caches
    times, step_times, finite = [], [], True
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        for k in range(repeats):
            start, ticks = time.perf_counter(), []
            frames = clip(pipe, kwargs, device, seed=k, steps=ticks)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            step_times += [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
            finite = finite and bool(np.isfinite(frames).all())
    memory = (
        {"peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30, "memory": "gpu allocated"}
        if cuda
        else {"peak_memory_gb": rss.peak / 2**30, "memory": "process resident (cpu)"}
    )
    return {
        "seconds_per_clip": statistics.median(times),
        "seconds_per_step": statistics.median(step_times) if step_times else None,
        "runs": times,
        "finite": finite,  # random weights in float16 may overflow; the time is still a time
        **memory,
    }


def run_configs(name: str, pipe, kwargs, device: str, dtypes, offloads, repeats, size_note):
    """Every dtype (cast in this order, float32 first) x offload; one JSON line each."""
    rows = []
    info = {"params": parameters(pipe)}
    for dtype in dtypes:
        pipe.to("cpu", getattr(torch, dtype))
        for offload in offloads:
            if offload:
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
            row = dict(
                model=name,
                device=device,
                dtype=dtype,
                offload=offload,
                frames=kwargs["num_frames"],
                height=kwargs.get("height") or pipe.default_size()[0],
                width=kwargs.get("width") or pipe.default_size()[1],
                steps=kwargs["num_inference_steps"],
                guidance=kwargs["guidance_scale"],
                guidance_interval=kwargs.get("guidance_interval"),
                size_note=size_note,
                **measure(pipe, kwargs, device, repeats),
                **info,
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
            if offload:
                pipe.remove_all_hooks()
            pipe.to("cpu")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda[:N]")
    parser.add_argument("--only", choices=["shipped", "sd15"], help="one pipeline only")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (cpu 1, gpu 3)")
    parser.add_argument("--sd15-frames", type=int, default=None, help="gpu 16, cpu 4")
    parser.add_argument("--sd15-size", type=int, default=None, help="gpu 256, cpu 64")
    parser.add_argument("--sd15-steps", type=int, default=25)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's); 1 is steadier on a machine others load",
    )
    parser.add_argument(
        "--compare-fast",
        action="store_true",
        help="instead: the shipped model at its settings against the fast ones (step cache), "
        "speed and Dancing Shapes quality in one process (see fast_compare.py)",
    )
    parser.add_argument("--cache-interval", type=int, default=3, help="fast settings' K")
    parser.add_argument("--clips", type=int, default=8, help="--compare-fast: fidelity clips")
    parser.add_argument(
        "--direction-clips", type=int, default=16, help="--compare-fast: single-mover clips"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare_fast:
        from fast_compare import compare_fast

        summary = compare_fast(
            FIRST_FRAME, args.cache_interval, args.clips, args.direction_clips, args.repeats or 3
        )
        print(json.dumps(summary), flush=True)
        return
    from diffusers.utils import logging as diffusers_logging

    from pixeldance.devices import resolve_placement

    diffusers_logging.set_verbosity_error()  # its "kept in float32: []" notice on every cast

    device = resolve_placement(args.device, "float32").device
    cuda = device.startswith("cuda")
    repeats = args.repeats or (3 if cuda else 1)
    dtypes = ("float32", "bfloat16", "float16") if cuda else ("float32", "bfloat16")
    offloads = (False, True) if cuda else (False,)  # offload needs an accelerator
    rows = []
    if args.only in (None, "shipped"):
        pipe, kwargs = shipped_pipeline()
        pipe.set_progress_bar_config(disable=True)
        rows += run_configs("shipped", pipe, kwargs, device, dtypes, offloads, repeats, None)
        del pipe
    if args.only in (None, "sd15"):
        frames = args.sd15_frames or (16 if cuda else 4)
        size = args.sd15_size or (256 if cuda else 64)
        steps = args.sd15_steps
        note = None
        if (frames, size, steps) != (16, 256, 25):
            note = f"{frames} x {size} x {size} in {steps} steps, not the goal's 16 x 256 x 256 "
            note += "in 25" + ("" if cuda else ": a size 2 CPU cores finish in minutes")
        pipe, kwargs = sd15_pipeline(frames, size, steps)
        pipe.set_progress_bar_config(disable=True)
        rows += run_configs("sd15", pipe, kwargs, device, dtypes, offloads, repeats, note)
    goal_rows = [
        r
        for r in rows
        if r["model"] == "sd15" and (r["frames"], r["height"], r["steps"]) == (16, 256, 25)
    ]
    best = min(goal_rows, key=lambda r: r["seconds_per_clip"]) if goal_rows else None
    gpu = torch.cuda.get_device_name(torch.device(device)) if cuda else None
    summary = dict(
        summary=True,
        device=device,
        gpu=gpu,
        cpu_threads=torch.get_num_threads(),
        machine=platform.processor() or platform.machine(),
        torch=torch.__version__,
        goal=f"sd15 16 x 256 x 256, 25 steps with guidance, under {GOAL_SECONDS} s on one H100",
        fastest_goal_config=None
        if best is None
        else {k: best[k] for k in ("dtype", "offload", "seconds_per_clip", "peak_memory_gb")},
        goal_met=None
        if best is None or "H100" not in (gpu or "")
        else best["seconds_per_clip"] < GOAL_SECONDS,
        note=None if best else "the goal's size did not run on this machine: not measured",
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
