"""The training loop: the paper's procedure (sec. 3.2, 4.1) one optimizer step at a time, then
flat bookkeeping (logs, checkpoints, samples), under Accelerate.

The same code runs under ``python``, ``torchrun`` and ``accelerate launch``; on CPU several
processes talk over gloo. Nothing but throughput depends on the number of processes: the LR
schedule steps once per optimizer step and image batches are decided for all processes alike.
A run stops cleanly at ``optim.max_steps``; on SIGTERM/SIGINT, agreed by every process at the
next step boundary (:mod:`pixeldance.train.stopping`: checkpoint if a step trained since the
last one, exit 128 + signal); or after ``run.max_nonfinite`` steps in a row without a finite
loss.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.batch import Batch
from .config import Config
from .distributed import check_launch
from .guard import TrainingStopped
from .outputs import final_folder, save_pipeline, whole_unet, write_sample
from .run import Run, start_run
from .step import batch_inputs, compute_loss, step_generator
from .stopping import StopRequests

__all__ = ["TrainingStopped", "train"]

logger = logging.getLogger("pixeldance.train")


def train(cfg: Config, resume: bool | str | Path = False) -> Path:
    """Train and return the folder of the final pipeline (``{output_dir}/pipeline``)."""
    check_launch(cfg.optim.fsdp, cfg.optim.mixed_precision)
    run, bar, stops = None, None, StopRequests()
    try:
        with stops:
            run = start_run(cfg, resume)  # a signal here stops at once: nothing has trained
            stops.start_stepping(run.device, run.accelerator.num_processes)
            run.stops, max_steps = stops, cfg.optim.max_steps
            bar = tqdm(
                total=max_steps, initial=run.step, disable=not run.main, desc="train",
                dynamic_ncols=True,
            )  # fmt: skip
            try:
                while run.step < max_steps:
                    loss = train_step(run)  # None: no finite loss, the weights are unchanged
                    if loss is None and run.counters.nonfinite_in_a_row >= cfg.run.max_nonfinite:
                        stop_diverged(run)  # the same on every process: losses are gathered
                    run.step += 1  # a skipped step is spent too: its data is consumed
                    run.mid_update = False
                    bar.update(1)
                    if loss is not None:
                        after_step(run, loss, bar)
                    signum = stops.agreed()  # one all-reduce: a request on any process
                    if signum:
                        stop_on_signal(run, signum)
            except (KeyboardInterrupt, Exception) as err:
                interrupted(run, stops, err)
            if not run.counters.trained_steps:
                raise TrainingStopped(run.counters.nothing_learnt(cfg.data.manifest, run.lr))
            run.checkpoint()
            return save_final(run)
    finally:
        if bar is not None:
            bar.close()
        if run is not None:
            run.accelerator.end_training()  # also ends the process group
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            # start_run refused after the processes met (a resume they do not agree on): end
            # the group here, or its threads are torn down at exit, when the other processes
            # may be gone, and the process aborts instead of exiting with the error's code
            torch.distributed.destroy_process_group()


def train_step(run: Run) -> float | None:
    """One optimizer step over ``optim.grad_accum`` micro-batches: the paper's objective on
    each (:func:`micro_batch_loss`), gradients accumulated and clipped, then AdamW, the LR
    schedule and the EMA. A micro-batch whose loss is not finite on some process is left out
    on all. Returns the mean loss, or None if no micro-batch had a finite one (the step is
    counted as skipped; weights, LR and EMA stay as they were)."""
    o, acc, counters = run.cfg.optim, run.accelerator, run.counters
    run.lr = run.optimizer.param_groups[0]["lr"]
    losses = []
    for micro in range(o.grad_accum):
        with run.stops.waiting_for_data() if run.stops is not None else nullcontext():
            _, kind, batch = next(run.stream)
        counters.count_bad(batch.bad)
        if run.cfg.run.log_batches:
            run.open_folder()
            run.log_batch(kind, batch)
        g = step_generator(run.cfg.run.seed, run.step * o.grad_accum + micro, run.rank, run.device)
        with acc.accumulate(run.unet):
            loss = micro_batch_loss(run, batch, g)
            if bool(acc.gather(torch.isfinite(loss.detach()).reshape(1)).all()):
                acc.backward(loss)
                if acc.sync_gradients and o.grad_clip > 0:
                    acc.clip_grad_norm_(run.unet.parameters(), o.grad_clip)
                run.mid_update = run.mid_update or acc.sync_gradients
                run.optimizer.step()
                losses.append(loss.item())
            run.optimizer.zero_grad(set_to_none=True)
    if not losses:
        counters.skipped()
        logger.warning(
            "step %d: non-finite loss or no usable sample, step skipped (%d in a row)",
            run.step,
            counters.nonfinite_in_a_row,
        )
        return None
    counters.trained()
    run.open_folder()
    if not run.optimizer.step_was_skipped:  # fp16: a step the scaler skipped moves no LR
        run.lr_scheduler.step()
    if run.ema is not None:
        run.ema.step(run.base.parameters())
    return sum(losses) / len(losses)


def micro_batch_loss(run: Run, batch: Batch, generator: torch.Generator) -> torch.Tensor:
    """The paper's objective on one micro-batch (perturbed image instructions, text dropout,
    the diffusion loss; :func:`pixeldance.train.step.compute_loss`); NaN if none of its samples
    loaded. All its randomness comes from ``generator``."""
    if batch.empty:
        run.counters.empty_batches += 1
        return torch.tensor(float("nan"), device=run.device)
    inputs = batch_inputs(
        batch, run.comps.vae, run.prompts, run.empty_text, run.device, torch.float32
    )
    m = run.cfg.model
    with run.accelerator.autocast():
        loss = compute_loss(
            run.unet, run.comps.scheduler, inputs, run.cfg.instructions, generator,
            m.snr_gamma, m.motion_loss_weight,
        )  # fmt: skip
    run.samples += inputs.latents.shape[0]
    return loss


def after_step(run: Run, loss: float, bar: tqdm) -> None:
    """Bookkeeping after a step that trained: log, checkpoint, sample."""
    r, step = run.cfg.run, run.step
    last = step == run.cfg.optim.max_steps  # the final checkpoint is written by train()
    if (r.log_every and step % r.log_every == 0) or last:  # 0: never
        log_step(run, loss, bar)
    if r.checkpoint_every and step % r.checkpoint_every == 0 and not last:
        run.checkpoint()
    if r.sample_every and step % r.sample_every == 0:
        model = whole_unet(run.base, run.ema, run.main)  # every process: shards are gathered
        if run.main:
            write_sample(run.cfg, run.comps, model, run.cfg.data.buckets, run.out, step)


def log_step(run: Run, loss: float, bar: tqdm) -> None:
    """Loss, LR, throughput (all processes) and counters, to the trackers and the bar."""
    now = time.perf_counter()
    rate = run.samples * run.accelerator.num_processes / max(now - run.t_last, 1e-9)
    run.t_last, run.samples = now, 0
    logs = {
        "loss": loss,
        "lr": run.lr,
        "samples_per_s": rate,
        "nonfinite": run.counters.nonfinite,
        "bad_files": run.counters.bad_files,
    }
    run.accelerator.log(logs, step=run.step)
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{run.lr:.2e}", sps=f"{rate:.1f}")


def stop_diverged(run: Run) -> None:
    """Too many steps in a row without a finite loss: save the state after the last step that
    trained (collective, before the process group ends) and stop; a run that never trained
    saves nothing."""
    counters = run.counters
    if not counters.trained_steps:
        raise TrainingStopped(counters.nothing_learnt(run.cfg.data.manifest, run.lr))
    run.checkpoint()
    raise TrainingStopped(
        f"{counters.nonfinite_in_a_row} non-finite losses in a row at step {run.step}; the "
        f"state after the last step that trained is saved in {run.out}. Lower optim.lr or "
        "check the data, then --resume."
    )


def stop_on_signal(run: Run, signum: int) -> None:
    """SIGTERM/SIGINT, agreed by every process at a step boundary: all save this step (if a
    step trained since the last checkpoint), then exit with 128 + the signal's number."""
    saved = run.unsaved
    if saved:
        run.checkpoint()
    logger.warning(
        "stopped by signal %d at step %d; %s",
        signum,
        run.step,
        "checkpoint saved; continue with --resume"
        if saved
        else "nothing trained since the last checkpoint, nothing saved",
    )
    raise SystemExit(128 + signum)


def interrupted(run: Run, stops: StopRequests, err: BaseException) -> None:
    """A stop that did not come at a step boundary: after the grace for data that did not come
    (saved if safe), or an error raised because the signal also ended the DataLoader workers (a
    whole process group's SIGTERM: the stop, saved if safe). Anything else is raised as it is."""
    if isinstance(err, KeyboardInterrupt):
        if stops.stopped_waiting:
            save_if_safe(run)
        raise err
    if stops.received is None:
        raise err
    save_if_safe(run)
    stops.stop_now()


def save_if_safe(run: Run) -> None:
    """A stop that did not come at a step boundary (the data did not come, or its readers
    died with the signal): one process saves the steps it finished, unless the stop landed in
    the middle of an update; several cannot agree on a save and save nothing."""
    if not run.unsaved:
        return
    if run.accelerator.num_processes == 1 and not run.mid_update:
        run.checkpoint()
        logger.warning("stopped between steps; step %d saved", run.step)
    else:
        logger.warning(
            "stopped in the middle of step %d%s; the steps since the last checkpoint are not saved",
            run.step + 1,
            f" on {run.accelerator.num_processes} processes" if not run.mid_update else "",
        )


def save_final(run: Run) -> Path:
    """The final pipeline (EMA weights, whole), written by the main process."""
    final = final_folder(run.cfg, run.out)
    model = whole_unet(run.base, run.ema, run.main)  # every process: shards are gathered
    if run.main:
        save_pipeline(run.cfg, run.comps, model, final)
        logger.info("training done: %s; %s", final, run.counters.summary())
    run.accelerator.wait_for_everyone()
    return final
