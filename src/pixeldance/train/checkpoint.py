"""Checkpoints that survive crashes and resume within host memory.

A checkpoint folder ``checkpoint-{step:08d}`` holds whole tensors, whatever the number of
processes or shards that wrote it: the UNet, its EMA and the optimizer state (keyed by
parameter name) as safetensors, the RNG states of every process, and the LR schedule, step and
counters as JSON. It is written to a temporary folder by the main process, completed with a
``COMPLETE`` marker and renamed; ``--resume`` takes the newest folder with the marker.

Saving gathers one tensor at a time (a collective when the UNet is sharded) and writes one file
at a time, so the main process holds at most one file's tensors. Restoring copies tensor by
tensor from memory-mapped files into the weights, EMA and optimizer state already built on
their devices; a sharded rank reads only its rows. No rank loads a whole file into its memory.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .distributed import full, local, row_range

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d{8})$")
MARKER = "COMPLETE"


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


# ----------------------------------------------------------------------------- saving
def gather_whole(named: Iterable[tuple[str, torch.Tensor]], main: bool) -> dict[str, torch.Tensor]:
    """Whole CPU copies of the tensors on the main process (every process must call this)."""
    out = {}
    for name, t in named:
        whole = full(t.detach())
        if main:
            out[name] = whole.cpu().contiguous()
    return out


def _optimizer_entries(optimizer, names: dict[int, str]):
    """``(file key, tensor)`` of the optimizer state, and its non-tensor values, by name."""
    tensors, scalars = [], {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                entry = f"{names[id(p)]}.{key}"
                if torch.is_tensor(value):
                    tensors.append((f"state.{entry}", value))
                else:
                    scalars[entry] = value
    return tensors, scalars


def save_checkpoint(
    output_dir: Path,
    step: int,
    unet: torch.nn.Module,
    ema,
    optimizer: torch.optim.Optimizer,
    scheduler_state: dict,
    rng_states: list[dict[str, torch.Tensor]],
    extra: dict,
    keep: int,
    main: bool,
) -> Path | None:
    """Write checkpoint ``step``; every process calls this, the main one writes and returns the
    folder (the others None). ``unet`` is the unwrapped (possibly sharded) module and
    ``optimizer`` the plain torch optimizer over its parameters."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step:08d}"
    tmp = output_dir / f".tmp-checkpoint-{step:08d}"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    try:
        _write_checkpoint(tmp, step, unet, ema, optimizer, scheduler_state, rng_states, extra, main)
    except BaseException:  # an error, or a second Ctrl-C: no half-written folder is left
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not main:
        return None
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    prune_checkpoints(output_dir, keep)
    return final


def _write_checkpoint(tmp, step, unet, ema, optimizer, scheduler_state, rng_states, extra, main):
    names = {id(p): n for n, p in unet.named_parameters()}
    files = [("unet", unet.state_dict().items())]
    if ema is not None:
        files.append(("ema", ema.named_shadows()))
    opt_tensors, opt_scalars = _optimizer_entries(optimizer, names)
    files.append(("optimizer", opt_tensors))
    for name, named in files:  # one file's tensors in memory at a time
        tensors = gather_whole(named, main)
        if main:
            save_file(tensors, tmp / f"{name}.safetensors")
        del tensors
    if not main:
        return
    for rank, state in enumerate(rng_states):
        save_file(state, tmp / f"rng-{rank}.safetensors")
    groups = optimizer.state_dict()["param_groups"]
    meta = {
        "step": step,
        "optimizer": {"param_groups": groups, "scalars": opt_scalars},
        "lr_scheduler": scheduler_state,
        **extra,
    }
    (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=float))
    (tmp / MARKER).write_text("ok\n")


# ----------------------------------------------------------------------------- finding
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


def checkpoint_meta(path: Path) -> dict:
    """The JSON part of a complete checkpoint (step, LR schedule, counters)."""
    path = Path(path)
    if not (path / MARKER).exists():
        raise ValueError(f"incomplete checkpoint (no {MARKER} marker): {path}")
    state = path / "state.json"
    try:
        meta = json.loads(state.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{state} is damaged ({err})") from err
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise ValueError(f"{state} is damaged (no step number)")
    return meta


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with checkpoint ``path`` (a missing or damaged file, named), read from the
    files' headers without loading any tensor; None if it looks whole."""
    from ..folders import check_weights

    try:
        checkpoint_meta(path)
        for name in ("unet", "optimizer"):
            if not (path / f"{name}.safetensors").is_file():
                raise ValueError(f"{path / f'{name}.safetensors'} is missing")
        check_weights(path)  # every safetensors header against its file's size
    except (OSError, ValueError) as err:
        return str(err)
    return None


def resume_point(output_dir: Path, choice: bool | str | Path) -> Path | None:
    """The checkpoint ``--resume`` continues from: the newest complete one in ``output_dir``
    (``choice`` True), the one named (a path), or None (``choice`` False, or no checkpoint yet).
    A damaged one is refused with ValueError naming its file and the newest intact earlier
    checkpoint, to pass as ``--resume PATH``."""
    if choice is False or choice is None:
        return None
    if choice is not True:
        path = Path(choice)
        if not (path / MARKER).exists():
            raise ValueError(
                f"--resume {path}: not a complete checkpoint (no {MARKER} marker); give a "
                "checkpoint-NNNNNNNN folder of a run"
            )
        problem = checkpoint_problem(path)
        if problem:
            raise ValueError(f"--resume {path}: {problem}")
        return path
    found = list_checkpoints(output_dir)
    if not found:
        return None
    problem = checkpoint_problem(found[-1])
    if problem is None:
        return found[-1]
    intact = next((c for c in reversed(found[:-1]) if checkpoint_problem(c) is None), None)
    earlier = (
        f"the earlier checkpoint {intact} is intact: continue from it with --resume {intact}"
        if intact
        else "no earlier checkpoint is intact"
    )
    raise ValueError(f"the newest checkpoint is damaged: {problem}; {earlier}")


# ----------------------------------------------------------------------------- restoring
READ_WINDOW = 256 << 20  # bytes read through one memory map before it is dropped


class _Reader:
    """Tensors of one safetensors file, read through a memory map that is dropped and made
    again after every ``READ_WINDOW`` bytes: the pages read stay mapped in this process only
    until then, so a rank never holds more than a window of a file plus one tensor."""

    def __init__(self, path: Path):
        self.path, self._file, self._read = Path(path), None, 0
        with safe_open(str(self.path), framework="pt") as f:
            self.shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}

    def _open(self):
        if self._file is not None and self._read >= READ_WINDOW:
            self.close()
        if self._file is None:
            self._ctx = safe_open(str(self.path), framework="pt")
            self._file, self._read = self._ctx.__enter__(), 0
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._ctx.__exit__(None, None, None)
            self._file = None

    def read_into(self, key: str, target: torch.Tensor) -> None:
        """Copy tensor ``key`` into ``target`` (only this rank's rows of a shard)."""
        if self.shapes[key] != list(target.shape):
            raise ValueError(
                f"{self.path}: {key} has shape {tuple(self.shapes[key])} but the model's is "
                f"{tuple(target.shape)}; resume with the config that wrote the checkpoint"
            )
        f, rows = self._open(), row_range(target)
        source = f.get_tensor(key) if rows is None else f.get_slice(key)[rows[0] : rows[1]]
        local(target).copy_(source)
        self._read += source.numel() * source.element_size()

    def read(self, key: str) -> torch.Tensor:
        """A copy of tensor ``key`` (a tensor fresh from the file shares its memory map)."""
        return self._open().get_tensor(key).clone()


def _restore_tensors(file: Path, targets: dict[str, torch.Tensor]) -> None:
    reader = _Reader(file)
    missing = sorted(targets.keys() - reader.shapes.keys())
    unexpected = sorted(reader.shapes.keys() - targets.keys())
    if missing or unexpected:
        raise ValueError(
            f"{file} does not fit this UNet (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); resume with the config that wrote the checkpoint"
        )
    try:
        for key, target in targets.items():
            reader.read_into(key, target)
    finally:
        reader.close()


def _restore_optimizer(file: Path, meta: dict, optimizer, unet: torch.nn.Module) -> None:
    """Build the optimizer state on the parameters' devices, filled tensor by tensor."""
    by_name = dict(unet.named_parameters())
    params = [p for g in optimizer.param_groups for p in g["params"]]
    index = {id(p): i for i, p in enumerate(params)}
    order = list(by_name)

    def param_of(entry: str) -> tuple[torch.nn.Parameter, str]:
        name, key = entry.rsplit(".", 1)
        if name.isdigit():  # checkpoints before names: parameter index
            name = order[int(name)]
        if name not in by_name:
            raise ValueError(f"{file}: optimizer state for unknown parameter {name}")
        return by_name[name], key

    state: dict[int, dict] = {}
    reader = _Reader(file)
    try:
        for file_key, shape in reader.shapes.items():
            p, key = param_of(file_key.removeprefix("state."))
            if key != "step" and shape == list(p.shape):  # a moment: built where p lives
                value = torch.empty_like(p, requires_grad=False)
                reader.read_into(file_key, value)
            else:
                value = reader.read(file_key)
            state.setdefault(index[id(p)], {})[key] = value
    finally:
        reader.close()
    for entry, value in meta["scalars"].items():
        p, key = param_of(entry)
        state.setdefault(index[id(p)], {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


@torch.no_grad()
def restore_checkpoint(path: Path, unet, ema, optimizer, lr_scheduler, rank: int) -> dict:
    """Load checkpoint ``path`` into the built (and placed, possibly sharded) UNet, EMA,
    optimizer and LR schedule. Returns its JSON part, with this rank's RNG state under
    ``"rng"`` (None if the checkpoint has none for this rank) for the caller to apply."""
    path = Path(path)
    meta = checkpoint_meta(path)
    _restore_tensors(path / "unet.safetensors", unet.state_dict())
    if ema is not None:
        ema_file = path / "ema.safetensors"
        if ema_file.exists():
            _restore_tensors(ema_file, dict(ema.named_shadows()))
            ema.optimization_step = int(meta.get("ema_optimization_step", 0))
        else:  # a checkpoint written without EMA: start the average from the weights
            params = dict(unet.named_parameters())
            for name, shadow in ema.named_shadows():
                local(shadow).copy_(local(params[name]))
    _restore_optimizer(path / "optimizer.safetensors", meta["optimizer"], optimizer, unet)
    lr_scheduler.load_state_dict(meta["lr_scheduler"])
    rng_file = path / f"rng-{rank}.safetensors"
    meta["rng"] = load_file(rng_file) if rng_file.exists() else None
    return meta
