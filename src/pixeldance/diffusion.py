"""The training objective: noise a clip's latents, ask the UNet for the target, score it.

DDPM with T = 1000 steps (paper, sec. 3.2), noise and timesteps from a diffusers
``DDPMScheduler``. The prediction target is the scheduler's ``prediction_type``, so training
and sampling cannot disagree about it: ``"epsilon"`` (the paper's), ``"v_prediction"``
(Salimans & Ho 2022) or ``"sample"`` (x0). Optional min-SNR-gamma weighting (Hang et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def make_training_scheduler(
    prediction_type: str = "epsilon",
    num_train_timesteps: int = 1000,  # paper, sec. 3.2: T = 1000
    beta_schedule: str = "scaled_linear",  # Stable Diffusion's schedule (paper does not say)
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
) -> DDPMScheduler:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
        )
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type=prediction_type,
        clip_sample=False,
    )


def target_for(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The regression target for the scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unsupported prediction_type {kind!r}; use one of {PREDICTION_TYPES}")


def snr(scheduler, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at steps ``t``."""
    ab = scheduler.alphas_cumprod.to(t.device)[t]
    return ab / (1 - ab)


def loss_weight(scheduler, t: torch.Tensor, snr_gamma: float | None) -> torch.Tensor:
    """Min-SNR-gamma weight per sample, expressed for the scheduler's target; 1 if disabled."""
    if snr_gamma is None:
        return torch.ones_like(t, dtype=torch.float32)
    s = snr(scheduler, t)
    clipped = torch.clamp(s, max=snr_gamma)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return clipped / s
    if kind == "v_prediction":
        return clipped / (s + 1)
    return clipped  # x0 target: the weight on x0 error equals min(SNR, gamma)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    per_sample: torch.Tensor  # (B,) weighted mean squared error
    timesteps: torch.Tensor  # (B,)


def diffusion_loss(
    unet,
    scheduler,
    latents: torch.Tensor,
    c_image: torch.Tensor,
    text_states: torch.Tensor,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
) -> LossOutput:
    """Loss for clip latents ``(B, C, F, h, w)`` given c_image (same shape) and text states.

    The UNet sees ``cat([z_t, c_image], dim=1)`` (paper, eq. 2).
    """
    b = latents.shape[0]
    device = latents.device
    t = torch.randint(
        0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=device
    )
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    xt = scheduler.add_noise(latents, noise, t)
    pred = unet(torch.cat([xt, c_image], dim=1), t, text_states).sample
    target = target_for(scheduler, latents, noise, t)
    mse = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3, 4))
    per_sample = mse * loss_weight(scheduler, t, snr_gamma)
    return LossOutput(per_sample.mean(), per_sample, t)
