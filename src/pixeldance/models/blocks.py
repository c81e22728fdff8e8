"""The resolution levels of the PixelDance 3D UNet: down/up blocks and the mid block.

Each level is Stable Diffusion's (ResNet blocks, optional spatial transformers, a down- or
up-sampler) with a temporal attention after each spatial transformer; the temporal convolutions
live inside the ResNet blocks (see :mod:`pixeldance.models.layers`).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    Downsample,
    ResBlock,
    SpatialTransformer,
    TemporalAttention,
    Upsample,
    _checkpointed,
)


class UNetBlock(nn.Module):
    """One resolution level: ResBlocks, each optionally followed by a spatial transformer and a
    temporal attention, then an optional down- or up-sampler.

    ``temporal_attention`` defaults to ``attention`` (the paper puts a temporal attention after
    each spatial one); True on a level without spatial attention gives it temporal attention
    alone, which is cheap (F tokens per pixel column) even at the highest resolution.

    Down blocks return their output and every intermediate state (the skip connections); up
    blocks concatenate one skip state before each ResBlock.
    """

    def __init__(
        self,
        resnet_channels: list[tuple[int, int]],
        temb_channels: int,
        attention: bool,
        num_heads: int,
        cross_attention_dim: int,
        transformer_layers: int,
        norm_num_groups: int,
        norm_eps: float,
        use_linear_projection: bool,
        downsample: bool = False,
        upsample: bool = False,
        temporal_attention: bool | None = None,
    ):
        super().__init__()
        if temporal_attention is None:
            temporal_attention = attention
        out_channels = resnet_channels[-1][1]
        self.resnets = nn.ModuleList(
            ResBlock(cin, cout, temb_channels, norm_num_groups, norm_eps)
            for cin, cout in resnet_channels
        )
        self.attentions = nn.ModuleList()
        self.temp_attentions = nn.ModuleList()
        if attention:
            for _, cout in resnet_channels:
                self.attentions.append(
                    SpatialTransformer(
                        cout,
                        num_heads,
                        cross_attention_dim,
                        transformer_layers,
                        norm_num_groups,
                        use_linear_projection,
                    )
                )
        if temporal_attention:
            for _, cout in resnet_channels:
                self.temp_attentions.append(TemporalAttention(cout, num_heads, norm_num_groups))
        self.downsamplers = nn.ModuleList([Downsample(out_channels)] if downsample else [])
        self.upsamplers = nn.ModuleList([Upsample(out_channels)] if upsample else [])
        self.gradient_checkpointing = False

    def _layer(self, i: int, x, temb, context, num_frames: int):
        x = _checkpointed(self, self.resnets[i], x, temb, num_frames)
        if self.attentions:
            x = _checkpointed(self, self.attentions[i], x, context)
        if self.temp_attentions and num_frames > 1:
            x = _checkpointed(self, self.temp_attentions[i], x, num_frames)
        return x

    def down(self, x, temb, context, num_frames: int, downsample: bool = True):
        """``downsample=False`` leaves out the down-sampler (a step-cache pass that stops at
        this level needs neither its output nor its skip state)."""
        states = []
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, context, num_frames)
            states.append(x)
        for down in self.downsamplers if downsample else ():
            x = down(x)
            states.append(x)
        return x, states

    def up(self, x, skips: list[torch.Tensor], temb, context, num_frames: int, size=None):
        for i in range(len(self.resnets)):
            x = torch.cat([x, skips.pop()], dim=1)
            x = self._layer(i, x, temb, context, num_frames)
        for up in self.upsamplers:
            x = up(x, size)
        return x


class MidBlock(nn.Module):
    """ResBlock, spatial transformer, temporal attention, ResBlock (SD's mid block + time)."""

    def __init__(
        self,
        channels,
        temb_channels,
        num_heads,
        cross_attention_dim,
        transformer_layers,
        norm_num_groups,
        norm_eps,
        use_linear_projection,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(channels, channels, temb_channels, norm_num_groups, norm_eps) for _ in range(2)
        )
        self.attentions = nn.ModuleList(
            [
                SpatialTransformer(
                    channels,
                    num_heads,
                    cross_attention_dim,
                    transformer_layers,
                    norm_num_groups,
                    use_linear_projection,
                )
            ]
        )
        self.temp_attentions = nn.ModuleList(
            [TemporalAttention(channels, num_heads, norm_num_groups)]
        )
        self.gradient_checkpointing = False

    def forward(self, x, temb, context, num_frames: int):
        x = _checkpointed(self, self.resnets[0], x, temb, num_frames)
        x = _checkpointed(self, self.attentions[0], x, context)
        if num_frames > 1:
            x = _checkpointed(self, self.temp_attentions[0], x, num_frames)
        return _checkpointed(self, self.resnets[1], x, temb, num_frames)
