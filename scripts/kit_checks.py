"""The checks the offline kit runs on a GPU node (or, with no GPU, their CPU mode).

Run from the kit folder after its install line (see scripts/offline_kit.py); writes JSON lines
to ``OUT/kit_results.jsonl`` (every line with the device's name and torch's version) and a
few PNG strips of frames. Nothing here needs PyAV or the text encoder's weights: the shipped
model's text states for the prompts used here were computed where the kit was built
(``prompt_states.safetensors``, float32, from the real encoder) and are looked up by token ids.

Parts, each one JSON line, a failure recorded as ``{"part": ..., "error": ...}``:
- ``correctness``: the same seed twice gives the same video; bfloat16 against float32 (mean
  and max absolute frame difference on [0, 255]); a CPU generator with a CUDA pipeline;
- ``generation``: the shipped model at its settings, seconds per clip, per dtype (CUDA:
  fp32/bf16/fp16), with and without ``torch.compile`` (CUDA), step cache off and K = 3,
  model CPU offload's peak memory against none (CUDA);
- ``guidance``: one batched UNet call against two (fast_compare.guidance_cost);
- ``sdpa``: the flash-attention kernel accepted at the UNet's attention shapes (CUDA);
- ``unet_train``: gpu_smoke.py's SD-1.5-shaped UNet train step with and without gradient
  checkpointing (on the CPU its narrow stand-in);
- ``p5``: an SD-1.5-shaped random UNet's 25 guided DDIM steps at 16 x 32 x 32 latents
  (16 x 256 x 256 frames), the UNet loop alone, per dtype (CUDA only).

    python kit_checks.py --out OUT [--cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
PROMPT = "a red circle moves to the right"
PROMPTS = (PROMPT, "")  # the empty prompt: the unconditional branch


class CachedTextEncoder(nn.Module):
    """Text states looked up by token ids: a stand-in for the text encoder on a node without
    its weights. Unknown prompts are refused, not guessed."""

    def __init__(self, ids: torch.Tensor, states: torch.Tensor):
        super().__init__()
        self.config = SimpleNamespace(model_type="cached")
        self.states = nn.Parameter(states, requires_grad=False)  # (P, L, D)
        self.keys = [tuple(row.tolist()) for row in ids]

    @property
    def dtype(self) -> torch.dtype:
        return self.states.dtype

    @property
    def device(self) -> torch.device:
        return self.states.device

    def forward(self, input_ids, attention_mask=None, **_):
        rows = []
        for row in input_ids.tolist():
            if tuple(row) not in self.keys:
                raise KeyError("prompt not in the kit's prompt_states.safetensors")
            rows.append(self.keys.index(tuple(row)))
        return SimpleNamespace(last_hidden_state=self.states[rows].to(input_ids.device))


def shipped_pipeline(states_file: Path):
    from diffusers import DDIMScheduler
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from pixeldance import PixelDancePipeline, PixelDanceUNet
    from pixeldance.folders import shipped_model_path
    from pixeldance.generation import GenerationConfig
    from pixeldance.models.codec import SpaceToDepthCodec

    folder = Path(shipped_model_path())
    cached = load_file(states_file)
    pipe = PixelDancePipeline(
        vae=SpaceToDepthCodec.from_pretrained(folder / "vae"),
        text_encoder=CachedTextEncoder(cached["input_ids"], cached["states"]),
        tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
        unet=PixelDanceUNet.from_pretrained(folder / "unet", use_safetensors=True),
        scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"),
    )
    pipe.generation_config = GenerationConfig.load(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def clip(pipe, kwargs, device, seed=0, generator_device=None, **extra):
    gen = torch.Generator(device=generator_device or device).manual_seed(seed)
    first = np.zeros((48, 48, 3), np.uint8)
    first[16:32, 8:24] = (230, 40, 40)  # a red square on the left
    out = pipe(PROMPT, first_frame=first, generator=gen, output_type="np", **kwargs, **extra)
    return (np.clip(out.frames[0], 0, 1) * 255).round().astype(np.uint8)  # (F, H, W, 3)


def timed(fn, cuda: bool):
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, round(time.perf_counter() - start, 3)


def correctness(pipe, kwargs, device, out_dir: Path) -> dict:
    cuda = device.startswith("cuda")
    pipe.to(device, torch.float32)
    a, b = clip(pipe, kwargs, device), clip(pipe, kwargs, device)
    result = {"same_seed_twice_max_diff": int(np.abs(a.astype(int) - b.astype(int)).max())}
    pipe.to(device, torch.bfloat16)
    c = clip(pipe, kwargs, device)
    d = np.abs(a.astype(int) - c.astype(int))
    result.update(
        bf16_vs_fp32_mean_diff=round(float(d.mean()), 3), bf16_vs_fp32_max_diff=int(d.max())
    )
    if cuda:
        pipe.to(device, torch.float32)
        e = clip(pipe, kwargs, device, generator_device="cpu")
        result["cpu_generator_cuda_pipeline_finite"] = bool(np.isfinite(e).all())
    from PIL import Image

    Image.fromarray(np.concatenate([a[::3].reshape(-1, 48, 3), c[::3].reshape(-1, 48, 3)], 1)).save(
        out_dir / "fp32_bf16_frames.png"
    )
    pipe.to(device, torch.float32)
    return result


def generation(pipe, kwargs, device) -> dict:
    cuda = device.startswith("cuda")
    rows = {}
    for dtype in ("float32", "bfloat16", "float16") if cuda else ("float32",):
        for compiled in (False, True) if cuda else (False,):
            pipe.to(device, getattr(torch, dtype))
            if compiled:
                pipe.unet.compile()
            for ci in (None, 3):
                clip(pipe, {**kwargs, "num_inference_steps": 4}, device, cache_interval=ci)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                _, s = timed(lambda ci=ci: clip(pipe, kwargs, device, cache_interval=ci), cuda)
                key = f"{dtype}{'_compiled' if compiled else ''}_cache{ci or 'off'}"
                rows[key] = {"seconds_per_clip": s}
                if cuda:
                    rows[key]["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            if compiled:  # undo nn.Module.compile for the next dtype
                pipe.unet._compiled_call_impl = None
    if cuda:  # model CPU offload's peak against none, float32
        pipe.to("cpu", torch.float32)
        pipe.enable_model_cpu_offload(device=device)
        torch.cuda.reset_peak_memory_stats()
        _, s = timed(lambda: clip(pipe, kwargs, device), cuda)
        rows["float32_offload"] = {
            "seconds_per_clip": s,
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        }
        pipe.remove_all_hooks()
    pipe.to(device, torch.float32)
    return rows


def sdpa(device) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2 * 16, 8, 1024, 40, device=device, dtype=torch.bfloat16)  # SD's 32x32 level
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    return {"flash_attention_ok": True}


@torch.no_grad()
def p5(device) -> dict:
    from diffusers import DDIMScheduler

    from gpu_smoke import SD15
    from pixeldance import PixelDanceUNet

    out = {}
    for dtype in ("float32", "bfloat16", "float16"):
        torch.manual_seed(0)
        with torch.device(device):
            unet = PixelDanceUNet(**SD15).eval().to(getattr(torch, dtype))
        sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        sched.set_timesteps(25)
        x = torch.randn(1, 4, 16, 32, 32, device=device)
        c = torch.zeros_like(x)
        text = torch.randn(2, 77, 768, device=device, dtype=unet.dtype)

        def loop(x=x, unet=unet, sched=sched, c=c, text=text):
            for t in sched.timesteps:
                inp = torch.cat([x, c], 1).to(unet.dtype)
                u, k = unet(torch.cat([inp, inp]), t, text).sample.float().chunk(2)
                x = sched.step(u + 7.5 * (k - u), t, x).prev_sample
            return x

        loop()  # warm-up
        _, s = timed(loop, True)
        out[dtype] = {"unet_loop_seconds": s}
        del unet
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the result files")
    p.add_argument("--cpu", action="store_true", help="the CPU mode (small settings)")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))  # gpu_smoke.py and fast_compare.py travel beside this file
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its "kept in float32: []" notice on every cast
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.cpu
    device = "cuda" if cuda else "cpu"
    head = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
    }
    from pixeldance.pipeline import SETTING_ARGS

    pipe = shipped_pipeline(HERE / "prompt_states.safetensors")
    settings = pipe.generation_settings(device="cpu", dtype="float32")
    kwargs = {k: getattr(settings, k) for k in SETTING_ARGS if k != "cache_interval"}
    if not cuda:  # the CPU mode: the same code paths, fewer frames and steps
        kwargs.update(num_frames=4, num_inference_steps=6, tau=3)
    parts = {
        "correctness": lambda: correctness(pipe, kwargs, device, out_dir),
        "generation": lambda: generation(pipe, kwargs, device),
        "guidance": lambda: __import__("fast_compare").guidance_cost(pipe, kwargs, 3),
        "unet_train": lambda: __import__("gpu_smoke").unet_runs(
            torch.cuda.device_count() if cuda else 0
        ),
    }
    if cuda:
        parts.update(sdpa=lambda: sdpa(device), p5=lambda: p5(device))
    failed = 0
    with open(out_dir / "kit_results.jsonl", "a") as f:
        for name, fn in parts.items():
            try:
                row = {"part": name, **head, **fn()}
            except Exception as err:  # record and go on: the node's time is short
                failed += 1
                row = {
                    "part": name,
                    **head,
                    "error": repr(err),
                    "trace": traceback.format_exc()[-2000:],
                }
            line = json.dumps(row)
            print(line, flush=True)
            f.write(line + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
