"""PixelDanceUNet: the 3D UNet denoiser of PixelDance (Zeng et al., CVPR 2024, sec. 3.1).

A Stable Diffusion 2D UNet (ResNet blocks with a timestep embedding, transformer blocks with
self-attention, cross-attention to text and feed-forward, down/up-sampling, skip connections)
made 3D by a temporal convolution after each 2D convolution of the ResNet blocks and a
bidirectional temporal attention after each 2D attention block. With one frame the temporal
layers are skipped, so images and videos train in one network.

Input ``sample`` is ``(B, 2C, F, H, W)``: the noisy latent z_t concatenated on the channel axis
with the image instructions c_image (paper, eq. 2); output ``.sample`` is ``(B, C, F, H, W)``.
A 4-D ``(B, 2C, H, W)`` input is an image and gives a 4-D output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from ..keyframes import extra_channels
from .blocks import MidBlock, UNetBlock
from .layers import TemporalAttention, TemporalConv, frame_position_embedding
from .step_cache import DeepFeatures

DOWN_BLOCK_TYPES = ("DownBlock2D", "CrossAttnDownBlock2D")
UP_BLOCK_TYPES = ("UpBlock2D", "CrossAttnUpBlock2D")


@dataclass
class PixelDanceUNetOutput(BaseOutput):
    """``sample``: ``(B, C, F, H, W)`` (or ``(B, C, H, W)`` for a 4-D input)."""

    sample: torch.Tensor


def _per_block(value, n: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but there are {n} blocks")
    return values


class PixelDanceUNet(ModelMixin, ConfigMixin):
    """The PixelDance 3D UNet. Argument names follow diffusers' ``UNet2DConditionModel``.

    Args:
        in_channels: channels of ``sample`` = latent channels + c_image channels (2C; paper
            eq. 2 concatenates z_t with c_image along the channel axis).
        out_channels: latent channels C predicted per frame.
        down_block_types / up_block_types: per level, ``"CrossAttnDownBlock2D"`` (attention) or
            ``"DownBlock2D"`` (none); up blocks mirror them in reverse order.
        block_out_channels: width per level.
        layers_per_block: ResBlocks per down level (up levels get one more).
        cross_attention_dim: width of the text states used as keys/values.
        attention_head_dim / num_attention_heads: heads per level. As in diffusers, when
            ``num_attention_heads`` is None, ``attention_head_dim`` is read as the number of
            heads (the Stable Diffusion configs are written that way).
        transformer_layers_per_block: transformer blocks per spatial attention.
        use_linear_projection: linear instead of 1x1 conv in/out projections (SD 2.x).
        norm_num_groups, norm_eps: GroupNorm settings.
        flip_sin_to_cos, freq_shift: timestep embedding settings (SD: True, 0).
        sample_size: the latent size (h, w) the model was trained at; pipelines use it as
            their default output size. Informational only.
        input_skip: add a 1x1 convolution from ``sample`` straight to the output, zero at
            initialisation. Not in the paper: it gives a narrow network a direct path from the
            image instructions in c_image to the frames they pin (x0 prediction of frame 0 is
            then a linear copy), instead of squeezing 2C input channels through the first
            level's width. Off by default, so Stable Diffusion UNets inflate unchanged.
        temporal_attention_all_levels: give the levels without spatial attention a temporal
            attention after each ResBlock too. The paper adds temporal attention after each
            spatial attention, and Stable Diffusion has spatial attention at all but its lowest
            resolution; a small model that drops the costly spatial attention at its highest
            resolution can keep the cheap temporal one there, so fine detail (a static
            background) travels between frames at full latent resolution. Off by default.
        frame_embedding: add a learned embedding of each frame's index (a linear map of the
            sinusoidal frame position, zero at initialisation) to the timestep embedding, so
            every ResBlock knows which frame it is drawing. Not in the paper, where the frame
            position reaches the spatial layers only through the temporal attention's output;
            motion from text alone ("moves left") needs each frame to combine the caption with
            its own index. Zero at initialisation, so adding it to a trained UNet
            (``with_frame_embedding``) changes nothing until it trains. Off by default.
        c_image_layout: how c_image marks its keyframes (:mod:`pixeldance.keyframes`):
            ``"zeros"`` (the paper's: C channels, absent slots are zeros; every model made
            before layouts existed) or ``"mask"`` (C + 2: a presence mask and a sketch-kind
            channel per frame; then in_channels = 2C + 2).
    """

    _supports_gradient_checkpointing = True
    # the residual units that stay whole when the model is split (FSDP wrapping, device maps);
    # each temporal convolution lives inside its ResBlock
    _no_split_modules = ["ResBlock", "SpatialTransformer", "TemporalAttention"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels: tuple[int, ...] = (32, 64),
        layers_per_block: int | tuple[int, ...] = 1,
        cross_attention_dim: int = 32,
        attention_head_dim: int | tuple[int, ...] = 4,
        num_attention_heads: int | tuple[int, ...] | None = None,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        use_linear_projection: bool = False,
        norm_num_groups: int = 8,
        norm_eps: float = 1e-5,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        sample_size: int | tuple[int, int] | None = None,
        input_skip: bool = False,
        temporal_attention_all_levels: bool = False,
        frame_embedding: bool = False,
        c_image_layout: str = "zeros",
    ):
        super().__init__()
        extra = extra_channels(c_image_layout)
        if extra and in_channels != 2 * out_channels + extra:
            raise ValueError(
                f"c_image_layout {c_image_layout!r} needs in_channels = 2 x out_channels + "
                f"{extra} = {2 * out_channels + extra}; got {in_channels}"
            )
        n = len(block_out_channels)
        if len(down_block_types) != n or len(up_block_types) != n:
            raise ValueError(
                "down_block_types, up_block_types and block_out_channels need one entry per level"
            )
        for t in down_block_types:
            if t not in DOWN_BLOCK_TYPES:
                raise ValueError(f"unknown down block type {t!r}; use one of {DOWN_BLOCK_TYPES}")
        for t in up_block_types:
            if t not in UP_BLOCK_TYPES:
                raise ValueError(f"unknown up block type {t!r}; use one of {UP_BLOCK_TYPES}")
        heads = _per_block(num_attention_heads or attention_head_dim, n, "attention heads")
        layers = _per_block(layers_per_block, n, "layers_per_block")
        tlayers = _per_block(transformer_layers_per_block, n, "transformer_layers_per_block")
        temb_dim = block_out_channels[0] * 4
        common = dict(
            temb_channels=temb_dim,
            cross_attention_dim=cross_attention_dim,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            use_linear_projection=use_linear_projection,
        )

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], temb_dim)
        self.frame_embed = None
        if frame_embedding:
            self.frame_embed = nn.Linear(block_out_channels[0], temb_dim)
            nn.init.zeros_(self.frame_embed.weight)
            nn.init.zeros_(self.frame_embed.bias)

        self.down_blocks = nn.ModuleList()
        cout = block_out_channels[0]
        for i, kind in enumerate(down_block_types):
            cin, cout = cout, block_out_channels[i]
            chans = [(cin if j == 0 else cout, cout) for j in range(layers[i])]
            self.down_blocks.append(
                UNetBlock(
                    chans,
                    attention=kind.startswith("CrossAttn"),
                    num_heads=heads[i],
                    transformer_layers=tlayers[i],
                    downsample=i < n - 1,
                    temporal_attention=temporal_attention_all_levels or None,
                    **common,
                )
            )

        self.mid_block = MidBlock(
            block_out_channels[-1], num_heads=heads[-1], transformer_layers=tlayers[-1], **common
        )

        rev_channels = list(reversed(block_out_channels))
        rev_heads, rev_layers, rev_tlayers = heads[::-1], layers[::-1], tlayers[::-1]
        self.up_blocks = nn.ModuleList()
        cout = rev_channels[0]
        for i, kind in enumerate(up_block_types):
            prev, cout = cout, rev_channels[i]
            skip_in = rev_channels[min(i + 1, n - 1)]
            num = rev_layers[i] + 1
            chans = [
                ((prev if j == 0 else cout) + (skip_in if j == num - 1 else cout), cout)
                for j in range(num)
            ]
            self.up_blocks.append(
                UNetBlock(
                    chans,
                    attention=kind.startswith("CrossAttn"),
                    num_heads=rev_heads[i],
                    transformer_layers=rev_tlayers[i],
                    upsample=i < n - 1,
                    temporal_attention=temporal_attention_all_levels or None,
                    **common,
                )
            )

        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)
        self.conv_skip = None
        if input_skip:
            self.conv_skip = nn.Conv2d(in_channels, out_channels, 1)
            nn.init.zeros_(self.conv_skip.weight)
            nn.init.zeros_(self.conv_skip.bias)

    def init_input_skip_as_instruction_copy(self) -> None:
        """Set the input skip so the output starts as c_image (the second half of the input).

        For x0 prediction this is the right prior: frame 0's target is its first-frame
        instruction and frame F-1's its last-frame instruction, and c_image is zero in every
        other frame (and in image batches), so nothing else changes. Adam moves a weight about
        one learning rate per step, so learning this copy from zero takes thousands of steps.
        """
        if self.conv_skip is None:
            raise ValueError("this UNet has no input skip; build it with input_skip=True")
        c_in, c_out = self.config.in_channels, self.config.out_channels
        if c_in - self.keyframe_channels != 2 * c_out:
            raise ValueError(
                f"the instruction copy needs in_channels = 2 x out_channels; got {c_in}, {c_out}"
            )
        with torch.no_grad():
            self.conv_skip.weight.zero_()
            self.conv_skip.bias.zero_()
            for c in range(c_out):
                self.conv_skip.weight[c, c_out + c] = 1.0

    @property
    def keyframe_channels(self) -> int:
        """Input channels beyond z_t and the latent part of c_image (the layout's marks)."""
        return extra_channels(self.config.get("c_image_layout", "zeros"))

    def with_keyframe_channels(self) -> PixelDanceUNet:
        """A copy of this ``"zeros"``-layout UNet with the ``"mask"`` layout: the two new input
        channels (presence, kind) get zero weights in ``conv_in`` (and the input skip), so it
        gives the same outputs as this one until it trains. Returns ``self`` if it has them."""
        if self.config.get("c_image_layout", "zeros") == "mask":
            return self
        new = PixelDanceUNet.from_config(
            self.config, c_image_layout="mask", in_channels=self.config.in_channels + 2
        )
        state = self.state_dict()
        for name in ("conv_in.weight", "conv_skip.weight"):
            if name in state:
                old = state[name]
                state[name] = torch.cat([old, old.new_zeros(old.shape[0], 2, *old.shape[2:])], 1)
        new.load_state_dict(state, strict=True)
        return new.to(device=self.device, dtype=self.dtype)

    def with_frame_embedding(self) -> PixelDanceUNet:
        """A copy of this UNet with a (zero) frame embedding added: the same outputs until it
        trains. Returns ``self`` if it has one already."""
        if self.frame_embed is not None:
            return self
        new = PixelDanceUNet.from_config(self.config, frame_embedding=True)
        missing, unexpected = new.load_state_dict(self.state_dict(), strict=False)
        if unexpected or any(not k.startswith("frame_embed.") for k in missing):
            raise RuntimeError(f"weights did not carry over: {missing=} {unexpected=}")
        return new.to(device=self.device, dtype=self.dtype)

    @property
    def downsample_factor(self) -> int:
        """H and W of ``sample`` must be multiples of this."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def temporal_modules(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (TemporalConv, TemporalAttention))]

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = True,
        step_cache: DeepFeatures | None = None,
    ) -> PixelDanceUNetOutput | tuple[torch.Tensor]:
        """Predict the diffusion target for every frame.

        Args:
            sample: ``(B, in_channels, F, H, W)`` = ``cat([z_t, c_image], dim=1)``, or a 4-D
                ``(B, in_channels, H, W)`` image.
            timestep: scalar or ``(B,)`` diffusion step.
            encoder_hidden_states: ``(B, L, cross_attention_dim)`` text states.
            step_cache: feature reuse across denoising steps (DeepCache, Ma et al. 2024); see
                :mod:`pixeldance.models.step_cache`. None (the default): the whole network.
                Given, a full pass stores the input of the outer ``step_cache.levels`` up
                levels in it; with ``step_cache.reuse`` set, only the outer levels run and the
                stored deep features stand in for everything below them.
        """
        image_input = sample.ndim == 4
        if image_input:
            sample = sample[:, :, None]
        if sample.ndim != 5:
            raise ValueError(
                f"sample must be (B, C, F, H, W) or (B, C, H, W); got {tuple(sample.shape)}"
            )
        b, c, f, h, w = sample.shape
        if c != self.config.in_channels:
            raise ValueError(
                f"sample has {c} channels but the UNet expects in_channels={self.config.in_channels}"
            )
        factor = self.downsample_factor
        if h % factor or w % factor:
            raise ValueError(f"latent height and width must be multiples of {factor}; got {h}x{w}")
        if encoder_hidden_states.shape[0] != b:
            raise ValueError("encoder_hidden_states batch size must match sample")

        # 1. time embedding, one per clip, repeated for its frames (plus each frame's own
        # position embedding if the UNet has one): (B*F, T)
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(b) if t.ndim == 0 else t
        temb = self.time_embedding(self.time_proj(t).to(sample.dtype))
        temb = temb.repeat_interleave(f, dim=0)
        if self.frame_embed is not None:
            pos = frame_position_embedding(
                f, self.frame_embed.in_features, sample.device, sample.dtype
            )
            temb = temb + self.frame_embed(pos).repeat(b, 1)
        context = encoder_hidden_states.repeat_interleave(f, dim=0)  # (B*F, L, D)

        # 2. frames as a batch of images
        frames = rearrange(sample, "b c f h w -> (b f) c h w")
        x = self.conv_in(frames)
        skips = [x]
        if step_cache is not None and step_cache.reuse:
            x = self._outer_levels(x, skips, temb, context, f, step_cache)
        else:
            x = self._all_levels(x, skips, temb, context, f, step_cache)
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        if self.conv_skip is not None:
            x = x + self.conv_skip(frames)

        out = rearrange(x, "(b f) c h w -> b c f h w", b=b)
        if image_input:
            out = out[:, :, 0]
        if not return_dict:
            return (out,)
        return PixelDanceUNetOutput(sample=out)

    def _all_levels(self, x, skips, temb, context, f: int, step_cache: DeepFeatures | None):
        """Down levels, mid block, up levels; the input of the outer up levels goes to
        ``step_cache`` if one is given. ``(B*F, C0, H, W)`` in and out."""
        n = len(self.up_blocks)
        first_outer = n - step_cache.levels if step_cache is not None else n
        for block in self.down_blocks:
            x, states = block.down(x, temb, context, f)
            skips.extend(states)
        x = self.mid_block(x, temb, context, f)
        for i, block in enumerate(self.up_blocks):
            if i == first_outer:
                step_cache.store(x)
            x = self._up(i, block, x, skips, temb, context, f)
        return x

    def _outer_levels(self, x, skips, temb, context, f: int, step_cache: DeepFeatures):
        """The outer ``step_cache.levels`` down and up levels around the stored deep features
        (the down-sampler of the innermost outer level feeds only deeper levels: skipped)."""
        n, k = len(self.up_blocks), step_cache.levels
        for j, block in enumerate(self.down_blocks[:k]):
            x, states = block.down(x, temb, context, f, downsample=j < k - 1)
            skips.extend(states)
        x = step_cache.features
        for i in range(n - k, n):
            x = self._up(i, self.up_blocks[i], x, skips, temb, context, f)
        return x

    def _up(self, i: int, block: UNetBlock, x, skips: list, temb, context, f: int):
        block_skips = skips[-len(block.resnets) :]
        del skips[-len(block.resnets) :]
        size = skips[-1].shape[-2:] if skips and i < len(self.up_blocks) - 1 else None
        return block.up(x, block_skips, temb, context, f, size)

    @classmethod
    def from_unet2d(
        cls,
        unet2d,
        in_channels: int | None = None,
        output_loading_info: bool = False,
        c_image_layout: str = "zeros",
    ):
        """Build a PixelDanceUNet from a diffusers ``UNet2DConditionModel`` (SD 1.x / 2.x).

        See :func:`pixeldance.models.inflate.inflate_unet2d`.
        """
        from .inflate import inflate_unet2d

        model, info = inflate_unet2d(cls, unet2d, in_channels, c_image_layout)
        return (model, info) if output_loading_info else model
