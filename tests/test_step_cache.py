"""Step caching (DeepCache-style feature reuse) and batched classifier-free guidance.

Tolerances stated here:
- the split itself is exact: a reusing pass whose stored deep features came from the same
  input gives the full pass's output bit for bit; ``cache_interval`` None or 1 is the uncached
  pipeline bit for bit;
- with real reuse (K = 2, 3) on the shipped model at only 10 steps (the harshest case: few
  steps, so each reused step spans a larger change of noise level), the frames stay within a
  mean absolute difference of 3 / 255 of the uncached frames (measured: 1.0 / 255 at K = 2,
  2.1 / 255 at K = 3) and differ from them (reuse happened); the quality scores at the
  model's own 50 steps are in benchmarks/RESULTS.md (generate_speed.py --compare-fast);
- guidance as one batched UNet call matches two separate calls within 1e-5 (float32).
"""

import numpy as np
import pytest
import torch

from helpers import ROOT, cli
from pixeldance import PixelDancePipeline, PixelDanceUNet
from pixeldance.folders import shipped_model_path
from pixeldance.models.step_cache import DeepFeatures, StepCache

THREE_LEVELS = dict(
    in_channels=8,
    out_channels=4,
    block_out_channels=(16, 32, 32),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=(1, 2, 1),
    cross_attention_dim=24,
    attention_head_dim=2,
    norm_num_groups=8,
    input_skip=True,
    temporal_attention_all_levels=True,
)


def random_unet() -> PixelDanceUNet:
    unet = PixelDanceUNet(**THREE_LEVELS).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in unet.parameters():  # the zero-initialised temporal outputs too
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return unet


def inputs(b=2, f=3, h=12, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 8, f, h, w, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    return x, t, torch.randn(b, 5, 24, generator=g)


@pytest.mark.parametrize("levels", [1, 2])
@torch.no_grad()
def test_reusing_pass_with_its_own_deep_features_is_the_full_pass(levels):
    unet = random_unet()
    x, t, ctx = inputs()
    full = unet(x, t, ctx).sample
    state = DeepFeatures(levels)
    assert torch.equal(unet(x, t, ctx, step_cache=state).sample, full)  # stores
    assert state.features is not None
    state.reuse = True
    assert torch.equal(unet(x, t, ctx, step_cache=state).sample, full)
    # and the reusing pass does depend on what was stored
    state.features = state.features + 1.0
    assert not torch.allclose(unet(x, t, ctx, step_cache=state).sample, full)


@torch.no_grad()
def test_step_cache_schedule_and_a_full_step_on_every_shape_change():
    unet = random_unet()
    x, t, ctx = inputs()
    cache = StepCache(unet, interval=3)
    for _ in range(4):  # full, cached, cached, full
        cache(x, t, ctx)
    assert (cache.full_calls, cache.cached_calls) == (2, 2)
    out = cache(x[:1], t[:1], ctx[:1])  # batch changes (guidance stops): a full step
    assert (cache.full_calls, cache.cached_calls) == (3, 2)
    assert torch.equal(out.sample, unet(x[:1], t[:1], ctx[:1]).sample)
    uncached = StepCache(unet, interval=1)
    for _ in range(3):
        assert torch.equal(uncached(x, t, ctx).sample, unet(x, t, ctx).sample)
    assert uncached.cached_calls == 0


def test_step_cache_refuses_bad_settings():
    unet = random_unet()
    with pytest.raises(ValueError, match="cache interval must be at least 1"):
        StepCache(unet, interval=0)
    with pytest.raises(ValueError, match="levels must be between 1 and 2"):
        StepCache(unet, interval=2, levels=3)


@torch.no_grad()
def test_batched_guidance_matches_two_passes():
    unet = random_unet()
    x, t, _ = inputs(b=1)
    t = t[0]  # one timestep for both halves, as the pipeline passes it
    g = torch.Generator().manual_seed(5)
    uncond, cond = torch.randn(1, 5, 24, generator=g), torch.randn(1, 5, 24, generator=g)
    batched = unet(torch.cat([x, x]), t, torch.cat([uncond, cond])).sample
    two = torch.cat([unet(x, t, uncond).sample, unet(x, t, cond).sample])
    torch.testing.assert_close(batched, two, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def shipped():
    pipe = PixelDancePipeline.from_pretrained(shipped_model_path())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _frames(pipe, cache_interval):
    return pipe(
        "a red circle moves to the right",
        first_frame="examples/red_circle.png",
        last_frame="examples/red_circle_end.png",
        num_inference_steps=10,
        tau=5,
        guidance_scale=15.0,
        guidance_interval=(700, 1000),  # guided then unguided: the batch changes mid-call
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        cache_interval=cache_interval,
    ).frames


def test_pipeline_cache_off_is_exact_and_on_is_close(shipped, monkeypatch):

    monkeypatch.chdir(ROOT)
    reference = _frames(shipped, None)
    assert np.array_equal(_frames(shipped, 1), reference)
    for k in (2, 3):
        diff = np.abs(_frames(shipped, k) - reference)
        assert 0 < diff.mean() < 3 / 255, (k, diff.mean())


def test_cli_refuses_a_bad_cache_interval(tmp_path):
    out = tmp_path / "v"
    result = cli("generate", "--prompt", "a red circle", "--cache-interval", "0", "--out", str(out))
    assert result.returncode == 2
    assert "--cache-interval must be an integer >= 1" in result.stderr
    assert not out.exists()
