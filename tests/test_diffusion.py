"""The training objective: targets per prediction type, and a tiny UNet overfitting a batch."""

import pytest
import torch

from helpers import tiny_unet
from pixeldance.diffusion import diffusion_loss, make_training_scheduler, target_for
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
