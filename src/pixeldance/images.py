"""Image instructions in, frames out: conversions between user images and model tensors.

Input policy: an image of any size is resized (bicubic) so that it covers the target size
while keeping its aspect ratio, then centre-cropped to exactly ``height x width``. RGBA and
palette images are composited on white, greyscale is repeated to RGB. Accepted: PIL images,
paths, numpy arrays ``(H, W)``, ``(H, W, 3|4)`` (uint8, or float in [0, 1]) and tensors
``(3, H, W)`` or ``(B, 3, H, W)`` (uint8, or float in [0, 1]).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .files import read_image, to_rgb

ImageInput = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike | list


def resize_cover_crop(
    image: Image.Image,
    height: int,
    width: int,
    resample: Image.Resampling = Image.Resampling.BICUBIC,
) -> Image.Image:
    """Resize to cover ``height x width`` keeping the aspect ratio, then centre-crop.

    The one geometry for image instructions and training frames alike.
    """
    w0, h0 = image.size
    scale = max(width / w0, height / h0)
    new_w, new_h = max(width, round(w0 * scale)), max(height, round(h0 * scale))
    if (new_w, new_h) != (w0, h0):
        image = image.resize((new_w, new_h), resample)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any layout) -> float in [-1, 1], the range the model works in."""
    return pixels.float() / 127.5 - 1.0


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"an image tensor must be (C, H, W) with C in 1, 3, 4; got {tuple(t.shape)}"
            )
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ValueError(
                f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}"
            )
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"image arrays must be uint8 or float in [0, 1]; got {arr.dtype}")
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
        return to_rgb(Image.fromarray(arr))
    raise TypeError(
        f"unsupported image type {type(image).__name__}: use a PIL image, path, numpy array or tensor"
    )


def prepare_images(images: ImageInput, height: int, width: int, batch_size: int) -> torch.Tensor:
    """One image or ``batch_size`` images -> ``(B, 3, H, W)`` float in [-1, 1]."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        images = [images] * batch_size
    if len(images) != batch_size:
        raise ValueError(f"got {len(images)} images for a batch of {batch_size} prompts")
    arrays = [np.asarray(resize_cover_crop(_to_pil(im), height, width)) for im in images]
    return to_model_range(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))


def to_output(frames: torch.Tensor, output_type: str):
    """Frames ``(B, 3, F, H, W)`` in [-1, 1] -> "pt" ``(B, 3, F, H, W)`` in [0, 1], "np"
    ``(B, F, H, W, 3)`` in [0, 1], or "pil" (list of lists of PIL images)."""
    frames = (frames.float() + 1) / 2
    if output_type == "pt":
        return frames
    arr = frames.permute(0, 2, 3, 4, 1).cpu().numpy()
    if output_type == "np":
        return arr
    if output_type == "pil":
        u8 = (arr * 255).round().astype(np.uint8)
        return [[Image.fromarray(f) for f in video] for video in u8]
    raise ValueError(f"unknown output_type {output_type!r}")


def frames_to_uint8(frames) -> np.ndarray:
    """Pipeline output (``np`` or ``pt``, one video or a batch) -> uint8 ``(F, H, W, 3)`` of the first."""
    if isinstance(frames, torch.Tensor):  # (B, 3, F, H, W) in [0, 1]
        frames = (
            frames[0].permute(1, 2, 3, 0).cpu().numpy()
            if frames.ndim == 5
            else frames.cpu().numpy()
        )
    elif isinstance(frames, np.ndarray) and frames.ndim == 5:
        frames = frames[0]
    elif isinstance(frames, list):  # PIL
        frames = np.stack(
            [np.asarray(f) for f in (frames[0] if isinstance(frames[0], list) else frames)]
        )
        return frames.astype(np.uint8)
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
