"""pixeldance: PixelDance latent video diffusion (text + first frame + optional last frame)."""

from .models import PixelDanceUNet

__version__ = "0.1.0"

__all__ = ["PixelDanceUNet", "__version__"]
