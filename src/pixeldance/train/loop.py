"""The training loop: Accelerate for devices and processes, exact resume, fault handling.

The same code runs under ``python``, ``torchrun`` and ``accelerate launch``; on CPU several
processes talk over gloo.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import Config, save_config
from .setup import build_components, data_buckets, prompt_encoder
from .step import batch_inputs, compute_loss, step_generator
from .stream import make_stream

logger = logging.getLogger("pixeldance.train")


class TrainingStopped(RuntimeError):
    """Raised when too many non-finite losses in a row stop the run."""


class _Signals:
    """Turns SIGTERM/SIGINT into a flag checked between steps."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _trackers(names: list[str]) -> list[str]:
    out = []
    for name in names:
        if name == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                logger.warning("tensorboard is not installed; pip install tensorboard to log there")
                continue
        out.append(name)
    return out


def train(cfg: Config, resume: bool = False) -> Path:
    """Train and return the folder of the final pipeline (``{output_dir}/pipeline``)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, gather_object
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = Path(cfg.run.output_dir)
    o = cfg.optim
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # several CPU processes then talk over gloo
        mixed_precision=o.mixed_precision,
        gradient_accumulation_steps=o.grad_accum,
        log_with=_trackers(cfg.run.trackers) or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg.run.seed)

    comps = build_components(cfg)
    unet, vae, scheduler = comps.unet, comps.vae, comps.scheduler
    pe = prompt_encoder(comps)
    if o.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=o.lr,
        betas=(o.adam_beta1, o.adam_beta2),
        eps=o.adam_eps,
        weight_decay=o.weight_decay,
    )
    lr_scheduler = get_scheduler(
        o.lr_schedule, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=o.max_steps
    )
    ema = EMAModel(unet.parameters(), decay=o.ema_decay) if o.ema_decay > 0 else None

    start = 0
    ckpt_path = latest_checkpoint(out) if resume else None
    if resume and ckpt_path is None and main:
        logger.info("--resume: no complete checkpoint in %s, starting from step 0", out)
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path, accelerator.process_index)
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        if ema is not None and state["ema"] is not None:
            for p, name in zip(
                ema.shadow_params, [n for n, _ in unet.named_parameters()], strict=True
            ):
                p.copy_(state["ema"][name])
            ema.optimization_step = state["meta"].get("ema_optimization_step", 0)
        if state["rng"] is not None:
            set_rng_state(state["rng"])
        start = state["step"]
        logger.info("resumed from %s at step %d", ckpt_path, start)

    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    device = accelerator.device
    vae.to(device)
    comps.text_encoder.to(device)
    if ema is not None:
        ema.to(device)

    buckets = data_buckets(cfg)
    stream, empty_cached = make_stream(
        cfg,
        buckets,
        start,
        accelerator.process_index,
        accelerator.num_processes,
        vae=comps.vae,
    )
    if main:
        accelerator.init_trackers("pixeldance", config=_flat(cfg.to_dict()))

    counters = {"nonfinite": 0, "nonfinite_in_a_row": 0, "bad_files": 0, "empty_batches": 0}
    step = start

    def checkpoint(at_step: int) -> None:
        rngs = gather_object([rng_state()])
        if main:
            base = accelerator.unwrap_model(unet)
            ema_state = None
            if ema is not None:
                ema_state = {
                    n: p
                    for (n, _), p in zip(base.named_parameters(), ema.shadow_params, strict=True)
                }
            save_checkpoint(
                out,
                at_step,
                base.state_dict(),
                ema_state,
                optimizer.state_dict(),
                lr_scheduler.state_dict(),
                rngs,
                {
                    "counters": counters,
                    "ema_optimization_step": getattr(ema, "optimization_step", 0),
                },
                cfg.run.keep_checkpoints,
            )
        accelerator.wait_for_everyone()

    bar = tqdm(total=o.max_steps, initial=start, disable=not main, desc="train", dynamic_ncols=True)
    t_last, samples_since = time.perf_counter(), 0
    with _Signals() as signals:
        while step < o.max_steps:
            losses = []
            for micro in range(o.grad_accum):
                _, kind, batch = next(stream)
                counters["bad_files"] += len(batch["bad"])
                if cfg.run.log_batches:
                    _log_batch(out, accelerator.process_index, step, kind, batch)
                g = step_generator(
                    cfg.run.seed, step * o.grad_accum + micro, accelerator.process_index, device
                )
                with accelerator.accumulate(unet):
                    if "latents" not in batch and batch["pixels"] is None:
                        counters["empty_batches"] += 1
                        loss = torch.tensor(float("nan"), device=device)
                    else:
                        inputs = batch_inputs(batch, vae, pe, empty_cached, device, torch.float32)
                        with accelerator.autocast():
                            loss = compute_loss(
                                unet,
                                scheduler,
                                inputs,
                                cfg.instructions,
                                g,
                                cfg.model.snr_gamma,
                                cfg.model.motion_loss_weight,
                            )
                        samples_since += inputs.latents.shape[0]
                    if step in cfg.run.inject_nan_steps:
                        loss = loss * float("nan")
                    finite = bool(
                        accelerator.gather(torch.isfinite(loss.detach()).reshape(1)).all()
                    )
                    if finite:
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and o.grad_clip > 0:
                            accelerator.clip_grad_norm_(unet.parameters(), o.grad_clip)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        losses.append(loss.item())
                    else:
                        optimizer.zero_grad(set_to_none=True)
            if not losses:
                counters["nonfinite"] += 1
                counters["nonfinite_in_a_row"] += 1
                logger.warning(
                    "step %d: non-finite loss, step skipped (%d in a row)",
                    step,
                    counters["nonfinite_in_a_row"],
                )
                if counters["nonfinite_in_a_row"] >= cfg.run.max_nonfinite:
                    checkpoint(step)
                    accelerator.end_training()
                    raise TrainingStopped(
                        f"{counters['nonfinite_in_a_row']} non-finite losses in a row at step {step}; "
                        f"the last good state is saved in {out}. Lower optim.lr or check the data, then --resume."
                    )
                step += 1  # the step is spent (its data is consumed), the weights are unchanged
                bar.update(1)
                continue
            counters["nonfinite_in_a_row"] = 0
            lr_scheduler.step()
            if ema is not None:
                ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            bar.update(1)
            loss_value = sum(losses) / len(losses)
            if step % cfg.run.log_every == 0 or step == o.max_steps:
                now = time.perf_counter()
                rate = samples_since * accelerator.num_processes / max(now - t_last, 1e-9)
                t_last, samples_since = now, 0
                logs = {
                    "loss": loss_value,
                    "lr": lr_scheduler.get_last_lr()[0],
                    "samples_per_s": rate,
                    "nonfinite": counters["nonfinite"],
                    "bad_files": counters["bad_files"],
                }
                accelerator.log(logs, step=step)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{logs['lr']:.2e}", sps=f"{rate:.1f}")
            if (
                cfg.run.checkpoint_every
                and step % cfg.run.checkpoint_every == 0
                and step < o.max_steps
            ):
                checkpoint(step)
            if main and cfg.run.sample_every and step % cfg.run.sample_every == 0:
                _write_sample(cfg, comps, accelerator.unwrap_model(unet), ema, buckets, out, step)
            if signals.received is not None:
                checkpoint(step)
                bar.close()
                accelerator.end_training()
                logger.warning(
                    "stopped by signal %d at step %d; checkpoint saved; continue with --resume",
                    signals.received,
                    step,
                )
                raise SystemExit(128 + signals.received)
    bar.close()
    checkpoint(step)
    final = out / "pipeline"
    if main:
        base = accelerator.unwrap_model(unet)
        save_pipeline(cfg, comps, base, ema, final)
        logger.info("training done: %s; %s", final, _summary(counters))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _log_batch(out: Path, rank: int, step: int, kind: str, batch: dict) -> None:
    with open(out / f"batches-rank{rank}.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "kind": kind, "captions": batch["captions"]}) + "\n")


def _summary(counters: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in counters.items() if k != "nonfinite_in_a_row")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def _ema_unet(unet, ema):
    """A copy of the UNet holding the EMA weights (or the UNet itself without EMA)."""
    if ema is None:
        return unet
    import copy

    copied = copy.deepcopy(unet)
    ema.copy_to(copied.parameters())
    return copied


def build_pipeline(comps, unet, ema):
    """A pipeline around the trained UNet (its EMA weights if any), sampling with DDIM."""
    from diffusers import DDIMScheduler

    from ..pipeline import PixelDancePipeline

    scheduler = DDIMScheduler.from_config(comps.scheduler.config, timestep_spacing="trailing")
    return PixelDancePipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=_ema_unet(unet, ema).eval(),
        scheduler=scheduler,
    )


def save_pipeline(cfg: Config, comps, unet, ema, folder: Path) -> None:
    """Write the final pipeline folder, with the frame count, frame rate and sizes it was
    trained at as its generation settings (so generate and the benchmarks use them)."""
    from ..generation import GenerationConfig

    pipe = build_pipeline(comps, unet, ema)
    pipe.generation_config = GenerationConfig.from_training(cfg)
    pipe.save_pretrained(
        folder,
        text_encoder_from_package=cfg.model.text_encoder is None and cfg.model.init == "scratch",
    )


def _write_sample(cfg, comps, unet, ema, buckets, out: Path, step: int) -> None:
    from ..files import write_video
    from ..pipeline import frames_to_uint8

    pipe = build_pipeline(comps, unet, ema)
    pipe.set_progress_bar_config(disable=True)
    b = buckets[0]
    steps = cfg.run.sample_steps
    frames = pipe(
        cfg.run.sample_prompt,
        num_frames=max(b.frames, 2),
        height=b.height,
        width=b.width,
        num_inference_steps=steps,
        tau=0,
        output_type="np",
        generator=torch.Generator().manual_seed(cfg.run.seed),
    ).frames
    write_video(frames_to_uint8(frames), out / "samples" / f"step-{step:08d}.mp4", fps=cfg.data.fps)
    unet.train()
