"""The training loop: Accelerate for devices and processes, exact resume, fault handling.

The same code runs under ``python``, ``torchrun`` and ``accelerate launch``; on CPU several
processes talk over gloo. Nothing but throughput depends on the number of processes: the LR
schedule steps once per optimizer step (it is not handed to Accelerate, which would step it
once per process), and image batches are decided for all processes alike.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.batch import Batch
from .checkpoint import (
    checkpoint_meta,
    latest_checkpoint,
    restore_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import Config, save_config
from .distributed import check_launch, ddp_kwargs, is_sharded, shard_unet
from .ema import EMA
from .guard import Counters, TrainingStopped
from .outputs import save_pipeline, whole_unet, write_sample
from .setup import build_components, prompt_encoder
from .step import batch_inputs, compute_loss, step_generator
from .stream import make_stream

logger = logging.getLogger("pixeldance.train")


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


def _model_and_optimizer(cfg: Config, unet, accelerator):
    """The UNet placed (DDP replica or FSDP shards), AdamW, the LR schedule and the EMA."""
    from diffusers.optimization import get_scheduler

    o = cfg.optim
    if o.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    if o.fsdp:
        unet = shard_unet(unet, accelerator.device)
        sharded = [p for p in unet.parameters() if is_sharded(p)]
        if accelerator.is_main_process:
            logger.info(
                "FSDP2: %d of %d parameter tensors sharded across %d processes",
                len(sharded),
                len(list(unet.parameters())),
                accelerator.num_processes,
            )
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=o.lr,
        betas=(o.adam_beta1, o.adam_beta2),
        eps=o.adam_eps,
        weight_decay=o.weight_decay,
    )
    # stepped by the loop once per optimizer step; Accelerate would step a prepared schedule
    # once per process (no dataloader is prepared), ending warm-ups early on many processes
    lr_scheduler = get_scheduler(
        o.lr_schedule, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=o.max_steps
    )
    if o.fsdp:  # already sharded; Accelerate would wrap it in DDP
        optimizer = accelerator.prepare(optimizer)
    else:
        unet, optimizer = accelerator.prepare(unet, optimizer)
    base = accelerator.unwrap_model(unet)
    ema = EMA(base.named_parameters(), o.ema_decay) if o.ema_decay > 0 else None
    return unet, optimizer, lr_scheduler, ema


def train(cfg: Config, resume: bool = False) -> Path:
    """Train and return the folder of the final pipeline (``{output_dir}/pipeline``)."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration, gather_object

    o = cfg.optim
    check_launch(o.fsdp, o.mixed_precision)
    out = Path(cfg.run.output_dir)
    cpu = not torch.cuda.is_available()  # several CPU processes then talk over gloo
    procs = PartialState(cpu=cpu)
    ckpt_path = latest_checkpoint(out) if resume else None
    start = checkpoint_meta(ckpt_path)["step"] if ckpt_path is not None else 0
    torch.manual_seed(cfg.run.seed)
    comps = build_components(cfg)
    buckets = cfg.data.buckets
    stream, empty_cached = make_stream(
        cfg, start, procs.process_index, procs.num_processes, vae=comps.vae
    )
    mixing = stream.image_every > 0  # image batches leave the temporal layers unused
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=o.mixed_precision,
        gradient_accumulation_steps=o.grad_accum,
        log_with=_trackers(cfg.run.trackers) or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        kwargs_handlers=[ddp_kwargs(mixing)],
    )
    main, rank, device = accelerator.is_main_process, accelerator.process_index, accelerator.device
    if main and mixing and accelerator.num_processes > 1 and not o.fsdp:
        logger.info(
            "DDP looks for unused parameters: image batches skip the temporal layers (its "
            "warning that a video step used them all is expected)"
        )
    if main and resume and ckpt_path is None:
        logger.info("--resume: no complete checkpoint in %s, starting from step 0", out)

    unet, optimizer, lr_scheduler, ema = _model_and_optimizer(cfg, comps.unet, accelerator)
    base = accelerator.unwrap_model(unet)
    vae, scheduler, pe = comps.vae.to(device), comps.scheduler, prompt_encoder(comps)
    comps.text_encoder.to(device)
    counters = Counters()
    if ckpt_path is not None:
        meta = restore_checkpoint(ckpt_path, base, ema, optimizer.optimizer, lr_scheduler, rank)
        counters = Counters.restore(meta.get("counters", {}), start)
        if meta["rng"] is not None:
            set_rng_state(meta["rng"])
        logger.info("resumed from %s at step %d", ckpt_path, start)
    step = start
    opened = ckpt_path is not None

    def open_run_folder() -> None:
        """Make the run folder, its config and its logs: at the first step that trains, so a
        run that cannot learn leaves nothing behind."""
        nonlocal opened
        if opened:
            return
        out.mkdir(parents=True, exist_ok=True)
        if main:
            save_config(cfg, out / "config.yaml")
            accelerator.init_trackers("pixeldance", config=_flat(cfg.to_dict()))
        opened = True

    if ckpt_path is not None and main:
        accelerator.init_trackers("pixeldance", config=_flat(cfg.to_dict()))

    def checkpoint(at_step: int) -> None:
        rngs = gather_object([rng_state()])
        extra = {
            "counters": counters.to_dict(),
            "ema_optimization_step": ema.optimization_step if ema is not None else 0,
        }
        save_checkpoint(
            out, at_step, base, ema, optimizer.optimizer, lr_scheduler.state_dict(), rngs, extra,
            cfg.run.keep_checkpoints, main,
        )  # fmt: skip
        accelerator.wait_for_everyone()

    bar = tqdm(total=o.max_steps, initial=start, disable=not main, desc="train", dynamic_ncols=True)
    t_last, samples_since = time.perf_counter(), 0
    with _Signals() as signals:
        while step < o.max_steps:
            losses = []
            lr_now = optimizer.param_groups[0]["lr"]
            for micro in range(o.grad_accum):
                _, kind, batch = next(stream)
                counters.bad_files += len(batch.bad)
                if cfg.run.log_batches:
                    open_run_folder()
                    _log_batch(out, rank, step, kind, batch, lr_now)
                g = step_generator(cfg.run.seed, step * o.grad_accum + micro, rank, device)
                with accelerator.accumulate(unet):
                    if batch.empty:
                        counters.empty_batches += 1
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
                counters.skipped()
                logger.warning(
                    "step %d: non-finite loss or no usable sample, step skipped (%d in a row)",
                    step,
                    counters.nonfinite_in_a_row,
                )
                if counters.nonfinite_in_a_row >= cfg.run.max_nonfinite:
                    bar.close()
                    if not counters.trained_steps:
                        accelerator.end_training()
                        raise TrainingStopped(counters.nothing_learnt(cfg.data.manifest, lr_now))
                    checkpoint(step)  # collective: before the process group ends
                    accelerator.end_training()
                    raise TrainingStopped(
                        f"{counters.nonfinite_in_a_row} non-finite losses in a row at step "
                        f"{step}; the state after the last step that trained is saved in {out}. "
                        "Lower optim.lr or check the data, then --resume."
                    )
                step += 1  # the step is spent (its data is consumed), the weights are unchanged
                bar.update(1)
                continue
            counters.trained()
            open_run_folder()
            if not optimizer.step_was_skipped:  # fp16: a step the scaler skipped moves no LR
                lr_scheduler.step()
            if ema is not None:
                ema.step(base.parameters())
            step += 1
            bar.update(1)
            loss_value = sum(losses) / len(losses)
            if step % cfg.run.log_every == 0 or step == o.max_steps:
                now = time.perf_counter()
                rate = samples_since * accelerator.num_processes / max(now - t_last, 1e-9)
                t_last, samples_since = now, 0
                logs = {
                    "loss": loss_value,
                    "lr": lr_now,
                    "samples_per_s": rate,
                    "nonfinite": counters.nonfinite,
                    "bad_files": counters.bad_files,
                }
                accelerator.log(logs, step=step)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr_now:.2e}", sps=f"{rate:.1f}")
            if (
                cfg.run.checkpoint_every
                and step % cfg.run.checkpoint_every == 0
                and step < o.max_steps
            ):
                checkpoint(step)
            if cfg.run.sample_every and step % cfg.run.sample_every == 0:
                model = whole_unet(base, ema, main)  # every process: shards are gathered
                if main:
                    write_sample(cfg, comps, model, buckets, out, step)
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
    if not counters.trained_steps:
        accelerator.end_training()
        raise TrainingStopped(counters.nothing_learnt(cfg.data.manifest, lr_now))
    checkpoint(step)
    final = out / "pipeline"
    model = whole_unet(base, ema, main)
    if main:
        save_pipeline(cfg, comps, model, final)
        logger.info("training done: %s; %s", final, counters.summary())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _log_batch(out: Path, rank: int, step: int, kind: str, batch: Batch, lr: float) -> None:
    record = {"step": step, "kind": kind, "lr": lr, "captions": batch.captions}
    with open(out / f"batches-rank{rank}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


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
