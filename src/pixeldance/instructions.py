"""PixelDance's image instructions: c_image and its training perturbations.

``c_image = [z_first, PADs, z_last]`` (paper, sec. 3.1, eq. 2) is a latent video
``(B, C, F, h, w)`` holding the first-frame instruction in slot 0, the last-frame instruction in
slot F-1 and exact zeros everywhere else (also where an instruction is absent or dropped). It is
concatenated with the noisy latent z_t on the channel axis. :func:`build_c_image` is the one
function that makes it, for training and for inference alike.

In training (paper, sec. 3.2) the last-frame instruction is drawn from the clip's last three
frames, both instructions are noised to the level of diffusion step 100, the last frame is
dropped with probability 0.25 and the text with a small probability (for classifier-free
guidance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from .keyframes import SKETCH_METHODS, Slot, extra_channels, pack_c_image


@dataclass
class InstructionConfig:
    """How instructions are perturbed. Paper values are the defaults (Zeng et al. 2024)."""

    # Sec. 3.2: "the last frame instruction is randomly selected from the last three frames".
    last_frame_candidates: int = 3
    # Sec. 3.2: c_image is perturbed with noise "corresponding to 100 time steps".
    noise_timestep: int = 100
    # Sec. 3.2: the last-frame instruction is dropped with probability 0.25.
    last_frame_drop_prob: float = 0.25
    # Text dropped (empty prompt) for classifier-free guidance; the paper says only "a small
    # probability", 0.1 is the common choice.
    text_drop_prob: float = 0.1
    # Not in the paper: drop the first frame too, so a model can start from text alone.
    first_frame_drop_prob: float = 0.0
    # Not in the paper: when the first frame is dropped, drop the last frame too, so that
    # share of the clips trains the text-only mode alone. With only the last frame kept, a
    # mover's end position gives its direction away and the caption's direction words are
    # redundant; text alone is where a model has to read them.
    drop_last_with_first: bool = False
    # Not in the paper (keyframes anywhere, see keyframes.py); 0 keeps the paper's recipe and
    # its random draws exactly. The probability a clip gets middle keyframes: up to
    # `max_middle_keyframes` draws, each kept with this probability, at a uniform index
    # strictly between the first and the last frame.
    middle_keyframe_prob: float = 0.0
    max_middle_keyframes: int = 1
    # The probability a clip (with its first frame kept) gets a prefix of k context keyframes,
    # frames 0..k-1, k uniform in 2..max_context_frames: how a shot continues the previous one.
    context_prefix_prob: float = 0.0
    max_context_frames: int = 4
    # The probability a kept last-frame instruction is its edge map (paper, sec. 4.5 fine-tunes
    # on HED edge maps; here "sobel" or "canny", computed without weights: data/sketch.py).
    # Needs a UNet with c_image_layout "mask" (its kind channel marks sketches).
    sketch_last_prob: float = 0.0
    sketch_method: str = "canny"

    def __post_init__(self):
        for name in (
            "last_frame_drop_prob", "text_drop_prob", "first_frame_drop_prob",
            "middle_keyframe_prob", "context_prefix_prob", "sketch_last_prob",
        ):  # fmt: skip
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"instructions.{name} must be in [0, 1], got {value}")
        if self.max_middle_keyframes < 1:
            raise ValueError("instructions.max_middle_keyframes must be at least 1")
        if self.max_context_frames < 2:
            raise ValueError("instructions.max_context_frames must be at least 2")
        if self.sketch_method not in SKETCH_METHODS:
            raise ValueError(
                f"instructions.sketch_method must be one of {SKETCH_METHODS}, "
                f"got {self.sketch_method!r}"
            )
        if self.last_frame_candidates < 1:
            raise ValueError("last_frame_candidates must be at least 1")
        if self.noise_timestep < 0:
            raise ValueError("noise_timestep must be >= 0 (0 means no instruction noise)")


def build_c_image(
    num_frames: int,
    first: torch.Tensor | None = None,
    last: torch.Tensor | None = None,
    first_mask: torch.Tensor | None = None,
    last_mask: torch.Tensor | None = None,
    layout: str = "zeros",
) -> torch.Tensor:
    """Pack first- and last-frame instructions into ``c_image`` ``(B, C, F, h, w)`` (the
    paper's two slots, through :func:`pixeldance.keyframes.pack_c_image`; ``layout`` "mask"
    adds its two channels).

    Args:
        num_frames: F.
        first, last: ``(B, C, h, w)`` latents of the first- and last-frame instructions, or
            None for absent.
        first_mask, last_mask: optional ``(B,)`` booleans; False zeroes that sample's slot
            (a dropped instruction).

    Slot 0 holds ``first``, slot F-1 holds ``last``; every other entry is exactly zero. With
    F == 1 there is no room for instructions and c_image is all zeros (image batches).
    """
    ref = first if first is not None else last
    if ref is None:
        raise ValueError("build_c_image needs at least one instruction to know the latent shape")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    b, c, h, w = ref.shape
    slots = []
    if num_frames > 1 and first is not None:
        slots.append(Slot(0, first, first_mask))
    if num_frames > 1 and last is not None:
        slots.append(Slot(num_frames - 1, last, last_mask))
    return pack_c_image((b, c, num_frames, h, w), slots, layout, ref.device, ref.dtype)


def empty_c_image(latents: torch.Tensor, layout: str = "zeros") -> torch.Tensor:
    """c_image with no instructions for ``latents`` ``(B, C, F, h, w)``."""
    return pack_c_image(tuple(latents.shape), [], layout, latents.device, latents.dtype)


def without_last_frame(c_image: torch.Tensor) -> torch.Tensor:
    """c_image with the last-frame slot zeroed (used after the first tau steps)."""
    if c_image.shape[2] < 2:
        return c_image
    out = c_image.clone()
    out[:, :, -1] = 0
    return out


def draw_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device`` in ``dtype``: the one draw of sampling.

    It is drawn in float32 on the generator's device (with diffusers' ``randn_tensor``; a list
    of generators seeds each batch item), then moved and cast, so a seed gives the same noise
    whatever the pipeline's device and dtype, and a generator on another device than the
    models (a CPU generator with a GPU pipeline, or the reverse) never clashes. Without a
    generator the noise is drawn on ``device`` itself.
    """
    first = generator[0] if isinstance(generator, list) else generator
    where = first.device if first is not None else device
    noise = randn_tensor(tuple(shape), generator=generator, device=where, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def noise_instruction(z: torch.Tensor, scheduler, timestep: int, generator=None) -> torch.Tensor:
    """Noise a latent to the level of diffusion step ``timestep`` (the forward process q):
    ``sqrt(abar_t) * z + sqrt(1 - abar_t) * eps``, with abar from the scheduler's training
    schedule (any diffusers scheduler has ``alphas_cumprod``). ``eps`` comes from
    :func:`draw_noise` (on the generator's device, then moved to ``z``'s)."""
    if timestep <= 0:
        return z
    abar = scheduler.alphas_cumprod[timestep].to(device=z.device, dtype=torch.float32)
    noise = draw_noise(z.shape, generator, z.device)  # float32
    return (abar.sqrt() * z.float() + (1 - abar).sqrt() * noise).to(z.dtype)


@dataclass
class TrainingInstructions:
    """What :func:`sample_training_instructions` drew, for the loss and for tests."""

    c_image: torch.Tensor  # (B, C [+ 2 with the "mask" layout], F, h, w)
    last_index: torch.Tensor  # (B,) frame index the last-frame instruction was taken from
    keep_first: torch.Tensor  # (B,) bool
    keep_last: torch.Tensor  # (B,) bool
    keep_text: torch.Tensor  # (B,) bool
    keyframes: torch.Tensor | None = None  # (B, F) bool: the slots holding an instruction
    sketch_last: torch.Tensor | None = None  # (B,) bool: the last-frame instruction is a sketch


def sample_training_instructions(
    latents: torch.Tensor,
    config: InstructionConfig,
    scheduler,
    generator: torch.Generator | None = None,
    layout: str = "zeros",
    sketcher: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TrainingInstructions:
    """Draw the training instructions for a batch of clip latents ``(B, C, F, h, w)``.

    The paper's recipe: the first-frame instruction is the clip's own first frame; the
    last-frame one is one of its last ``last_frame_candidates`` frames, uniformly, placed in
    the last slot; each is dropped with its probability; the ones kept are noised to
    ``noise_timestep``. Then, only when their probabilities are above 0 (so the paper's recipe
    draws exactly what it always drew): a sketch in place of the last frame (``sketcher``
    maps latents ``(B, C, h, w)`` to the latents of their sketches), middle keyframes, a
    context prefix. One-frame batches (images) get a c_image with no instructions.
    """
    b, _, f, _, _ = latents.shape
    device = latents.device
    rows = torch.arange(b, device=device)

    def coin(p: float) -> torch.Tensor:  # (B,) bool, True with probability 1 - p (kept)
        return torch.rand(b, generator=generator, device=device) >= p

    def noised(z: torch.Tensor) -> torch.Tensor:
        return noise_instruction(z, scheduler, config.noise_timestep, generator)

    keep_text = coin(config.text_drop_prob)
    if f == 1:
        false = torch.zeros(b, dtype=torch.bool, device=device)
        zero = torch.zeros(b, dtype=torch.long, device=device)
        c_image = empty_c_image(latents, layout)
        return TrainingInstructions(c_image, zero, false, false.clone(), keep_text)
    keep_first, keep_last = coin(config.first_frame_drop_prob), coin(config.last_frame_drop_prob)
    if config.drop_last_with_first:
        keep_last = keep_last & keep_first
    candidates = min(config.last_frame_candidates, f - 1)
    offset = torch.randint(0, candidates, (b,), generator=generator, device=device)
    last_index = f - 1 - offset
    first = noised(latents[:, :, 0])
    last = noised(latents[rows, :, last_index])
    marked = torch.zeros(b, f, dtype=torch.bool, device=device)
    marked[:, 0], marked[:, -1] = keep_first, keep_last
    sketch = torch.zeros(b, dtype=torch.bool, device=device)
    if config.sketch_last_prob > 0:
        sketch = ~coin(config.sketch_last_prob) & keep_last
        if extra_channels(layout) == 0:
            raise ValueError(
                "instructions.sketch_last_prob > 0 needs a UNet with c_image_layout 'mask'"
            )
        if sketch.any():
            if sketcher is None:
                raise ValueError("sketch instructions need a sketcher (latents -> sketch latents)")
            drawn = noised(sketcher(latents[rows, :, last_index]))
            last = torch.where(sketch.view(-1, 1, 1, 1), drawn, last)
    slots = [Slot(0, first, keep_first), Slot(f - 1, last, keep_last, sketch)]
    if config.middle_keyframe_prob > 0 and f > 2:
        for _ in range(config.max_middle_keyframes):
            pick = ~coin(config.middle_keyframe_prob)
            index = torch.randint(1, f - 1, (b,), generator=generator, device=device)
            pick &= ~marked[rows, index]
            marked[rows, index] |= pick
            slots.append(Slot(index, noised(latents[rows, :, index]), pick))
    if config.context_prefix_prob > 0 and f > 2:
        prefix = ~coin(config.context_prefix_prob) & keep_first
        top = min(config.max_context_frames, f - 1)
        k = torch.randint(2, top + 1, (b,), generator=generator, device=device)
        for j in range(1, top):
            pick = prefix & (j < k) & ~marked[:, j]
            marked[:, j] |= pick
            slots.append(Slot(j, noised(latents[:, :, j]), pick))
    c_image = pack_c_image(tuple(latents.shape), slots, layout, device, latents.dtype)
    return TrainingInstructions(
        c_image, last_index, keep_first, keep_last, keep_text, marked, sketch
    )
