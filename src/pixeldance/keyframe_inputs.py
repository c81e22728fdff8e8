"""A pipeline call's image instructions as keyframes: gathered, checked, encoded, scheduled.

The call's ``first_frame`` / ``first_latent`` is the keyframe at index 0 (tau: all steps),
its ``last_frame`` the keyframe at index -1 (tau: the call's tau, the paper's rule), and
``keyframes`` any others. :func:`gather_keyframes` checks them all at once
(:func:`pixeldance.keyframes.check_keyframes`); :func:`encode_keyframes` turns them into
latent slots (sketches as grey drawings; instruction noise drawn in frame order, so the
paper's two-frame case draws exactly what it always drew); :class:`KeyframeSchedule` gives
c_image for each denoising step, packed once per set of keyframes still guiding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .encoders import encode_frames
from .images import prepare_images
from .instructions import noise_instruction
from .keyframes import Keyframe, KeyframeError, Slot, check_keyframes, pack_c_image


def gather_keyframes(
    first_frame,
    first_latent: torch.Tensor | None,
    last_frame,
    keyframes: Sequence[Keyframe] | None,
    num_frames: int,
    num_inference_steps: int,
    tau: int,
    layout: str,
) -> list[Keyframe]:
    """All of a call's keyframes, checked, with indices in ``[0, F)`` and taus, by index."""
    given: list[Keyframe] = []
    if first_latent is not None:
        given.append(Keyframe(0, latent=first_latent))
    elif first_frame is not None:
        given.append(Keyframe(0, image=first_frame))
    if last_frame is not None:
        given.append(Keyframe(-1, image=last_frame, tau=tau))
    for k in keyframes or ():
        if not isinstance(k, Keyframe):
            raise KeyframeError(f"keyframes must be Keyframe objects, got {type(k).__name__}")
        given.append(k)
    return check_keyframes(given, num_frames, num_inference_steps, layout, tau)


def encode_keyframes(
    pipe,
    keyframes: Sequence[Keyframe],
    latent_shape: tuple[int, int, int, int, int],
    chunk_size: int | None,
    instruction_noise: int,
    generator=None,
) -> list[Slot]:
    """Latent slots ``(B, C, h, w)`` for checked keyframes (sorted by index), noised to
    ``instruction_noise`` in index order."""
    from .data.sketch import as_drawing

    b, c, _, h, w = latent_shape
    height, width = h * pipe.vae_scale_factor, w * pipe.vae_scale_factor
    device = pipe._execution_device
    slots = []
    for k in keyframes:
        if k.latent is not None:
            z = k.latent if k.latent.ndim == 4 else k.latent[None]
            if tuple(z.shape[1:]) != (c, h, w) or z.shape[0] not in (1, b):
                raise KeyframeError(
                    f"keyframe at index {k.index}: latent shape {tuple(k.latent.shape)} does "
                    f"not fit ({b}, {c}, {h}, {w})"
                )
            z = z.expand(b, -1, -1, -1)
        else:
            pixels = prepare_images(k.image, height, width, b)  # (B, 3, H, W) in [-1, 1]
            if k.kind == "sketch":
                pixels = as_drawing(pixels)
            z = encode_frames(pipe.vae, pixels[:, :, None].to(device), chunk_size)[:, :, 0]
        slots.append(Slot(k.index, z, sketch=k.kind == "sketch"))
    if instruction_noise:
        for s in slots:
            s.latent = noise_instruction(s.latent, pipe.scheduler, instruction_noise, generator)
    return slots


class KeyframeSchedule:
    """c_image ``(B, C [+ 2], F, h, w)`` at each denoising step: keyframe k is in it for the
    steps ``i < k.tau`` (the paper's tau rule, sec. 3.3, per keyframe)."""

    def __init__(
        self,
        keyframes: Sequence[Keyframe],
        slots: Sequence[Slot],
        latent_shape: tuple[int, int, int, int, int],
        layout: str,
        device,
    ):
        self.keyframes, self.slots = list(keyframes), list(slots)
        self.shape, self.layout, self.device = latent_shape, layout, device
        self._packed: dict[tuple[bool, ...], torch.Tensor] = {}

    def at(self, step: int) -> torch.Tensor:
        active = tuple(step < k.tau for k in self.keyframes)
        if active not in self._packed:
            slots = [s for s, on in zip(self.slots, active, strict=True) if on]
            self._packed[active] = pack_c_image(self.shape, slots, self.layout, self.device)
        return self._packed[active]


def context_keyframes(latents: torch.Tensor, count: int) -> list[Keyframe]:
    """The last ``count`` latent frames of a clip ``(B, C, F, h, w)`` as keyframes 0..count-1
    of the next (each guiding all steps): how a shot continues the previous one."""
    if count < 1 or count >= latents.shape[2]:
        raise KeyframeError(
            f"context frames must be in 1..{latents.shape[2] - 1} for {latents.shape[2]}-frame "
            f"shots, got {count}"
        )
    tail = latents[:, :, -count:]
    return [Keyframe(j, latent=tail[:, :, j]) for j in range(count)]
