"""Building blocks of the PixelDance 3D UNet.

Spatial layers see frames as a batch of images, ``(B*F, C, H, W)``; temporal layers fold
the spatial positions into the batch and mix along frames. Every spatial module keeps the
parameter names of the matching diffusers Stable Diffusion module (``norm1``, ``conv1``,
``time_emb_proj``, ``attn1.to_q``, ``ff.net.0.proj``, ...), so a Stable Diffusion UNet's
state dict loads into them key for key.

Temporal modules (``TemporalConv``, ``TemporalAttention``) are residual and their output
projections start at zero, so a freshly inflated network is the 2D network applied frame by
frame; with one frame they are not run at all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fused import frame_shift_sum, geglu


def _checkpointed(module: nn.Module, fn, *args):
    """Run ``fn(*args)`` under activation checkpointing when the module asks for it."""
    if getattr(module, "gradient_checkpointing", False) and torch.is_grad_enabled():
        return module._gradient_checkpointing_func(fn, *args)
    return fn(*args)


# --------------------------------------------------------------------------------------
# Temporal layers (what turns the 2D UNet into PixelDance's 3D UNet)
# --------------------------------------------------------------------------------------


class TemporalConv(nn.Module):
    """Residual 1D convolution along frames: ``x + conv1d_t(silu(norm(x)))``.

    Input and output ``(B*F, C, H, W)``. The kernel-3 convolution is computed as one 1x1
    convolution that produces the three taps at once, then shifted along frames; this avoids
    moving frames into the channel-last layout a Conv3d with a (3, 1, 1) kernel needs.
    The convolution starts at zero, so the layer starts as the identity.
    """

    def __init__(self, channels: int, norm_num_groups: int = 32, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=eps)
        self.conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // num_frames
        y = F.silu(self.norm(x))
        # weight (C_out, C_in, 3) -> (3*C_out, C_in, 1, 1): taps for frames f-1, f, f+1
        kernel = self.conv.weight.permute(2, 0, 1).reshape(3 * c, c, 1, 1)
        taps = F.conv2d(y, kernel).reshape(b, num_frames, 3, c, h, w)
        # the bias in the taps' dtype: under autocast an fp32 bias would lift the whole
        # residual (and every video activation kept for backward) to fp32
        bias = self.conv.bias.to(taps.dtype).view(1, 1, c, 1, 1)
        # frame f sees frame f-1 through tap 0 and frame f+1 through tap 2 (zero padding at
        # the ends); one buffer for the taps' gradient instead of autograd's per-slice copies
        out = frame_shift_sum(taps, bias)  # (B, F, C, H, W)
        return x + out.reshape(bf, c, h, w)


def frame_position_embedding(num_frames: int, dim: int, device, dtype) -> torch.Tensor:
    """Sinusoidal embedding of the frame index, ``(F, dim)`` (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / max(half, 1))
    angles = torch.arange(num_frames, device=device)[:, None].float() * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.to(dtype)


class TemporalAttention(nn.Module):
    """Residual bidirectional self-attention along frames at every spatial position.

    Input and output ``(B*F, C, H, W)``. Tokens are the F frames of one pixel column,
    ``(B*H*W, F, C)``, with a sinusoidal frame-position embedding added before the
    projections; no causal mask, so every frame sees every other. ``to_out`` starts at zero.
    """

    def __init__(self, channels: int, num_heads: int, norm_num_groups: int = 32):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // num_frames
        y = self.norm(x).view(b, num_frames, c, h * w).permute(0, 3, 1, 2)  # (B, HW, F, C)
        y = y + frame_position_embedding(num_frames, c, x.device, x.dtype)
        q, k, v = self.to_qkv(y).reshape(b * h * w, num_frames, 3, self.num_heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B*HW, heads, F, d)
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.to_out(y.transpose(1, 2).reshape(b, h * w, num_frames, c))
        # the residual sum written straight into x's (B*F, C, H, W) layout: no copy of y
        out = x.reshape(b, num_frames, c, h * w) + y.permute(0, 2, 3, 1)
        return out.reshape(bf, c, h, w)


# --------------------------------------------------------------------------------------
# Spatial layers (Stable Diffusion's, with diffusers' parameter names)
# --------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """Stable Diffusion ResNet block with a temporal convolution after each 2D convolution.

    ``norm1 -> silu -> conv1 -> temp_conv1 -> +time -> norm2 -> silu -> dropout -> conv2 ->
    temp_conv2``, plus the (1x1-projected) input. Input ``(B*F, C_in, H, W)``, time embedding
    ``(B*F, T)``; output ``(B*F, C_out, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        norm_num_groups: int = 32,
        eps: float = 1e-5,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )
        self.temp_conv1 = TemporalConv(out_channels, norm_num_groups, eps)
        self.temp_conv2 = TemporalConv(out_channels, norm_num_groups, eps)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, num_frames: int) -> torch.Tensor:
        video = num_frames > 1
        h = self.conv1(F.silu(self.norm1(x)))
        if video:
            h = self.temp_conv1(h, num_frames)
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if video:
            h = self.temp_conv2(h, num_frames)
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Attention(nn.Module):
    """Multi-head attention with SDPA. Self-attention when ``context`` is None, else cross."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, _ = x.shape

        def heads(t):  # (B, N, h*d) -> (B, h, N, d)
            return t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(context)), heads(self.to_v(context))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out[0](y)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return geglu(self.proj(x))  # hidden * gelu(gate), without a concatenating backward


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList(
            [GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to text, feed-forward; each pre-norm and residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=cross_attention_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Stable Diffusion's 2D transformer (diffusers ``Transformer2DModel``, continuous input).

    Input ``(B*F, C, H, W)`` and text states ``(B*F, L, D)``; tokens are the H*W positions.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        cross_attention_dim: int,
        num_layers: int = 1,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
    ):
        super().__init__()
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        if use_linear_projection:
            self.proj_in = nn.Linear(channels, channels)
            self.proj_out = nn.Linear(channels, channels)
        else:
            self.proj_in = nn.Conv2d(channels, channels, 1)
            self.proj_out = nn.Conv2d(channels, channels, 1)
        dim_head = channels // num_heads
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(channels, num_heads, dim_head, cross_attention_dim)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        bf, c, h, w = x.shape
        y = self.norm(x)
        if not self.use_linear_projection:
            y = self.proj_in(y)
        # (B*F, HW, C), made contiguous once: as a strided view of the NCHW tensor every
        # LayerNorm of every block would copy it (forward and backward) and every residual
        # sum would keep the strided layout
        y = y.permute(0, 2, 3, 1).reshape(bf, h * w, c).contiguous()
        if self.use_linear_projection:
            y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, context)
        if self.use_linear_projection:
            y = self.proj_out(y)
        y = y.reshape(bf, h, w, c).permute(0, 3, 1, 2)
        if not self.use_linear_projection:
            y = self.proj_out(y.contiguous())  # NCHW, the layout the convolution had before
        return x + y


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)
