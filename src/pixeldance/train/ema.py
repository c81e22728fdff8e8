"""Exponential moving average of the UNet's weights, held like the weights themselves: whole on
every process under DDP, as shards under FSDP (each rank averages only the rows it holds)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class EMA:
    """Shadow weights ``s <- s - (1 - d) * (s - p)`` after every optimizer step.

    The decay warms up as ``d = min(decay, (1 + n) / (10 + n))`` at the n-th update after the
    first (which copies the weights), the schedule of diffusers' ``EMAModel`` defaults, so runs
    continue as before. ``shadows`` are clones of the parameters: plain tensors, or ``DTensor``
    shards with the same placement when the UNet is sharded.
    """

    def __init__(self, named_parameters: Iterable[tuple[str, nn.Parameter]], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in (0, 1) (0 disables EMA), got {decay}")
        named = list(named_parameters)
        self.names = [n for n, _ in named]
        self.shadows = [p.detach().clone() for _, p in named]
        self.decay = decay
        self.optimization_step = 0

    def decay_at(self, optimization_step: int) -> float:
        n = optimization_step - 1
        if n <= 0:
            return 0.0
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def step(self, parameters: Iterable[torch.Tensor]) -> None:
        """Average the parameters that train (``requires_grad``): the ones it was made of."""
        self.optimization_step += 1
        one_minus_decay = 1.0 - self.decay_at(self.optimization_step)
        trained = [p for p in parameters if p.requires_grad]
        for shadow, param in zip(self.shadows, trained, strict=True):
            shadow.sub_(one_minus_decay * (shadow - param.detach()))

    def named_shadows(self) -> list[tuple[str, torch.Tensor]]:
        return list(zip(self.names, self.shadows, strict=True))
