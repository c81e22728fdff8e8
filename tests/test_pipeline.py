"""PixelDancePipeline: the tau rule, schedulers, sizes, mp4 output, stories, bad inputs."""

import av
import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler
from PIL import Image

from helpers import tiny_pipeline
from pixeldance import PixelDancePipeline, Shot, SpaceToDepthCodec
from pixeldance.files import write_video
from pixeldance.pipeline import frames_to_uint8

SMALL = dict(num_frames=3, height=16, width=24, num_inference_steps=4)


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


def image(seed=0, size=(40, 30)):
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def record_last_slot(pipe):
    """Hook the UNet: per call, whether the c_image last-frame slot holds anything."""
    calls = []
    c = pipe.unet.config.out_channels

    def hook(module, args):
        calls.append(bool(torch.count_nonzero(args[0][:, c:, -1])))

    return calls, pipe.unet.register_forward_pre_hook(hook)


@pytest.mark.parametrize("tau", [0, 1, 3, 4])
def test_tau_rule(pipe, tau):
    calls, handle = record_last_slot(pipe)
    try:
        pipe(
            "a red square",
            first_frame=image(0),
            last_frame=image(1),
            tau=tau,
            guidance_scale=2.0,
            **SMALL,
        )
    finally:
        handle.remove()
    assert calls == [True] * tau + [False] * (4 - tau)


@pytest.mark.parametrize("tau", [-1, 5, 2.5])
def test_tau_out_of_range(pipe, tau):
    with pytest.raises(ValueError, match="tau"):
        pipe("x", first_frame=image(0), last_frame=image(1), tau=tau, **SMALL)


def test_guidance_interval_guides_only_the_steps_inside_it(pipe):
    calls = []  # (timestep, batch) of each UNet call
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args: calls.append((int(args[1]), args[0].shape[0]))
    )

    def frames(**kwargs):
        calls.clear()
        out = pipe(
            "a red square",
            first_frame=image(0),
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            **{**SMALL, **kwargs},
        ).frames
        return out, list(calls)

    try:
        guided, every = frames(guidance_scale=3.0)
        plain, none = frames(guidance_scale=1.0)
        _, part = frames(guidance_scale=3.0, guidance_interval=(500, 1000))
        all_in, _ = frames(guidance_scale=3.0, guidance_interval=(0, 1000))
        all_out, _ = frames(guidance_scale=3.0, guidance_interval=(1001, 2000))
    finally:
        handle.remove()
    assert [b for _, b in every] == [2] * 4 and [b for _, b in none] == [1] * 4
    assert part == [(t, 2 if t >= 500 else 1) for t, _ in every]
    assert 1 in [b for _, b in part] and 2 in [b for _, b in part]
    assert torch.equal(all_in, guided)  # an interval holding every step: plain guidance
    assert torch.equal(all_out, plain)  # one holding none: the conditional prediction alone


@pytest.mark.parametrize("interval", [(900, 100), (-1, 10), (1.5, 10), (1, 2, 3)])
def test_bad_guidance_interval(pipe, interval):
    with pytest.raises(ValueError, match="guidance_interval"):
        pipe("x", guidance_scale=2.0, guidance_interval=interval, **SMALL)


@pytest.mark.parametrize(
    "scheduler_cls", [None, DPMSolverMultistepScheduler, EulerDiscreteScheduler]
)
def test_schedulers_end_to_end_to_mp4(pipe, tmp_path, scheduler_cls):
    if scheduler_cls is not None:
        pipe = PixelDancePipeline(
            **{**pipe.components, "scheduler": scheduler_cls.from_config(pipe.scheduler.config)}
        )
        pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a blue circle moves left",
        first_frame=Image.fromarray(image(2)),
        output_type="np",
        generator=torch.Generator().manual_seed(0),
        num_frames=5,
        height=32,
        width=48,
        num_inference_steps=3,
    )
    frames = frames_to_uint8(out.frames)
    assert frames.shape == (5, 32, 48, 3)
    assert np.isfinite(out.frames).all()
    path = write_video(frames, tmp_path / "out.mp4", fps=8)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (32, 48, 3)
    assert not list(tmp_path.glob(".*part"))


def test_output_types(pipe):
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    pt = pipe("x", generator=g(), output_type="pt", **SMALL).frames
    np_ = pipe("x", generator=g(), output_type="np", **SMALL).frames
    pil = pipe("x", generator=g(), output_type="pil", **SMALL).frames
    lat = pipe("x", generator=g(), output_type="latent", **SMALL).frames
    assert pt.shape == (1, 3, 3, 16, 24) and np_.shape == (1, 3, 16, 24, 3)
    assert len(pil) == 1 and len(pil[0]) == 3 and pil[0][0].size == (24, 16)
    assert lat.shape == (1, 4, 3, 8, 12)
    np.testing.assert_allclose(pt[0].permute(1, 2, 3, 0).numpy(), np_[0], atol=1e-6)


def test_image_inputs_of_every_kind(pipe, tmp_path):
    rgba = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA"
    )
    grey = Image.fromarray(np.random.default_rng(1).integers(0, 256, (33, 17), dtype=np.uint8), "L")
    rgba.save(tmp_path / "a.png")
    for first in (
        rgba,
        grey,
        tmp_path / "a.png",
        torch.rand(3, 50, 50),
        np.random.rand(40, 60).astype(np.float32),
    ):
        out = pipe("x", first_frame=first, output_type="latent", **SMALL)
        assert out.frames.shape == (1, 4, 3, 8, 12)


def test_story_chains_latents(pipe):
    firsts, ends = [], []
    c = pipe.unet.config.out_channels

    def hook(module, args):
        firsts.append(args[0][:1, c:, 0].clone())

    handle = pipe.unet.register_forward_pre_hook(hook)
    shots = [
        Shot("a red square"),
        Shot("it moves right", last_frame=image(3), tau=2),
        Shot("it stops"),
    ]
    try:
        out = pipe.generate_story(
            shots,
            first_frame=image(4),
            output_type="latent",
            callback_on_shot=lambda k, z: ends.append(z[:, :, -1].clone()),
            guidance_scale=1.0,
            **SMALL,
        )
    finally:
        handle.remove()
    steps = SMALL["num_inference_steps"]
    assert out.frames.shape[2] == 3 * 3 - 2  # boundary frames appear once
    for k in (1, 2):
        start_of_next = firsts[k * steps]  # c_image slot 0 seen by the first UNet call of shot k
        assert torch.equal(start_of_next, ends[k - 1])
    assert torch.equal(out.frames[:, :, 2], ends[0])


def test_space_to_depth_codec_pipeline():
    pipe = tiny_pipeline(vae=SpaceToDepthCodec(patch_size=4))
    pipe.set_progress_bar_config(disable=True)
    out = pipe("x", first_frame=image(0), output_type="np", **SMALL)
    assert out.frames.shape == (1, 3, 16, 24, 3)


def test_save_and_load_pipeline(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tmp_path / sub).is_dir()
    assert not list(tmp_path.rglob("*.bin"))
    loaded = PixelDancePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    a = pipe(
        "x",
        first_frame=image(0),
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **SMALL,
    )
    b = loaded(
        "x",
        first_frame=image(0),
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **SMALL,
    )
    torch.testing.assert_close(a.frames, b.frames)


def test_bad_inputs_name_the_problem(pipe, tmp_path):
    cases = [
        (dict(first_frame=tmp_path / "missing.png"), FileNotFoundError, "missing.png"),
        (dict(num_frames=1), ValueError, "num_frames"),
        (dict(height=18), ValueError, "nearest valid sizes: 16 or 20"),
        (dict(num_inference_steps=-3), ValueError, "num_inference_steps"),
        (dict(output_type="gif"), ValueError, "output_type"),
    ]
    (tmp_path / "notes.png").write_text("not an image")
    cases.append((dict(first_frame=tmp_path / "notes.png"), ValueError, "not a readable image"))
    for kwargs, err, message in cases:
        with pytest.raises(err, match=message):
            pipe("x", **{**SMALL, **kwargs})


def test_failed_write_leaves_no_file(tmp_path):
    bad = np.zeros((3, 15, 16, 3), dtype=np.uint8)  # odd height: H.264 yuv420p refuses
    with pytest.raises(ValueError, match="even"):
        write_video(bad, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="unknown output type"):
        write_video(bad, tmp_path / "x.avi")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- dtypes, noise, memory
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
            first_frame=image(0),
            last_frame=image(1),
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
    ddpm("x", first_frame=image(0), last_frame=image(1), generator=generator, **NOISY)
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
            first_frame=image(0),
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
    kwargs = dict(first_frame=image(0), output_type="pt", guidance_scale=1.0, **SMALL)
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
    call = dict(first_frame=image(0), output_type="pt", **NOISY)
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
    out = pipe("a red circle", first_frame=image(0), output_type="np", num_inference_steps=2)
    assert out.frames.shape[1:] == (16, 48, 48, 3) and np.isfinite(out.frames).all()
