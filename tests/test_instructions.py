"""c_image packing and the paper's training perturbations."""

import pytest
import torch

from pixeldance import InstructionConfig, build_c_image
from pixeldance.diffusion import make_training_scheduler
from pixeldance.instructions import sample_training_instructions, without_last_frame

SCHED = make_training_scheduler()


def test_build_c_image_layout_and_exact_zeros():
    first, last = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    c = build_c_image(6, first, last, last_mask=torch.tensor([True, False]))
    assert c.shape == (2, 4, 6, 3, 5)
    assert torch.equal(c[:, :, 0], first)
    assert torch.equal(c[0, :, -1], last[0])
    assert torch.count_nonzero(c[1, :, -1]) == 0  # dropped: exactly zero
    assert torch.count_nonzero(c[:, :, 1:-1]) == 0  # PADs
    assert torch.count_nonzero(without_last_frame(c)[:, :, -1]) == 0
    assert torch.count_nonzero(build_c_image(1, first, last)) == 0  # images carry no instructions


def test_config_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="last_frame_drop_prob"):
        InstructionConfig(last_frame_drop_prob=1.5)


def test_paper_defaults():
    cfg = InstructionConfig()
    assert (cfg.last_frame_candidates, cfg.noise_timestep, cfg.last_frame_drop_prob) == (
        3,
        100,
        0.25,
    )


def test_last_frame_drop_rate_and_source_frames():
    n, f = 20000, 8
    latents = (
        torch.arange(f, dtype=torch.float32).view(1, 1, f, 1, 1).expand(n, 1, f, 1, 1).contiguous()
    )
    cfg = InstructionConfig(noise_timestep=0)
    g = torch.Generator().manual_seed(0)
    out = sample_training_instructions(latents, cfg, SCHED, g)
    rate = 1 - out.keep_last.float().mean().item()
    sigma = (0.25 * 0.75 / n) ** 0.5
    assert abs(rate - 0.25) < 4 * sigma
    assert set(out.last_index.tolist()) == {f - 3, f - 2, f - 1}
    kept = out.keep_last
    # the slot holds exactly the chosen frame (its value is its index here) or zero if dropped
    assert torch.equal(out.c_image[kept, 0, -1, 0, 0], out.last_index[kept].float())
    assert torch.count_nonzero(out.c_image[~kept, :, -1]) == 0
    assert torch.equal(out.c_image[:, 0, 0, 0, 0], torch.zeros(n))  # frame 0 has value 0
    assert out.keep_first.all()  # first-frame drop defaults to 0
    text_rate = 1 - out.keep_text.float().mean().item()
    assert abs(text_rate - 0.1) < 4 * (0.1 * 0.9 / n) ** 0.5


def test_instruction_noise_matches_step_100():
    n = 4000
    latents = torch.ones(n, 1, 4, 4, 4)
    cfg = InstructionConfig(last_frame_drop_prob=0.0)
    out = sample_training_instructions(latents, cfg, SCHED, torch.Generator().manual_seed(1))
    abar = SCHED.alphas_cumprod[100].item()
    first = out.c_image[:, :, 0]
    assert abs(first.mean().item() - abar**0.5) < 0.01
    assert abs(first.std().item() - (1 - abar) ** 0.5) < 0.01
    assert torch.count_nonzero(out.c_image[:, :, 1:-1]) == 0  # noise only on instructions present


def test_first_frame_drop_and_single_frame_batches():
    latents = torch.randn(1000, 2, 4, 2, 2)
    cfg = InstructionConfig(first_frame_drop_prob=0.5)
    out = sample_training_instructions(latents, cfg, SCHED, torch.Generator().manual_seed(2))
    assert 0.4 < 1 - out.keep_first.float().mean().item() < 0.6
    assert torch.count_nonzero(out.c_image[~out.keep_first, :, 0]) == 0
    img = sample_training_instructions(torch.randn(4, 2, 1, 2, 2), cfg, SCHED)
    assert torch.count_nonzero(img.c_image) == 0


def test_drop_last_with_first_makes_text_only_clips():
    latents = torch.randn(2000, 2, 4, 2, 2)
    gen = torch.Generator().manual_seed(3)
    cfg = InstructionConfig(first_frame_drop_prob=0.5, drop_last_with_first=True)
    out = sample_training_instructions(latents, cfg, SCHED, gen)
    dropped = ~out.keep_first
    assert not out.keep_last[dropped].any()  # no first frame -> no last frame either
    assert torch.count_nonzero(out.c_image[dropped]) == 0  # the text-only mode: c_image all zero
    # where the first frame is kept, the last is still dropped at the paper's 0.25
    assert 0.2 < 1 - out.keep_last[~dropped].float().mean().item() < 0.3
    # independent by default: some clips keep the last frame without the first
    plain = sample_training_instructions(
        latents, InstructionConfig(first_frame_drop_prob=0.5), SCHED, gen
    )
    assert plain.keep_last[~plain.keep_first].any()
