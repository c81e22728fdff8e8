"""Keyframes at any frame index: the image instructions of PixelDance, generalised.

The paper's ``c_image = [z_first, PADs, z_last]`` (sec. 3.1, eq. 2) has one latent slot per
frame; two are filled. A :class:`Keyframe` fills any slot: a frame index, an image or a latent,
a kind (``"rgb"`` or ``"sketch"``) and tau, the number of denoising steps it guides (the
paper's tau rule, sec. 3.3, per keyframe). :func:`pack_c_image` is the one function that
turns any set of them into c_image, for training and for inference.

Two input layouts (a model's ``unet/config.json`` says which, as ``c_image_layout``):

- ``"zeros"`` (the paper's, and every model made before this): c_image has the latent's C
  channels, an absent slot is exact zeros. Zero is also a real picture in some latent spaces
  (mid-grey in the lossless codec), so a grey keyframe and no keyframe are the same input.
- ``"mask"``: two more channels per frame, a presence mask (1 where a keyframe is) and a kind
  channel (1 where that keyframe is a sketch), as Seedance 1.0 and Wan add a mask. Absent is
  then unambiguous, and sketches are told apart from photographs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

LAYOUTS = ("zeros", "mask")
KINDS = ("rgb", "sketch")
SKETCH_METHODS = ("sobel", "canny")  # data/sketch.py: edge maps without downloaded weights


def extra_channels(layout: str) -> int:
    """c_image channels beyond the latent's: 0 for ``"zeros"``, 2 (mask, kind) for ``"mask"``."""
    if layout not in LAYOUTS:
        raise ValueError(f"c_image_layout must be one of {LAYOUTS}, got {layout!r}")
    return 0 if layout == "zeros" else 2


@dataclass
class Keyframe:
    """One image instruction for one frame.

    ``index``: the frame it pins (negative counts from the end: -1 is the last frame).
    ``image``: any image input (PIL, array, tensor, path), or ``latent``: ``(B, C, h, w)`` or
    ``(C, h, w)`` latents (chaining passes latents, no decode/encode round trip).
    ``kind``: ``"rgb"`` or ``"sketch"`` (a drawing or edge map: dark lines on a light ground).
    ``tau``: it is in c_image for the first ``tau`` denoising steps and absent after (paper,
    sec. 3.3). None: all steps for frame 0, the call's tau (the last frame's; the model's
    unless set) for any other frame, so with ``tau=0`` in the call such a keyframe guides
    nothing: give its tau.
    """

    index: int
    image: object | None = None
    latent: torch.Tensor | None = None
    kind: str = "rgb"
    tau: int | None = None


@dataclass
class Slot:
    """A keyframe resolved to latents, ready to pack. ``index``: a frame index, or ``(B,)``
    indices (one per sample, in training); ``latent``: ``(B, C, h, w)``; ``keep``: ``(B,)``
    bool, False leaves that sample's slot absent; ``sketch``: the kind, for all samples (a
    bool) or per sample (``(B,)`` bool)."""

    index: int | torch.Tensor
    latent: torch.Tensor
    keep: torch.Tensor | None = None
    sketch: bool | torch.Tensor = False


def pack_c_image(
    shape: tuple[int, int, int, int, int],
    slots: Sequence[Slot],
    layout: str = "zeros",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pack keyframe slots into ``c_image`` ``(B, C + extra, F, h, w)``.

    ``shape`` is the latent video's ``(B, C, F, h, w)``. Each slot's latent goes to its frame
    (times its keep mask); every other entry is exactly zero. With layout ``"mask"`` channel C
    is 1 where a kept slot is and channel C+1 is 1 where that slot is a sketch. Slots at one
    frame of one sample must not both be kept (their latents would add). With ``"zeros"`` and
    slots at 0 and F-1 this is the paper's ``[z_first, PADs, z_last]``, value for value.
    """
    b, c, f, h, w = shape
    extra = extra_channels(layout)
    if slots and device is None:
        device = slots[0].latent.device
    c_image = torch.zeros(b, c + extra, f, h, w, device=device, dtype=dtype)
    rows = torch.arange(b, device=c_image.device)
    for slot in slots:
        keep = torch.ones(b, dtype=torch.bool, device=rows.device)
        if slot.keep is not None:
            keep = slot.keep.to(rows.device)
        z = slot.latent.to(c_image.device, dtype) * keep.to(dtype).view(-1, 1, 1, 1)
        index = slot.index
        if isinstance(index, int):
            c_image[:, :c, index] += z
        else:
            c_image[rows, :c, index.to(rows.device)] += z
        if extra:
            sketch = torch.as_tensor(slot.sketch, device=rows.device).expand(b)
            marks = torch.stack([keep, keep & sketch], dim=1).to(dtype)[..., None, None]
            target = (slice(None), slice(c, c + 2), index) if isinstance(index, int) else None
            if target is not None:
                c_image[target] += marks.expand(b, 2, h, w)
            else:
                c_image[rows, c : c + 2, index.to(rows.device)] += marks.expand(b, 2, h, w)
    return c_image


def unpack_c_image(
    c_image: torch.Tensor, latent_channels: int, layout: str = "zeros"
) -> dict[int, tuple[torch.Tensor, bool]]:
    """The keyframes in a one-sample c_image ``(1, C + extra, F, h, w)``: frame index ->
    ``(latent (C, h, w), is_sketch)``. With ``"zeros"`` a slot counts as present when it is
    not all zeros (so a zero latent, a mid-grey codec frame, reads as absent: the ambiguity
    the ``"mask"`` layout removes)."""
    c = latent_channels
    found = {}
    for i in range(c_image.shape[2]):
        z = c_image[0, :c, i]
        if layout == "mask":
            present = bool(c_image[0, c, i].mean() > 0.5)
            sketch = bool(c_image[0, c + 1, i].mean() > 0.5)
        else:
            present, sketch = bool(z.abs().sum() > 0), False
        if present:
            found[i] = (z, sketch)
    return found


class KeyframeError(ValueError):
    """A keyframe the model cannot take (one line, naming it)."""


def resolve_index(index: int, num_frames: int, what: str = "keyframe") -> int:
    """``index`` in ``[0, num_frames)`` (negative counts from the end), or KeyframeError."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise KeyframeError(f"{what} index must be an integer, got {index!r}")
    if not -num_frames <= index < num_frames:
        raise KeyframeError(
            f"{what} index {index} is out of range for {num_frames} frames "
            f"(use 0..{num_frames - 1}, or -{num_frames}..-1 from the end)"
        )
    return index % num_frames


def check_keyframes(
    keyframes: Sequence[Keyframe],
    num_frames: int,
    num_inference_steps: int,
    layout: str,
    default_tau: int,
) -> list[Keyframe]:
    """The keyframes with indices in ``[0, F)`` and taus filled in, sorted by index; or a
    :class:`KeyframeError` for the first that is wrong: an index out of range, two keyframes
    at one index, a sketch for a model whose layout has no kind channel, a tau outside
    ``[0, num_inference_steps]``, a keyframe with neither or both of image and latent."""
    out, seen = [], {}
    for k in keyframes:
        what = f"keyframe at index {k.index}"
        index = resolve_index(k.index, num_frames, "keyframe")
        if index in seen:
            raise KeyframeError(
                f"two keyframes at frame {index} (given as {seen[index]} and {k.index}); "
                "give one keyframe per frame"
            )
        seen[index] = k.index
        if k.kind not in KINDS:
            raise KeyframeError(f"{what}: kind must be one of {KINDS}, got {k.kind!r}")
        if k.kind == "sketch" and layout != "mask":
            raise KeyframeError(
                f"{what}: this model was not trained with sketch keyframes (its c_image_layout "
                f"is {layout!r}; sketches need a model trained with the 'mask' layout)"
            )
        if (k.image is None) == (k.latent is None):
            raise KeyframeError(f"{what}: give an image or a latent (exactly one)")
        tau = k.tau
        if tau is None:
            tau = num_inference_steps if index == 0 else min(default_tau, num_inference_steps)
        if isinstance(tau, bool) or not isinstance(tau, int) or not 0 <= tau <= num_inference_steps:
            raise KeyframeError(
                f"{what}: tau must be an integer in 0..{num_inference_steps} (the denoising "
                f"steps), got {k.tau!r}"
            )
        out.append(Keyframe(index, k.image, k.latent, k.kind, tau))
    return sorted(out, key=lambda k: k.index)


def folder_layout(folder: str | Path) -> str:
    """The ``c_image_layout`` of a pipeline folder's UNet, read from ``unet/config.json``
    without loading weights (``"zeros"`` for models made before layouts existed)."""
    path = Path(folder) / "unet" / "config.json"
    if not path.exists():
        return "zeros"
    return str(json.loads(path.read_text()).get("c_image_layout", "zeros"))
