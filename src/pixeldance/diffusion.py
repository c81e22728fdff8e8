"""The training objective and the denoiser that training, sampling and the benchmarks share.

:class:`Denoiser` is the one model call: ``cat([z_t, c_image])`` into the UNet (paper, eq. 2),
classifier-free guidance on the text as one batched call, and the parameterisation (the
prediction and the x0 it implies). :func:`diffusion_loss` noises a clip's latents, asks the
denoiser for the target and scores it.

DDPM with T = 1000 steps (paper, sec. 3.2), noise and timesteps from a diffusers
``DDPMScheduler``. The prediction target is the scheduler's ``prediction_type``, so training
and sampling cannot disagree about it: ``"epsilon"`` (the paper's), ``"v_prediction"``
(Salimans & Ho 2022) or ``"sample"`` (x0). Optional min-SNR-gamma weighting (Hang et al. 2023)
and an optional motion weighting (not in the paper; see ``motion_weights``).
"""

from __future__ import annotations

import math
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


def predict_x0(
    pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, scheduler
) -> torch.Tensor:
    """The clean latents x0 implied by a prediction of the scheduler's ``prediction_type``
    made at ``x_t``, step ``t`` (the inverse of :func:`target_for`).

    With x_t = sqrt(abar) x0 + sqrt(1 - abar) eps: from eps, x0 = (x_t - sqrt(1 - abar) eps)
    / sqrt(abar); from v = sqrt(abar) eps - sqrt(1 - abar) x0, x0 = sqrt(abar) x_t -
    sqrt(1 - abar) v. ``t`` is a scalar or ``(B,)``.
    """
    kind = scheduler.config.prediction_type
    if kind == "sample":
        return pred
    t = torch.as_tensor(t, device=x_t.device)
    abar = scheduler.alphas_cumprod.to(device=x_t.device, dtype=torch.float32)[t]
    abar = abar.reshape(-1, *([1] * (x_t.ndim - 1))) if abar.ndim else abar
    a, s = abar.sqrt(), (1 - abar).sqrt()
    if kind == "epsilon":
        x0 = (x_t.float() - s * pred.float()) / a
    elif kind == "v_prediction":
        x0 = a * x_t.float() - s * pred.float()
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}; use one of {PREDICTION_TYPES}")
    return x0.to(pred.dtype)


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


def motion_weights(latents: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-position loss weights ``(B, 1, F, h, w)``: ``1 + strength * m``, where m in [0, 1]
    says how much each position of each frame has changed since frame 0 (the channel-mean
    absolute change over half the clip's latent std, capped at 1).

    Not in the paper. In a clip of a few small moving objects most positions never change, so
    a plain mean squared error spends almost all of a small model's capacity on copying the
    first frame and learns the motion last; this weighting moves the loss towards the
    positions where something moved (where an object is now, and where it was). Measured
    relative to the clip's own latent std so it means the same for any autoencoder; image
    batches (one frame) and static clips get weight 1 nearly everywhere.
    """
    if strength < 0:
        raise ValueError(f"motion weighting strength must be >= 0, got {strength}")
    change = (latents - latents[:, :, :1]).abs().mean(dim=1, keepdim=True)
    scale = 0.5 * latents.std(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
    return 1 + strength * (change / scale).clamp(max=1.0)


@dataclass
class Denoiser:
    """The UNet's prediction for ``(z_t, t, c_image, text)``, guided (k-diffusion's denoiser).

    ``prediction_type`` is the ``scheduler``'s (epsilon, v or x0): :meth:`__call__` returns the
    prediction in it, :meth:`x0` the clean latents it implies. Classifier-free guidance on the
    text (Ho & Salimans 2022) is on when ``guidance_scale > 1`` (:attr:`guided`): then ``text``
    holds the unconditional states first, ``(2B, L, D)``, and both halves run in one UNet call
    with c_image in both; ``guidance_interval = (low, high)`` guides only timesteps with
    low <= t <= high and uses the conditional half alone elsewhere (guidance in a limited
    interval, Kynkaenniemi et al. 2024; None: every step). ``dtype``: the UNet's input dtype
    (None: as given). Predictions come back in float32.
    """

    unet: object
    scheduler: object
    guidance_scale: float = 1.0
    guidance_interval: tuple[int, int] | None = None
    dtype: torch.dtype | None = None

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0

    def __call__(
        self, z_t: torch.Tensor, t, c_image: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """``z_t``, ``c_image``: ``(B, C, F, h, w)``; ``t``: a timestep or ``(B,)``; ``text``:
        ``(B, L, D)``, or ``(2B, L, D)`` unconditional first when :attr:`guided`."""
        x = torch.cat([z_t, c_image], dim=1)  # (B, 2C, F, h, w): paper, eq. 2
        if self.dtype is not None:
            x = x.to(self.dtype)
        if not self.guided:
            return self.unet(x, t, text).sample.float()
        low, high = self.guidance_interval or (0, math.inf)
        if not low <= int(t) <= high:  # outside the interval: the conditional half alone
            return self.unet(x, t, text[x.shape[0] :]).sample.float()
        uncond, cond = self.unet(torch.cat([x, x]), t, text).sample.float().chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)

    def x0(self, z_t: torch.Tensor, t, c_image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The clean latents the (guided) prediction implies."""
        return predict_x0(self(z_t, t, c_image, text), z_t, t, self.scheduler)


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
    motion_weight: float = 0.0,
) -> LossOutput:
    """Loss for clip latents ``(B, C, F, h, w)`` given c_image (same shape) and text states.

    The prediction is the unguided :class:`Denoiser`'s. ``motion_weight`` > 0 weights
    each position by ``motion_weights`` (a weighted mean, so the loss keeps its scale).
    """
    b = latents.shape[0]
    device = latents.device
    t = torch.randint(
        0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=device
    )
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    xt = scheduler.add_noise(latents, noise, t)
    pred = Denoiser(unet, scheduler)(xt, t, c_image, text_states)
    target = target_for(scheduler, latents, noise, t)
    se = F.mse_loss(pred.float(), target.float(), reduction="none")
    if motion_weight:
        w = motion_weights(latents.float(), motion_weight)
        mse = (se * w).mean(dim=(1, 2, 3, 4)) / w.mean(dim=(1, 2, 3, 4))
    else:
        mse = se.mean(dim=(1, 2, 3, 4))
    per_sample = mse * loss_weight(scheduler, t, snr_gamma)
    return LossOutput(per_sample.mean(), per_sample, t)
