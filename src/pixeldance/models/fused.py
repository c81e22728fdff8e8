"""Two elementwise steps of the UNet with a hand-written backward that skips autograd's copies.

Both compute exactly what the plain PyTorch expressions they replace compute, forward and
backward, operation for operation (the same additions and products in the same order), so
outputs and gradients are bit for bit those of the plain expressions. What they save is memory
traffic in the backward pass: autograd's generic rules for slicing, selecting and chunking
allocate a zero tensor of the whole input per slice and then add the slices' gradients into it
(``SelectBackward``/``SliceBackward``) or concatenate them (``SplitBackward``); here each
gradient element is written once into one buffer. Profiled on ``benchmarks/unet_speed.py``
(one CPU thread) these were among the largest memory-bound operations of a train step.

Neither supports double backward (``create_graph=True``); nothing in the project uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _FrameShiftSum(torch.autograd.Function):
    """``out[:, f] = taps[:, f, 1] + bias + taps[:, f - 1, 0] + taps[:, f + 1, 2]``."""

    @staticmethod
    def forward(ctx, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.bias_shape = bias.shape
        ctx.bias_needs_grad = bias.requires_grad
        out = taps[:, :, 1] + bias  # (B, F, C, H, W)
        out[:, 1:] += taps[:, :-1, 0]
        out[:, :-1] += taps[:, 1:, 2]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        b, f = grad.shape[:2]
        grad_taps = grad.new_empty(b, f, 3, *grad.shape[2:])
        grad_taps[:, :, 1] = grad
        grad_taps[:, :-1, 0] = grad[:, 1:]
        grad_taps[:, -1, 0] = 0
        grad_taps[:, 1:, 2] = grad[:, :-1]
        grad_taps[:, 0, 2] = 0
        grad_bias = grad.sum_to_size(ctx.bias_shape) if ctx.bias_needs_grad else None
        return grad_taps, grad_bias


def frame_shift_sum(taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A kernel-3 temporal convolution's output from its three taps.

    ``taps``: ``(B, F, 3, C, H, W)``, tap k of frame f being the convolution weight's k-th
    slice applied to frame f; ``bias`` broadcasts to ``(B, F, C, H, W)``. Frame f receives its
    own centre tap, frame f-1's tap 0 and frame f+1's tap 2, with zero padding at both ends;
    the same sum as ``out = taps[:, :, 1] + bias; out[:, 1:] += taps[:, :-1, 0];
    out[:, :-1] += taps[:, 1:, 2]``.
    """
    return _FrameShiftSum.apply(taps, bias)


class _GEGLU(torch.autograd.Function):
    """``hidden * gelu(gate)`` with ``hidden, gate = proj.chunk(2, dim=-1)``."""

    @staticmethod
    def forward(ctx, proj: torch.Tensor) -> torch.Tensor:
        hidden, gate = proj.chunk(2, dim=-1)
        activated = F.gelu(gate)
        ctx.save_for_backward(proj, activated)
        return hidden * activated

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        proj, activated = ctx.saved_tensors
        hidden, gate = proj.chunk(2, dim=-1)
        grad_proj = torch.empty_like(proj, memory_format=torch.contiguous_format)
        grad_hidden, grad_gate = grad_proj.chunk(2, dim=-1)
        torch.mul(grad, activated, out=grad_hidden)
        torch.ops.aten.gelu_backward.grad_input(grad * hidden, gate, grad_input=grad_gate)
        return grad_proj


def geglu(proj: torch.Tensor) -> torch.Tensor:
    """GEGLU's gating (Shazeer 2020, as in Stable Diffusion's feed-forward) of a projection
    whose last axis holds the hidden half then the gate half."""
    return _GEGLU.apply(proj)
