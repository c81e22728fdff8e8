"""Checkpoints that survive crashes: written to a temporary folder, renamed when complete.

A checkpoint folder ``checkpoint-{step:08d}`` holds the UNet, its EMA, the optimizer state and
the RNG states of every process as safetensors; the LR schedule, the step and the data position
as JSON; and a ``COMPLETE`` marker written last. ``--resume`` takes the newest folder that has
the marker, so a half-written checkpoint is never picked.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d{8})$")
MARKER = "COMPLETE"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    """This process's RNG states as tensors (torch CPU/CUDA, numpy, python)."""
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    out["numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    out["numpy.meta"] = torch.tensor([np_state[2], np_state[3], np_state[4]], dtype=torch.float64)
    py = random.getstate()
    out["python"] = torch.tensor(py[1], dtype=torch.int64)
    return out


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    meta = state["numpy.meta"].tolist()
    keys = state["numpy.keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(meta[0]), int(meta[1]), float(meta[2])))
    random.setstate((3, tuple(int(x) for x in state["python"].tolist()), None))


def save_checkpoint(
    output_dir: Path,
    step: int,
    unet_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict,
    scheduler_state: dict,
    rng_states: list[dict[str, torch.Tensor]],
    extra: dict,
    keep: int,
) -> Path:
    """Write a checkpoint of ``step`` completely, rename it into place, prune to ``keep``."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step:08d}"
    tmp = output_dir / f".tmp-checkpoint-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in unet_state.items()}, tmp / "unet.safetensors"
    )
    if ema_state is not None:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in ema_state.items()},
            tmp / "ema.safetensors",
        )
    opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    for rank, state in enumerate(rng_states):
        save_file(state, tmp / f"rng-{rank}.safetensors")
    meta = {"step": step, "optimizer": opt_meta, "lr_scheduler": scheduler_state, **extra}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=float))
    (tmp / MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    prune_checkpoints(output_dir, keep)
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        p for p in output_dir.iterdir() if CHECKPOINT_RE.match(p.name) and (p / MARKER).exists()
    ]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, rank: int = 0) -> dict:
    """Everything :func:`save_checkpoint` wrote, as tensors and plain values."""
    path = Path(path)
    if not (path / MARKER).exists():
        raise ValueError(f"incomplete checkpoint (no {MARKER} marker): {path}")
    meta = json.loads((path / "state.json").read_text())
    out = {
        "step": meta["step"],
        "unet": load_file(path / "unet.safetensors"),
        "ema": load_file(path / "ema.safetensors") if (path / "ema.safetensors").exists() else None,
        "optimizer": _unflatten_optimizer(
            load_file(path / "optimizer.safetensors"), meta["optimizer"]
        ),
        "lr_scheduler": meta["lr_scheduler"],
        "meta": meta,
    }
    rng_file = path / f"rng-{rank}.safetensors"
    out["rng"] = load_file(rng_file) if rng_file.exists() else None
    return out
