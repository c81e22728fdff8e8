"""Networks: the PixelDance 3D UNet and its building blocks."""

from .inflate import InflationInfo
from .unet import PixelDanceUNet, PixelDanceUNetOutput

__all__ = ["InflationInfo", "PixelDanceUNet", "PixelDanceUNetOutput"]
