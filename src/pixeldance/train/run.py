"""A training run's state: what it was built from (Accelerate, the UNet, AdamW, the data
stream) and where it stands (the step, the counters), started fresh or from its last checkpoint.

The LR schedule steps once per optimizer step: it is not handed to Accelerate, which would step
it once per process (no dataloader is prepared), ending warm-ups early on many processes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.batch import Batch
from ..encoders import PromptEncoder
from .checkpoint import restore_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import Config, save_config
from .distributed import ddp_kwargs, is_sharded, shard_unet
from .ema import EMA
from .guard import Counters
from .resume import agree_on_resume, batch_geometry, config_hash, fit_process_count
from .setup import Components, build_components, prompt_encoder
from .stopping import StopRequests
from .stream import make_stream
from .trainable import Trainable

logger = logging.getLogger("pixeldance.train")


@dataclass
class Run:
    """One process's view of a run. ``unet`` is what trains (a DDP replica, FSDP shards or the
    UNet itself); ``base`` is the UNet underneath (its parameters, its EMA, its checkpoints)."""

    cfg: Config
    out: Path
    accelerator: Any  # accelerate.Accelerator
    unet: nn.Module
    base: nn.Module
    optimizer: Any  # AcceleratedOptimizer around AdamW
    lr_scheduler: Any
    ema: EMA | None
    comps: Components
    prompts: PromptEncoder
    stream: Iterator[tuple[int, str, Batch]]  # micro-steps (step, kind, batch)
    empty_text: torch.Tensor | None  # a latent cache's empty prompt (text dropout)
    step: int = 0  # optimizer steps done
    counters: Counters = field(default_factory=Counters)
    opened: bool = False  # the run folder exists (made at the first step that trains)
    lr: float = 0.0  # the LR of the step in progress
    samples: int = 0  # samples trained on since the last log line
    t_last: float = field(default_factory=time.perf_counter)
    trained_at_save: int = 0  # counters.trained_steps at the last checkpoint (or the start)
    stops: StopRequests | None = None  # SIGTERM/SIGINT while training (set by train())
    mid_update: bool = False  # the weights are being updated (not those of step `step`)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def unsaved(self) -> bool:
        """A step trained since the last checkpoint (or the start)."""
        return self.counters.trained_steps > self.trained_at_save

    def open_folder(self) -> None:
        """Make the run folder, its config and its logs: at the first step that trains, so a
        run that cannot learn leaves nothing behind. Collective (every process calls it at the
        same step): a node whose output folder is not the main process's (not shared) gets
        the config too, so its folder is a run folder the next start recognises."""
        if self.opened:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.main:
            save_config(self.cfg, self.out / "config.yaml")
            self.accelerator.init_trackers("pixeldance", config=_flat(self.cfg.to_dict()))
        self.accelerator.wait_for_everyone()
        if not self.main and not (self.out / "config.yaml").exists():
            save_config(self.cfg, self.out / "config.yaml")
        self.opened = True

    def checkpoint(self) -> None:
        """Save the run at its step. Collective: every process calls it."""
        from accelerate.utils import gather_object

        rngs = gather_object([rng_state()])
        extra = {
            "counters": self.counters.to_dict(),
            "ema_optimization_step": self.ema.optimization_step if self.ema is not None else 0,
            "config_hash": config_hash(self.cfg),
            "batch": batch_geometry(self.cfg, self.accelerator.num_processes),
        }
        save_checkpoint(
            self.out, self.step, self.base, self.ema, self.optimizer.optimizer,
            self.lr_scheduler.state_dict(), rngs, extra, self.cfg.run.keep_checkpoints, self.main,
        )  # fmt: skip
        self.accelerator.wait_for_everyone()
        self.trained_at_save = self.counters.trained_steps

    def log_batch(self, kind: str, batch: Batch) -> None:
        """What this process trains on at this step, to ``batches-rank{r}.jsonl``."""
        record = {"step": self.step, "kind": kind, "lr": self.lr, "captions": batch.captions}
        with open(self.out / f"batches-rank{self.rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def start_run(cfg: Config, resume: bool | str | Path = False) -> Run:
    """A run at step 0, or (``resume``) at its last complete checkpoint, with its weights,
    optimizer, schedule, EMA, counters and RNG states, and its stream positioned there. Every
    process resumes from the same checkpoint and with its global batch, or none starts
    (:mod:`pixeldance.train.resume`)."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration

    o, out = cfg.optim, Path(cfg.run.output_dir)
    cpu = not torch.cuda.is_available()  # several CPU processes then talk over gloo
    procs = PartialState(cpu=cpu)
    ckpt, meta = agree_on_resume(cfg, resume, procs.process_index, procs.num_processes)
    start = meta["step"] if meta is not None else 0
    if meta is not None:  # another process count keeps the checkpoint's global batch
        cfg = fit_process_count(cfg, meta.get("batch"), procs.num_processes)
        o = cfg.optim
    torch.manual_seed(cfg.run.seed)
    comps = build_components(cfg)
    stream, empty_text = make_stream(
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
    main = accelerator.is_main_process
    if main and mixing and accelerator.num_processes > 1 and not o.fsdp:
        logger.info(
            "DDP looks for unused parameters: image batches skip the temporal layers (its "
            "warning that a video step used them all is expected)"
        )
    if main and resume and ckpt is None:
        logger.info("--resume: no complete checkpoint in %s, starting from step 0", out)
    unet, optimizer, lr_scheduler, ema = _model_and_optimizer(
        cfg, comps.unet, accelerator, comps.trainable
    )
    comps.vae.to(accelerator.device)
    comps.text_encoder.to(accelerator.device)
    run = Run(
        cfg, out, accelerator, unet, accelerator.unwrap_model(unet), optimizer, lr_scheduler,
        ema, comps, prompt_encoder(comps), stream, empty_text, step=start,
    )  # fmt: skip
    if ckpt is not None:
        _restore(run, ckpt)
    return run


def _restore(run: Run, ckpt: Path) -> None:
    meta = restore_checkpoint(
        ckpt, run.base, run.ema, run.optimizer.optimizer, run.lr_scheduler, run.rank
    )
    run.counters = Counters.restore(meta.get("counters", {}), run.step)
    run.trained_at_save = run.counters.trained_steps
    if meta["rng"] is not None:
        set_rng_state(meta["rng"])
    logger.info("resumed from %s at step %d", ckpt, run.step)
    run.opened = True
    if run.main:
        run.accelerator.init_trackers("pixeldance", config=_flat(run.cfg.to_dict()))


def _model_and_optimizer(cfg: Config, unet, accelerator, trainable: Trainable):
    """The UNet placed (DDP replica or FSDP shards), AdamW over its trainable parameters, the
    LR schedule and the EMA of those parameters (frozen ones have neither)."""
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
        trainable.param_groups(unet, o.weight_decay),
        lr=o.lr,
        betas=(o.adam_beta1, o.adam_beta2),
        eps=o.adam_eps,
        weight_decay=o.weight_decay,
    )
    trainable.freeze_slices(unet, optimizer)
    lr_scheduler = get_scheduler(
        o.lr_schedule, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=o.max_steps
    )
    if o.fsdp:  # already sharded; Accelerate would wrap it in DDP
        optimizer = accelerator.prepare(optimizer)
    else:
        unet, optimizer = accelerator.prepare(unet, optimizer)
    base = accelerator.unwrap_model(unet)
    named = [(n, p) for n, p in base.named_parameters() if p.requires_grad]
    ema = EMA(named, o.ema_decay) if o.ema_decay > 0 else None
    return unet, optimizer, lr_scheduler, ema


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
