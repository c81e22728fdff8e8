"""PixelDancePipeline across dtypes and devices: bfloat16 close to float32, every noise draw
through one helper on the generator's device, chunked VAE decode and encode, model CPU offload,
and ``pipe.to(device, dtype)`` carrying every component."""

import numpy as np
import pytest
import torch

from helpers import SMALL, random_image, tiny_pipeline
from pixeldance import PixelDancePipeline, Shot


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


NOISY = dict(SMALL, guidance_scale=3.0, instruction_noise=100, tau=2)


def test_bfloat16_pipeline_is_close_to_float32():
    """Every component in bfloat16 on the CPU, instruction noise on: the frames stay within
    0.05 (max) and 0.01 (mean) of float32's, in [0, 1] (measured: 0.031 and 0.0037)."""
    full, half = tiny_pipeline(), tiny_pipeline().to("cpu", torch.bfloat16)
    for p in (full, half):
        p.set_progress_bar_config(disable=True)
    assert {m.dtype for m in (half.text_encoder, half.vae, half.unet)} == {torch.bfloat16}

    def frames(p):
        return p(
            "a red square",
            first_frame=random_image(0),
            last_frame=random_image(1),
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            **NOISY,
        ).frames

    a, b = frames(full), frames(half)
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    diff = (a - b).abs()
    assert diff.max() < 0.05 and diff.mean() < 0.01, (diff.max(), diff.mean())
    assert diff.max() > 0  # the half-precision run did run in half precision


_RANDOM = [
    (torch, "randn"), (torch, "randn_like"), (torch, "rand"), (torch, "rand_like"),
    (torch, "randint"), (torch, "randint_like"), (torch, "normal"), (torch, "bernoulli"),
    (torch, "multinomial"), (torch.Tensor, "normal_"), (torch.Tensor, "uniform_"),
    (torch.Tensor, "random_"), (torch.Tensor, "bernoulli_"),
]  # fmt: skip


def test_every_random_draw_goes_through_one_helper(pipe, monkeypatch):
    """The initial noise and the instruction noise go through ``draw_noise`` with the caller's
    generator; the scheduler's noise through diffusers' ``randn_tensor``, the draw
    ``draw_noise`` makes too. Any other draw during a call fails the test."""
    import sys

    from diffusers import DDPMScheduler

    import pixeldance.instructions as instructions
    import pixeldance.pipeline as pipeline

    ddpm = PixelDancePipeline(
        **{**pipe.components, "scheduler": DDPMScheduler.from_config(pipe.scheduler.config)}
    )
    ddpm.set_progress_bar_config(disable=True)
    helper_calls, torch_draws = [], []
    real_helper = instructions.draw_noise

    def spy_helper(shape, generator=None, device=None, dtype=torch.float32):
        helper_calls.append((tuple(shape), generator))
        return real_helper(shape, generator, device, dtype)

    def guard(owner, name):
        real = getattr(owner, name)

        def draw(*args, **kwargs):
            caller = sys._getframe(1)
            where = (caller.f_globals.get("__name__"), caller.f_code.co_name)
            assert where == ("diffusers.utils.torch_utils", "randn_tensor"), f"{name} in {where}"
            torch_draws.append(kwargs.get("generator"))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, draw)

    monkeypatch.setattr(instructions, "draw_noise", spy_helper)
    monkeypatch.setattr(pipeline, "draw_noise", spy_helper)
    generator = torch.Generator().manual_seed(0)
    for owner, name in _RANDOM:
        guard(owner, name)
    ddpm("x", first_frame=random_image(0), last_frame=random_image(1), generator=generator, **NOISY)
    monkeypatch.undo()
    steps = SMALL["num_inference_steps"]
    assert [s for s, _ in helper_calls] == [(1, 4, 8, 12)] * 2 + [(1, 4, 3, 8, 12)]
    assert all(g is generator for _, g in helper_calls)
    # 3 helper draws, and DDPM's variance noise at every step but the last
    assert len(torch_draws) == 3 + steps - 1 and all(g is generator for g in torch_draws)


def test_noise_is_drawn_on_the_generators_device_then_moved():
    from pixeldance.instructions import draw_noise

    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    expected = torch.randn(2, 3, 4, generator=g())
    torch.testing.assert_close(draw_noise((2, 3, 4), g()), expected, rtol=0, atol=0)
    # drawn in float32 whatever the dtype asked for: the same seed, the same noise
    half = draw_noise((2, 3, 4), g(), "cpu", torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.to(torch.bfloat16))
    # a CPU generator with tensors elsewhere (here "meta", as a GPU would be): drawn, then moved
    moved = draw_noise((2, 3, 4), g(), "meta")
    assert moved.device.type == "meta" and moved.shape == (2, 3, 4)
    # one generator per batch item seeds each item
    per_item = draw_noise((2, 3), [torch.Generator().manual_seed(s) for s in (5, 6)])
    assert torch.equal(
        per_item[1], torch.randn(1, 3, generator=torch.Generator().manual_seed(6))[0]
    )


@pytest.mark.parametrize("output_type, atol", [("pt", 1e-5), ("latent", 1e-4)])
def test_chunked_vae_decode_and_encode_equal_unchunked(pipe, output_type, atol):
    """Equal up to float32 rounding: the CPU's convolution kernels sum in another order for
    another batch size. Frames within 1e-5 in [0, 1] (a 400th of an 8-bit level); latents,
    where the encoding's rounding has gone through 4 steps of a random UNet, within 1e-4."""

    def frames(chunk):
        return pipe(
            ["a", "b"],
            first_frame=random_image(0),
            generator=torch.Generator().manual_seed(0),
            output_type=output_type,
            decode_chunk_size=chunk,
            **{**SMALL, "num_frames": 5},
        ).frames

    whole = frames(None)
    for chunk in (1, 3):
        torch.testing.assert_close(frames(chunk), whole, rtol=0, atol=atol)
    with pytest.raises(ValueError, match="decode_chunk_size must be a positive integer"):
        frames(0)


def test_story_decodes_in_chunks(pipe):
    kwargs = dict(first_frame=random_image(0), output_type="pt", guidance_scale=1.0, **SMALL)
    shots = [Shot("a"), Shot("b")]
    a = pipe.generate_story(shots, generator=torch.Generator().manual_seed(0), **kwargs)
    b = pipe.generate_story(
        shots, generator=torch.Generator().manual_seed(0), decode_chunk_size=2, **kwargs
    )
    torch.testing.assert_close(a.frames, b.frames, rtol=0, atol=1e-5)


def test_model_cpu_offload_runs_and_changes_nothing():
    """``model_cpu_offload_seq`` names real components; with accelerate's offload hooks
    (here to the CPU itself, the one device a CPU machine has) the output is unchanged."""
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    seq = p.model_cpu_offload_seq.split("->")
    modules = {k for k, v in p.components.items() if isinstance(v, torch.nn.Module)}
    assert set(seq) == modules
    call = dict(first_frame=random_image(0), output_type="pt", **NOISY)
    a = p("x", generator=torch.Generator().manual_seed(0), **call).frames
    p.enable_model_cpu_offload(device="cpu")
    assert all(hasattr(getattr(p, name), "_hf_hook") for name in seq)
    assert p._execution_device.type == "cpu"
    b = p("x", generator=torch.Generator().manual_seed(0), **call).frames
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_to_device_and_dtype_carries_the_packaged_text_encoder_and_the_codec():
    from pixeldance.folders import shipped_model_path

    folder = shipped_model_path()
    pipe = PixelDancePipeline.from_pretrained(folder, dtype=torch.bfloat16)
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.bfloat16
    assert pipe.generation_settings().placement.dtype == "bfloat16"
    pipe = PixelDancePipeline.from_pretrained(folder).to("cpu", torch.bfloat16)
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.bfloat16
    assert pipe.vae.patch.dtype == torch.int64  # the codec has no float weights to cast
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle", first_frame=random_image(0), output_type="np", num_inference_steps=2)
    assert out.frames.shape[1:] == (16, 48, 48, 3) and np.isfinite(out.frames).all()
