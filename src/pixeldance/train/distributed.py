"""How the UNet is spread over processes: DDP (replicas) or FSDP2 (shards), and what each
rank holds of a parameter.

DDP: every process holds the whole UNet and gradients are averaged. Image batches (F == 1)
leave the temporal layers unused, so with image mixing on DDP looks for unused parameters each
step; a parameter no process used keeps ``grad = None`` and AdamW leaves it (and its moments)
alone, exactly as a single process does.

FSDP (``optim.fsdp: true``): torch's ``fully_shard`` splits each block named in the UNet's
``_no_split_modules`` and the UNet itself along dim 0 over the processes. Parameters become
``DTensor`` shards; :func:`local` and :func:`row_range` say which rows a rank holds, so
checkpoints are written whole and read back rank by rank.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn


class UnsupportedLaunch(ValueError):
    """A launch configuration this loop refuses rather than run untested."""


def check_launch(fsdp: bool, mixed_precision: str) -> None:
    """Refuse what the loop does not support, before anything is built."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise UnsupportedLaunch(
            "DeepSpeed is not supported yet: its engine takes over the optimizer, gradient "
            "accumulation and mixed precision that exact resume and image mixing rely on, and "
            "Accelerate runs it on GPUs only, so no test here can run it. Launch without the "
            "DeepSpeed config (torchrun or accelerate launch --multi_gpu) for DDP, or set "
            "optim.fsdp=true to shard the UNet (TRAINING.md)."
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise UnsupportedLaunch(
            "Accelerate's FSDP plugin is not supported: pixeldance shards the UNet itself with "
            "torch's fully_shard, the path its tests run. Launch without the FSDP config "
            "(torchrun or accelerate launch --multi_gpu) and set optim.fsdp=true (TRAINING.md)."
        )
    if fsdp and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise UnsupportedLaunch(
            "optim.fsdp shards the UNet over several processes; one process has nothing to "
            "shard over. Launch with torchrun --nproc_per_node N or accelerate launch "
            "--multi_gpu, or leave optim.fsdp off"
        )
    if fsdp and mixed_precision == "fp16":
        raise UnsupportedLaunch(
            "optim.fsdp with optim.mixed_precision=fp16 is not supported (gradient scaling of "
            "sharded gradients is untested); use bf16 or no"
        )


def _parent_command() -> list[str]:
    """The command line of the process that started this one (empty where unknown)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _requested_processes(command: list[str]) -> int | None:
    """The process count a launcher's command line asks for (accelerate launch's
    ``--num_processes``, torchrun's ``--nproc_per_node``), or None."""
    flags = ("--num_processes", "--num-processes", "--nproc_per_node", "--nproc-per-node")
    for i, arg in enumerate(command):
        name, eq, value = arg.partition("=")
        if name in flags:
            value = value if eq else (command[i + 1] if i + 1 < len(command) else "")
            return int(value) if value.isdigit() else None
    return None


def launch_mismatch(command: list[str] | None = None) -> str | None:
    """A one-line warning when a launcher asked for N processes but this run is one process
    (``accelerate launch --num_processes N --cpu`` runs one: accelerate's choice)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    command = _parent_command() if command is None else command
    asked = _requested_processes(command)
    if asked is None or asked < 2:
        return None
    return (
        f"the launcher asked for {asked} processes but this run is 1 process "
        f"({' '.join(command[:3])} ...); accelerate launch runs --cpu as one process: use "
        f"accelerate launch --multi_gpu --num_processes {asked} (gloo on CPU) or torchrun "
        f"--nproc_per_node {asked}"
    )


def ddp_kwargs(image_mixing: bool):
    """Accelerate's DDP settings: look for unused parameters only when image batches (which
    skip the temporal layers) are mixed in; otherwise every parameter is used every step."""
    from accelerate.utils import DistributedDataParallelKwargs

    return DistributedDataParallelKwargs(find_unused_parameters=image_mixing)


def shard_unet(unet: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``unet`` in place with FSDP2: each ``_no_split_modules`` block, then the root.

    Parameters stay fp32 (the master weights); mixed precision comes from autocast as in DDP.
    Gradients are reduce-scattered at every micro-step and accumulate in the shards.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():
        raise UnsupportedLaunch(
            "optim.fsdp needs a process group: launch with torchrun or accelerate launch"
        )
    split = set(getattr(unet, "_no_split_modules", None) or ())
    if not split:
        raise UnsupportedLaunch(f"{type(unet).__name__} declares no _no_split_modules to shard")
    # the UNet returns a view (its frames rearranged); the loss reads it out of place, so the
    # in-place hazard FSDP2 warns about cannot arise
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    unet.to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for module in reversed(list(unet.modules())):  # children before their parents
        if type(module).__name__ in split:
            fully_shard(module, mesh=mesh)
    fully_shard(unet, mesh=mesh)
    return unet


def is_sharded(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this rank holds (``t`` itself unless it is a shard)."""
    return t.to_local() if is_sharded(t) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor; for a shard this is a collective every rank must call."""
    return t.full_tensor() if is_sharded(t) else t


def row_range(t: torch.Tensor) -> tuple[int, int] | None:
    """Rows ``[start, stop)`` of the whole tensor this rank holds, or None if it holds it all.

    FSDP2 shards dim 0 as ``torch.chunk`` does: ``ceil(rows / world)`` rows per rank, the last
    ranks holding fewer or none.
    """
    if not is_sharded(t):
        return None
    from torch.distributed.tensor import Shard

    (placement,) = t.placements
    if placement != Shard(0):
        raise NotImplementedError(f"only dim-0 shards are read back, got {t.placements}")
    world, rank = t.device_mesh.size(), t.device_mesh.get_local_rank()
    rows = t.shape[0]
    chunk = -(-rows // world)
    start = min(rank * chunk, rows)
    stop = min(start + chunk, rows)
    if stop - start != t.to_local().shape[0]:
        raise RuntimeError(
            f"shard layout changed: rank {rank} holds {t.to_local().shape[0]} of {rows} rows, "
            f"expected {stop - start}"
        )
    return start, stop
