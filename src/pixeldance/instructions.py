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

from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor


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

    def __post_init__(self):
        for name in ("last_frame_drop_prob", "text_drop_prob", "first_frame_drop_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
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
) -> torch.Tensor:
    """Pack instructions into ``c_image`` ``(B, C, F, h, w)``.

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
    c_image = ref.new_zeros(b, c, num_frames, h, w)
    if num_frames == 1:
        return c_image
    if first is not None:
        c_image[:, :, 0] = _masked(first, first_mask)
    if last is not None:
        c_image[:, :, -1] = _masked(last, last_mask)
    return c_image


def empty_c_image(latents: torch.Tensor) -> torch.Tensor:
    """All-zero c_image shaped like ``latents`` ``(B, C, F, h, w)`` (no instructions)."""
    return torch.zeros_like(latents)


def without_last_frame(c_image: torch.Tensor) -> torch.Tensor:
    """c_image with the last-frame slot zeroed (used after the first tau steps)."""
    if c_image.shape[2] < 2:
        return c_image
    out = c_image.clone()
    out[:, :, -1] = 0
    return out


def _masked(z: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return z
    return z * mask.to(z.dtype).view(-1, 1, 1, 1)


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

    c_image: torch.Tensor  # (B, C, F, h, w)
    last_index: torch.Tensor  # (B,) frame index the last-frame instruction was taken from
    keep_first: torch.Tensor  # (B,) bool
    keep_last: torch.Tensor  # (B,) bool
    keep_text: torch.Tensor  # (B,) bool


def sample_training_instructions(
    latents: torch.Tensor,
    config: InstructionConfig,
    scheduler,
    generator: torch.Generator | None = None,
) -> TrainingInstructions:
    """Draw the paper's training instructions for a batch of clip latents ``(B, C, F, h, w)``.

    The first-frame instruction is the clip's own first frame; the last-frame one is one of
    its last ``last_frame_candidates`` frames, uniformly; each is dropped with its
    probability; the ones kept are noised to ``noise_timestep``. One-frame batches (images)
    get an all-zero c_image.
    """
    b, _, f, _, _ = latents.shape
    device = latents.device

    def coin(p: float) -> torch.Tensor:  # (B,) bool, True with probability 1 - p (kept)
        return torch.rand(b, generator=generator, device=device) >= p

    keep_text = coin(config.text_drop_prob)
    if f == 1:
        false = torch.zeros(b, dtype=torch.bool, device=device)
        zero = torch.zeros(b, dtype=torch.long, device=device)
        return TrainingInstructions(empty_c_image(latents), zero, false, false.clone(), keep_text)
    keep_first, keep_last = coin(config.first_frame_drop_prob), coin(config.last_frame_drop_prob)
    if config.drop_last_with_first:
        keep_last = keep_last & keep_first
    candidates = min(config.last_frame_candidates, f - 1)
    offset = torch.randint(0, candidates, (b,), generator=generator, device=device)
    last_index = f - 1 - offset
    first = latents[:, :, 0]
    last = latents[torch.arange(b, device=device), :, last_index]
    first = noise_instruction(first, scheduler, config.noise_timestep, generator)
    last = noise_instruction(last, scheduler, config.noise_timestep, generator)
    c_image = build_c_image(f, first, last, keep_first, keep_last)
    return TrainingInstructions(c_image, last_index, keep_first, keep_last, keep_text)
