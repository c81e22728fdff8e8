"""The training objective: targets per prediction type, and a tiny UNet overfitting a batch."""

import pytest
import torch

from helpers import tiny_unet
from pixeldance.diffusion import (
    diffusion_loss,
    make_training_scheduler,
    motion_weights,
    predict_x0,
    target_for,
)
from pixeldance.instructions import InstructionConfig, sample_training_instructions


def test_targets_per_prediction_type():
    x0, noise, t = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2), torch.tensor([10, 900])
    for kind, expected in (("epsilon", noise), ("sample", x0)):
        assert torch.equal(target_for(make_training_scheduler(kind), x0, noise, t), expected)
    sched = make_training_scheduler("v_prediction")
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(
        target_for(sched, x0, noise, t), ab.sqrt() * noise - (1 - ab).sqrt() * x0
    )
    with pytest.raises(ValueError, match="prediction_type"):
        make_training_scheduler("flow")


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_predict_x0_inverts_the_target(kind):
    """A perfect prediction of the target at x_t gives x0 back, for batched and scalar t."""
    sched = make_training_scheduler(kind)
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([10, 900])
    xt = sched.add_noise(x0, noise, t)
    torch.testing.assert_close(predict_x0(target_for(sched, x0, noise, t), xt, t, sched), x0)
    one = torch.tensor([500, 500])
    xt = sched.add_noise(x0, noise, one)
    torch.testing.assert_close(predict_x0(target_for(sched, x0, noise, one), xt, 500, sched), x0)


@pytest.mark.parametrize("kind", ["epsilon", "sample"])
def test_tiny_unet_overfits_one_batch(kind):
    torch.manual_seed(0)
    unet = tiny_unet().train()
    sched = make_training_scheduler(kind)
    latents = torch.randn(2, 4, 3, 8, 8)
    text = torch.randn(2, 4, 24)
    c_image = sample_training_instructions(
        latents, InstructionConfig(), sched, torch.Generator().manual_seed(0)
    ).c_image
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        # same noise and timesteps every step: one fixed batch to memorise
        out = diffusion_loss(
            unet, sched, latents, c_image, text, generator=torch.Generator().manual_seed(0)
        )
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_min_snr_weighting_changes_the_loss():
    torch.manual_seed(0)
    unet = tiny_unet()
    sched = make_training_scheduler("epsilon")
    latents = torch.randn(2, 4, 2, 8, 8)
    args = (unet, sched, latents, torch.zeros_like(latents), torch.randn(2, 4, 24))
    a = diffusion_loss(*args, generator=torch.Generator().manual_seed(3))
    b = diffusion_loss(*args, generator=torch.Generator().manual_seed(3), snr_gamma=5.0)
    assert torch.equal(a.timesteps, b.timesteps)
    assert not torch.allclose(a.loss, b.loss)


def test_motion_weights_mark_what_changed_since_frame_0():
    latents = torch.zeros(2, 4, 3, 8, 8)
    latents[:, :, :, :, :4] = 1.0  # a two-tone background, the same in every frame
    latents[0, :, 1, 2, 6] = -1.0  # sample 0: something appears at (2, 6) in frame 1
    w = motion_weights(latents, 3.0)
    assert w.shape == (2, 1, 3, 8, 8)
    assert w[0, 0, 1, 2, 6] == 4.0  # a full change gets 1 + strength
    assert w[0, 0, 0].eq(1).all() and w[0, 0, 2].eq(1).all()  # unchanged frames: 1
    assert w[0, 0, 1].sum() == 64 + 3  # only that position is weighted up
    assert w[1].eq(1).all()  # a static clip: 1 everywhere
    assert motion_weights(latents[:, :, :1], 3.0).eq(1).all()  # an image batch
    with pytest.raises(ValueError, match=">= 0"):
        motion_weights(latents, -1.0)


def test_motion_weighting_moves_the_loss_to_the_moving_positions():
    torch.manual_seed(0)
    unet = tiny_unet()
    sched = make_training_scheduler("sample")
    latents = torch.zeros(1, 4, 2, 8, 8)
    latents[:, :, 1, :2, :2] = 1.0  # a 2x2 object appears in frame 1
    text = torch.randn(1, 4, 24)
    args = (unet, sched, latents, torch.zeros_like(latents), text)
    plain = diffusion_loss(*args, generator=torch.Generator().manual_seed(3))
    weighted = diffusion_loss(*args, generator=torch.Generator().manual_seed(3), motion_weight=8.0)
    off = diffusion_loss(*args, generator=torch.Generator().manual_seed(3), motion_weight=0.0)
    assert torch.equal(plain.loss, off.loss)
    # recompute both by hand from the same prediction: the weighted one is the weighted mean
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (1,), generator=g)
    noise = torch.randn(latents.shape, generator=g)
    with torch.no_grad():
        pred = unet(torch.cat([sched.add_noise(latents, noise, t), args[3]], 1), t, text).sample
    se = (pred - latents) ** 2
    w = motion_weights(latents, 8.0)
    torch.testing.assert_close(plain.loss.detach(), se.mean())
    torch.testing.assert_close(weighted.loss.detach(), (se * w).mean() / w.mean())
    assert not torch.allclose(plain.loss, weighted.loss)


class RecordingUNet(torch.nn.Module):
    """A stand-in UNet whose output depends on its input, timestep and text; it records the
    batch size of every call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, text):
        from types import SimpleNamespace

        self.calls.append(x.shape[0])
        c = x.shape[1] // 2
        out = x[:, :c] * 0.5 + x[:, c:] + text.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
        return SimpleNamespace(sample=out + torch.as_tensor(t, dtype=x.dtype) / 1000)


def test_denoiser_guides_in_one_batched_call_inside_the_interval_only():
    from pixeldance.diffusion import Denoiser

    unet, sched = RecordingUNet(), make_training_scheduler("sample")
    z, c_image = torch.randn(2, 4, 3, 5, 5), torch.randn(2, 4, 3, 5, 5)
    uncond, cond = torch.randn(2, 7, 8), torch.randn(2, 7, 8) + 1
    text = torch.cat([uncond, cond])
    d = Denoiser(unet, sched, guidance_scale=3.0, guidance_interval=(700, 1000))
    assert d.guided
    inside = d(z, 800, c_image, text)
    u = unet(torch.cat([z, c_image], 1), 800, uncond).sample
    c = unet(torch.cat([z, c_image], 1), 800, cond).sample
    torch.testing.assert_close(inside, u + 3.0 * (c - u))
    unet.calls.clear()
    outside = d(z, 300, c_image, text)
    assert unet.calls == [2]  # the conditional half alone
    torch.testing.assert_close(outside, unet(torch.cat([z, c_image], 1), 300, cond).sample)
    unet.calls.clear()
    d(z, 800, c_image, text)
    assert unet.calls == [4]  # both halves in one call
    # unguided: the plain prediction, and x0 is the prediction itself for an x0 model
    plain = Denoiser(unet, sched)
    assert not plain.guided
    torch.testing.assert_close(plain.x0(z, 800, c_image, cond), c)
