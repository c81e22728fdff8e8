"""Where generation runs: the device, the dtype and model offload, chosen once.

``auto`` picks a CUDA GPU, then Apple's MPS, then the CPU; the dtype ``auto`` picks what that
device handles well: bfloat16 on a CUDA GPU that supports it, float16 on other CUDA GPUs and
on MPS, float32 on the CPU. :func:`resolve_placement` checks a choice (an unknown or absent
device, a dtype the GPU lacks, offload without an accelerator) and returns a
:class:`Placement`; :func:`pixeldance.generation.resolve` calls it, so ``generate``, ``story``,
the demo and Python code choose the same way, and ``preprocess`` calls it too.

Seeds: the noise is drawn on the device of the generator :meth:`Placement.generator` makes:
the GPU itself for CUDA, the CPU for the CPU and for MPS (whose draws go through the CPU, as in
diffusers). The same seed gives the same video on the same kind of device, not across kinds.

Names are checked without torch; torch is asked about the hardware only when a choice needs
it (``auto``, ``cuda``, ``mps``), so a command can check its flags before loading anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DTYPES = ("float32", "float16", "bfloat16")
DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class PlacementError(ValueError):
    """A device, dtype or offload choice this machine cannot honour; ``name`` is the setting
    (``"device"``, ``"dtype"`` or ``"offload"``)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Placement:
    """A resolved device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), dtype name (one of
    :data:`DTYPES`) and whether models are offloaded to the CPU between uses."""

    device: str = "cpu"
    dtype: str = "float32"
    offload: bool = False

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def noise_device(self) -> str:
        """Where the noise is drawn: the GPU for CUDA, else the CPU (MPS draws on the CPU)."""
        return self.device if self.device.startswith("cuda") else "cpu"

    def generator(self, seed: int):
        """A ``torch.Generator`` on :attr:`noise_device`, seeded with ``seed``."""
        import torch

        return torch.Generator(device=self.noise_device).manual_seed(int(seed))

    def apply(self, pipe):
        """Put a diffusers pipeline here: every component in :attr:`dtype` and on the device,
        or, with :attr:`offload`, on the CPU with each model moved to the device while it runs
        (``enable_model_cpu_offload``). Returns the pipeline. A pipeline loaded with
        ``from_pretrained(..., dtype=placement.torch_dtype)`` is not cast again."""
        import torch

        dtype = self.torch_dtype
        modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
        if any(p.dtype != dtype for m in modules for p in m.parameters() if p.is_floating_point()):
            pipe.to(dtype=dtype)
        if self.offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        return pipe


def resolve_placement(
    device: str | None = None, dtype: str | None = None, offload: bool = False
) -> Placement:
    """Check and resolve a device and dtype choice (None: ``"auto"``) for this machine.

    Raises :class:`PlacementError` naming the setting: an unknown name, a device torch cannot
    see, float16 on the CPU, or offload with the CPU as the device (there is no accelerator
    to offload to). Other explicit dtypes are taken as given (torch emulates bfloat16 on GPUs
    older than Ampere).
    """
    device = "auto" if device is None else device
    dtype = "auto" if dtype is None else dtype
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise PlacementError("device", f"device {device!r} is unknown; use {DEVICE_NAMES}")
    if dtype not in ("auto", *DTYPES):
        raise PlacementError("dtype", f"dtype {dtype!r} is unknown; use auto, {', '.join(DTYPES)}")
    if device == "auto":
        device = _best_device()
    elif device != "cpu":
        _check_present(device)
    if dtype == "auto":
        dtype = _best_dtype(device)
    elif dtype == "float16" and device == "cpu":
        raise PlacementError(
            "dtype", "dtype float16 is not supported on the CPU (diffusers warns against it "
            "and torch runs it about 10 times slower than float32); use bfloat16 or float32",
        )  # fmt: skip
    if offload and device == "cpu":
        raise PlacementError(
            "offload",
            "offload keeps models on the CPU and moves each to a GPU while it runs; "
            "the device here is the CPU, so there is nothing to offload to: leave it out",
        )
    return Placement(device, dtype, bool(offload))


def _best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if _mps_available():
        return "mps"
    return "cpu"


def _best_dtype(device: str) -> str:
    if device.startswith("cuda"):
        return "bfloat16" if _cuda_bf16(device) else "float16"
    if device == "mps":
        return "float16"
    return "float32"


def _check_present(device: str) -> None:
    import torch

    if device == "mps":
        if not _mps_available():
            raise PlacementError(
                "device", "device mps is not available: this machine or torch build has no MPS"
            )
        return
    if not torch.cuda.is_available():
        raise PlacementError(
            "device",
            f"device {device} is not available: torch {torch.__version__} sees no CUDA GPU "
            "on this machine; use auto or cpu",
        )
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise PlacementError(
            "device", f"device {device} is not available: torch sees {count} CUDA GPU(s), "
            f"cuda:0 to cuda:{count - 1}",
        )  # fmt: skip


def _cuda_bf16(device: str) -> bool:
    import torch

    index = int(device.partition(":")[2] or 0)
    return torch.cuda.get_device_capability(index)[0] >= 8  # native bf16: Ampere and newer


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
