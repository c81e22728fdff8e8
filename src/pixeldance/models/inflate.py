"""Inflate a Stable Diffusion 2D UNet into a PixelDanceUNet.

Every spatial weight is copied key for key (the spatial modules keep diffusers' names);
``conv_in`` is widened with zero-initialised input channels for c_image, so the inflated
model ignores c_image at step 0; the temporal layers are new and start as the identity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)

# diffusers UNet2DConditionModel config entries that change the network in ways this
# inflation does not reproduce, with the value that it does reproduce.
_UNSUPPORTED = {
    "class_embed_type": None,
    "addition_embed_type": None,
    "encoder_hid_dim": None,
    "time_cond_proj_dim": None,
    "dual_cross_attention": False,
    "only_cross_attention": False,
    "resnet_time_scale_shift": "default",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "center_input_sample": False,
    "act_fn": "silu",
    "mid_block_type": "UNetMidBlock2DCrossAttn",
}


@dataclass
class InflationInfo:
    """What the inflation did: keys that are new (temporal layers), the widened conv_in."""

    new_keys: list[str] = field(default_factory=list)
    copied_keys: list[str] = field(default_factory=list)
    widened_keys: list[str] = field(default_factory=list)


def unet3d_config_from_2d(config, in_channels: int | None, c_image_layout: str = "zeros") -> dict:
    from ..keyframes import extra_channels

    extra = extra_channels(c_image_layout)
    for key, ok in _UNSUPPORTED.items():
        value = config.get(key, ok)
        if isinstance(ok, bool) and isinstance(value, (list, tuple)):
            value = any(value)
        if value != ok:
            raise ValueError(
                f"cannot inflate a UNet2DConditionModel with {key}={value!r} (supported: {ok!r})"
            )
    return dict(
        in_channels=in_channels or 2 * config["in_channels"] + extra,
        out_channels=config["out_channels"],
        down_block_types=tuple(config["down_block_types"]),
        up_block_types=tuple(config["up_block_types"]),
        block_out_channels=tuple(config["block_out_channels"]),
        layers_per_block=config["layers_per_block"],
        cross_attention_dim=config["cross_attention_dim"],
        attention_head_dim=config["attention_head_dim"],
        num_attention_heads=config.get("num_attention_heads"),
        transformer_layers_per_block=config.get("transformer_layers_per_block", 1),
        use_linear_projection=config.get("use_linear_projection", False),
        norm_num_groups=config["norm_num_groups"],
        norm_eps=config["norm_eps"],
        flip_sin_to_cos=config.get("flip_sin_to_cos", True),
        freq_shift=config.get("freq_shift", 0),
        c_image_layout=c_image_layout,
    )


def inflate_unet2d(cls, unet2d, in_channels: int | None = None, c_image_layout: str = "zeros"):
    """Return ``(PixelDanceUNet, InflationInfo)`` built from a ``UNet2DConditionModel``.

    ``in_channels`` defaults to twice the 2D UNet's (z_t plus c_image), plus the layout's
    two mark channels for ``c_image_layout="mask"`` (:mod:`pixeldance.keyframes`); the first
    ``unet2d.config.in_channels`` input channels of ``conv_in`` are the 2D weights, the rest
    are zero.
    """
    config = unet3d_config_from_2d(dict(unet2d.config), in_channels, c_image_layout)
    old_in = unet2d.config.in_channels
    if config["in_channels"] < old_in:
        raise ValueError(f"in_channels={config['in_channels']} is less than the 2D UNet's {old_in}")
    model = cls(**config)
    target = model.state_dict()
    source = unet2d.state_dict()
    info = InflationInfo()
    unknown = [k for k in source if k not in target]
    if unknown:
        raise ValueError(f"2D UNet weights with no place in PixelDanceUNet: {unknown[:5]} ...")
    with torch.no_grad():
        for key, value in source.items():
            dest = target[key]
            if key == "conv_in.weight" and dest.shape != value.shape:
                dest.zero_()
                dest[:, :old_in] = value
                info.widened_keys.append(key)
            elif dest.shape != value.shape:
                raise ValueError(
                    f"shape mismatch for {key}: 2D {tuple(value.shape)} vs 3D {tuple(dest.shape)}"
                )
            else:
                dest.copy_(value)
                info.copied_keys.append(key)
    model.load_state_dict(target)
    info.new_keys = [k for k in target if k not in source]
    logger.info(
        "inflated 2D UNet: %d tensors copied, %s widened, %d new temporal tensors",
        len(info.copied_keys),
        info.widened_keys,
        len(info.new_keys),
    )
    dtype = next(unet2d.parameters()).dtype
    if dtype != torch.float32:
        model.to(dtype=dtype)
    return model, info
