"""Where a run resumes, agreed by every process, and on how many processes it may.

Multi-node safety: only the main process writes checkpoints, into ``run.output_dir`` as its
node sees it, and which node holds the main process is decided at each start. So at start every
process reports the checkpoint it would resume from (step, a fingerprint of its ``state.json``,
the config that wrote it, the process count it was written on) and the config it was given; if
they differ anywhere, every process stops with one line saying which rank sees what (the output
folder must be one folder shared by every node).

Process count: a checkpoint records the world size, the micro batch of every bucket, the
accumulation and the global batch (``micro batch x processes x optim.grad_accum``), which is
what fixes the samples and LR of each step. Resuming on another process count keeps the global
batch: as given if the new micro batch x processes x accumulation already makes it, else by
changing ``optim.grad_accum`` when that divides; otherwise it is refused in one line naming the
numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from .checkpoint import checkpoint_meta, resume_point
from .config import Config
from .stages import plan

logger = logging.getLogger("pixeldance.train")


def config_hash(cfg: Config) -> str:
    """A short fingerprint of a config, its output folder left out (nodes may mount it at
    different paths)."""
    values = cfg.to_dict()
    values["run"].pop("output_dir", None)
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def batch_geometry(cfg: Config, world: int) -> dict:
    """What fixes the samples of a step: processes, accumulation, each bucket's micro batch
    (``images``: the image batches') and the global batch it makes."""
    accum = cfg.optim.grad_accum
    micro = {b.name: b.batch_size for s in plan(cfg) for b in s.buckets}
    micro["images"] = cfg.data.image_batch_size
    return {
        "world_size": world,
        "grad_accum": accum,
        "micro_batch": micro,
        "global_batch": {k: v * world * accum for k, v in micro.items()},
    }


def _view(out: Path, resume, cfg: Config) -> dict:
    """What this process sees: its config, and the checkpoint it would resume from."""
    view = {"config": config_hash(cfg), "checkpoint": None, "problem": None, "folder": str(out)}
    try:
        ckpt = resume_point(out, resume)
        if ckpt is not None:
            meta = checkpoint_meta(ckpt)
            state = (ckpt / "state.json").read_bytes()
            view["checkpoint"] = {
                "path": str(ckpt),
                "step": meta["step"],
                "state": hashlib.sha256(state).hexdigest()[:12],
                "config": meta.get("config_hash"),
                "world_size": (meta.get("batch") or {}).get("world_size"),
            }
    except (OSError, ValueError) as err:
        view["problem"] = " ".join(str(err).split())
    return view


def _describe(rank: int, view: dict) -> str:
    if view["problem"]:
        return f"rank {rank}: {view['problem']}"
    c = view["checkpoint"]
    if c is None:
        return f"rank {rank} (config {view['config']}): no checkpoint in {view['folder']}"
    world = c["world_size"] if c["world_size"] is not None else "?"
    return (
        f"rank {rank} (config {view['config']}): {Path(c['path']).name} (step {c['step']}, "
        f"state {c['state']}, written by config {c['config'] or '?'} on {world} processes)"
    )


def agree_on_resume(cfg: Config, resume, rank: int, world: int) -> tuple[Path | None, dict | None]:
    """The checkpoint every process resumes from and its JSON part (None, None: from step 0).
    Collective with several processes; raises ValueError on every process if they differ."""
    out = Path(cfg.run.output_dir)
    view = _view(out, resume, cfg)
    views = [view]
    if world > 1:
        from accelerate.utils import gather_object

        views = gather_object([view])
    same = all(_key(v) == _key(views[0]) for v in views)
    if not same or view["problem"]:
        seen = "; ".join(_describe(r, v) for r, v in enumerate(views))
        if len(views) == 1:
            raise ValueError(seen.removeprefix("rank 0: "))
        raise ValueError(
            f"the {world} processes do not agree on where to resume: {seen}. Every node must "
            "see the same run.output_dir (one shared folder) and the same config (TRAINING.md, "
            "Several nodes)"
        )
    if view["checkpoint"] is None:
        return None, None
    ckpt = Path(view["checkpoint"]["path"])
    return ckpt, checkpoint_meta(ckpt)


def _key(view: dict) -> tuple:
    """A view as compared across processes: not by path (each node mounts its own folder)."""
    c = view["checkpoint"]
    checkpoint = None if c is None else {k: v for k, v in c.items() if k != "path"}
    return view["config"], view["problem"], json.dumps(checkpoint, sort_keys=True)


def fit_process_count(cfg: Config, saved: dict | None, world: int) -> Config:
    """``cfg`` to resume a checkpoint whose batch geometry is ``saved`` on ``world``
    processes: the same global batch, with ``optim.grad_accum`` changed if needed (and
    logged); ValueError naming the numbers if it cannot be kept."""
    if not saved:  # a checkpoint from before geometries were recorded
        return cfg
    now = batch_geometry(cfg, world)
    if now["global_batch"] == saved["global_batch"]:
        return cfg
    accum = set()
    for name, total in saved["global_batch"].items():
        per_step = now["micro_batch"].get(name)
        if per_step is None:  # a bucket the config no longer has: nothing to keep
            continue
        accum.add(total / (per_step * world))
    if len(accum) == 1 and (a := accum.pop()) == int(a) and a >= 1:
        fitted = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, grad_accum=int(a)))
        logger.warning(
            "the checkpoint was written on %d processes with optim.grad_accum=%d; resuming on "
            "%d processes with optim.grad_accum=%d keeps its global batch %s",
            saved["world_size"], saved["grad_accum"], world, int(a), _batches(saved),
        )  # fmt: skip
        return fitted
    name = next(iter(saved["global_batch"]))
    raise ValueError(
        f"cannot resume on {world} processes: the checkpoint was written on "
        f"{saved['world_size']} processes x micro batch {saved['micro_batch'].get(name)} x "
        f"optim.grad_accum {saved['grad_accum']} = global batch {saved['global_batch'][name]} "
        f"(bucket {name}), and {world} processes x micro batch {now['micro_batch'].get(name)} "
        f"cannot make {saved['global_batch'][name]} with a whole optim.grad_accum. Resume on "
        f"a process count that divides it, or set the buckets' batch_size and optim.grad_accum "
        "so that they make the same global batch"
    )


def _batches(geometry: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in geometry["global_batch"].items())
