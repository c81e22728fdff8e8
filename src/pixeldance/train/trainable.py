"""What a run trains (``optim.trainable``): every parameter, the temporal layers, or LoRA.

- ``all``: every UNet parameter (the default).
- ``temporal``: AnimateDiff-style (Guo et al. 2024): every 2D layer (what
  ``PixelDanceUNet.from_unet2d`` copies from Stable Diffusion) is frozen; the temporal
  convolutions and attentions train, with the modules a 2D UNet does not have (the frame
  embedding, the input skip) and ``conv_in``'s instruction channels (the c_image half of its
  input channels, which inflation adds). The z_t half of ``conv_in`` stays bit-identical: its
  gradient is zeroed and the tensor takes no weight decay (Adam's moments of those entries stay
  zero, so its update there is exactly zero).
- ``lora``: LoRA adapters (``optim.lora``) through peft on the modules its patterns select;
  every base weight is frozen.

Frozen parameters have ``requires_grad=False``: no gradient, no optimizer state, no EMA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.lora import DEFAULT_TARGETS, add_lora

TRAINABLE_MODES = ("all", "temporal", "lora")


@dataclass
class LoraSettings:
    """LoRA adapters (Hu et al. 2021) for ``optim.trainable: lora``."""

    rank: int = 8
    alpha: float | None = None  # None: the rank (the adapter's scale alpha/rank is 1)
    dropout: float = 0.0
    # regular expressions matched in full against module names; the default: the attention
    # projections, spatial (self and cross) and temporal
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"optim.lora.rank must be a positive integer, got {self.rank!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"optim.lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.targets or not all(isinstance(t, str) for t in self.targets):
            raise ValueError("optim.lora.targets must be a list of module-name patterns")


def check_mode(mode: str) -> str:
    if mode not in TRAINABLE_MODES:
        raise ValueError(
            f"optim.trainable must be one of {', '.join(TRAINABLE_MODES)}; got {mode!r}"
        )
    return mode


@dataclass
class Trainable:
    """What trains in a UNet. ``partial``: parameters of which only some input channels train
    (name -> the first input channel that trains)."""

    mode: str
    partial: dict[str, int] = field(default_factory=dict)

    def param_groups(self, unet: nn.Module, weight_decay: float) -> list[dict]:
        """AdamW's groups: the trainable parameters; partly trained ones without decay."""
        named = [(n, p) for n, p in unet.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if n not in self.partial]}]
        part = [p for n, p in named if n in self.partial]
        if part:
            groups.append({"params": part, "weight_decay": 0.0})
        return groups

    def freeze_slices(self, unet: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradient of the frozen input channels of ``partial`` parameters: as it is
        made (before clipping), and again before every optimizer step (sharded parameters
        receive their gradient without passing a tensor hook)."""
        from .distributed import is_sharded, local

        if not self.partial:
            return
        params = dict(unet.named_parameters())
        for name, first in self.partial.items():
            if not is_sharded(params[name]):
                params[name].register_hook(lambda g, first=first: _zero_inputs(g, first))

        def before_step(opt, args, kwargs):
            for name, first in self.partial.items():
                g = params[name].grad
                if g is not None:
                    local(g)[:, :first].zero_()

        optimizer.register_step_pre_hook(before_step)


def _zero_inputs(grad: torch.Tensor, first: int) -> torch.Tensor:
    grad = grad.clone()
    grad[:, :first] = 0
    return grad


def select_trainable(unet: nn.Module, mode: str, lora: LoraSettings) -> Trainable:
    """Set ``requires_grad`` on ``unet`` for ``mode`` (adding LoRA adapters for ``lora``)."""
    check_mode(mode)
    if mode == "all":
        unet.requires_grad_(True)
        return Trainable(mode)
    if mode == "lora":
        alpha = float(lora.alpha) if lora.alpha is not None else float(lora.rank)
        add_lora(unet, lora.rank, alpha, float(lora.dropout), lora.targets)
        return Trainable(mode)
    unet.requires_grad_(False)
    for module in unet.temporal_modules():
        module.requires_grad_(True)
    for extra in (unet.frame_embed, unet.conv_skip):  # modules a 2D UNet does not have
        if extra is not None:
            extra.requires_grad_(True)
    unet.conv_in.weight.requires_grad_(True)
    # conv_in's input is cat([z_t, c_image]): the first out_channels channels are z_t's
    return Trainable(mode, {"conv_in.weight": unet.config.out_channels})


def count_parameters(unet: nn.Module, trainable: Trainable | None = None) -> tuple[int, int]:
    """(trainable, total) parameter counts; a partly trained tensor counts its trained part."""
    total = sum(p.numel() for p in unet.parameters())
    partial = trainable.partial if trainable is not None else {}
    count = 0
    for name, p in unet.named_parameters():
        if p.requires_grad:
            count += p[:, partial[name] :].numel() if name in partial else p.numel()
    return count, total
