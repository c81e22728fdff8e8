"""The hand-written backward passes of models/fused.py give the plain expressions' numbers bit
for bit: outputs and gradients, in float32 and bfloat16."""

import pytest
import torch
import torch.nn.functional as F

from pixeldance.models.fused import frame_shift_sum, geglu


def plain_shift_sum(taps, bias):
    out = taps[:, :, 1] + bias
    out[:, 1:] = out[:, 1:] + taps[:, :-1, 0]
    out[:, :-1] = out[:, :-1] + taps[:, 1:, 2]
    return out


def plain_geglu(proj):
    hidden, gate = proj.chunk(2, dim=-1)
    return hidden * F.gelu(gate)


def outputs_and_grads(fn, *inputs, seed=1):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype)
    (out * weight).float().sum().backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_frame_shift_sum_matches_slicing_bit_for_bit(dtype, frames):
    g = torch.Generator().manual_seed(0)
    taps = torch.randn(2, frames, 3, 6, 3, 4, generator=g).to(dtype)
    bias = torch.randn(1, 1, 6, 1, 1, generator=g).to(dtype)
    out, grads = outputs_and_grads(frame_shift_sum, taps, bias)
    ref_out, ref_grads = outputs_and_grads(plain_shift_sum, taps, bias)
    assert torch.equal(out, ref_out)
    for got, want in zip(grads, ref_grads, strict=True):
        assert got.shape == want.shape and torch.equal(got, want)
    # the end frames' outer taps reach nothing: their gradient is zero, not left uninitialised
    assert not grads[0][:, -1, 0].any() and not grads[0][:, 0, 2].any()


def test_frame_shift_sum_without_a_bias_gradient():
    taps = torch.randn(1, 3, 3, 2, 2, 2, requires_grad=True)
    bias = torch.zeros(1, 1, 2, 1, 1)  # a frozen bias
    frame_shift_sum(taps, bias).sum().backward()
    assert taps.grad is not None and bias.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_geglu_matches_chunk_and_gelu_bit_for_bit(dtype):
    proj = torch.randn(3, 7, 2 * 24, generator=torch.Generator().manual_seed(0)).to(dtype)
    out, (grad,) = outputs_and_grads(geglu, proj)
    ref_out, (ref_grad,) = outputs_and_grads(plain_geglu, proj)
    assert torch.equal(out, ref_out)
    assert torch.equal(grad, ref_grad)


def test_geglu_on_a_strided_projection():
    base = torch.randn(5, 2 * 8, 3)
    proj = base.transpose(1, 2)  # (5, 3, 16), not contiguous
    out, (grad,) = outputs_and_grads(geglu, proj)
    ref_out, (ref_grad,) = outputs_and_grads(plain_geglu, proj)
    assert torch.equal(out, ref_out) and torch.equal(grad, ref_grad)
