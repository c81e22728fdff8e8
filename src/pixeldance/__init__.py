"""pixeldance: PixelDance latent video diffusion (text + first frame + optional last frame)."""

from .instructions import InstructionConfig, build_c_image
from .models import PixelDanceUNet
from .models.codec import SpaceToDepthCodec
from .pipeline import PixelDancePipeline, PixelDancePipelineOutput, Shot

__version__ = "0.1.0"

__all__ = [
    "InstructionConfig",
    "PixelDancePipeline",
    "PixelDancePipelineOutput",
    "PixelDanceUNet",
    "Shot",
    "SpaceToDepthCodec",
    "build_c_image",
    "__version__",
]
