"""PixelDancePipeline: the tau rule, schedulers, sizes, mp4 output, stories, bad inputs.

Dtypes, noise draws, chunked decoding and offload: test_pipeline_devices.py."""

import av
import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler
from PIL import Image

from helpers import SMALL, random_image, tiny_pipeline
from pixeldance import PixelDancePipeline, Shot, SpaceToDepthCodec
from pixeldance.files import write_video
from pixeldance.images import frames_to_uint8


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


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
            first_frame=random_image(0),
            last_frame=random_image(1),
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
        pipe("x", first_frame=random_image(0), last_frame=random_image(1), tau=tau, **SMALL)


def test_guidance_interval_guides_only_the_steps_inside_it(pipe):
    calls = []  # (timestep, batch) of each UNet call
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args: calls.append((int(args[1]), args[0].shape[0]))
    )

    def frames(**kwargs):
        calls.clear()
        out = pipe(
            "a red square",
            first_frame=random_image(0),
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
        all_out, _ = frames(guidance_scale=3.0, guidance_interval=(1000, 1000))
    finally:
        handle.remove()
    assert [b for _, b in every] == [2] * 4 and [b for _, b in none] == [1] * 4
    assert part == [(t, 2 if t >= 500 else 1) for t, _ in every]
    assert 1 in [b for _, b in part] and 2 in [b for _, b in part]
    assert torch.equal(all_in, guided)  # an interval holding every step: plain guidance
    assert torch.equal(all_out, plain)  # one holding none: the conditional prediction alone


@pytest.mark.parametrize("interval", [(900, 100), (-1, 10), (1.5, 10), (1, 2, 3), (1001, 2000)])
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
        first_frame=Image.fromarray(random_image(2)),
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
        Shot("it moves right", last_frame=random_image(3), tau=2),
        Shot("it stops"),
    ]
    try:
        out = pipe.generate_story(
            shots,
            first_frame=random_image(4),
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
    out = pipe("x", first_frame=random_image(0), output_type="np", **SMALL)
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
        first_frame=random_image(0),
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **SMALL,
    )
    b = loaded(
        "x",
        first_frame=random_image(0),
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **SMALL,
    )
    torch.testing.assert_close(a.frames, b.frames)


def test_bad_inputs_name_the_problem(pipe, tmp_path):
    cases = [
        (dict(first_frame=tmp_path / "missing.png"), FileNotFoundError, "missing.png"),
        (dict(num_frames=0), ValueError, "num_frames"),
        (dict(num_frames=1, last_frame=random_image(1)), ValueError, "num_frames"),
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
