"""Keyframes end to end: a tiny run with every keyframe mode trains, resumes exactly and saves
a model that generates with --keyframe and --sketch-last; folders made before keyframes load
and generate as before; the CLI refuses bad keyframes in one line, writing nothing."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import ROOT, cli, random_image, tiny_pipeline
from pixeldance import PixelDancePipeline
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.diffusion import Denoiser
from pixeldance.models import PixelDanceUNet
from test_keyframes import _legacy_c_image
from test_unet import tiny_unet2d
from train_runs import assert_same_checkpoint, run_killed_after, run_ok, sets, train_cmd

KEYFRAME_MODES = sets(
    "model.unet.c_image_layout=mask",
    "instructions.middle_keyframe_prob=0.5",
    "instructions.context_prefix_prob=0.5",
    "instructions.sketch_last_prob=0.5",
    "instructions.sketch_method=sobel",
    "run.keep_checkpoints=0",
)


@pytest.mark.slow
def test_tiny_run_with_every_keyframe_mode_resumes_exactly_and_generates(tmp_path):
    data = tmp_path / "shapes"
    write_dataset(data, 8, seed=0, progress=False)
    args = ["--max-steps", "6", "--checkpoint-every", "3", "--seed", "2", *KEYFRAME_MODES]
    a, b = tmp_path / "a", tmp_path / "b"
    run_ok(train_cmd(1, data, a, *args))
    assert run_killed_after(train_cmd(1, data, b, *args), b, 3), "finished before the kill"
    run_ok(train_cmd(1, data, b, *args, "--resume"))
    assert_same_checkpoint(a, b, 6)
    config = json.loads((a / "pipeline" / "unet" / "config.json").read_text())
    assert config["c_image_layout"] == "mask" and config["in_channels"] == 2 * 48 + 2

    image = tmp_path / "frame.png"
    Image.fromarray(random_image(1, (32, 32))).save(image)
    out = tmp_path / "video"
    done = cli(
        "generate", "--model", str(a / "pipeline"), "--prompt", "a red circle",
        "--first-frame", str(image), "--keyframe", f"1:{image}:2", "--sketch-last", str(image),
        "--frames", "4", "--steps", "3", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(out.glob("*.png"))) == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--keyframe", "16:IMG"], "index 16 is out of range for 16 frames"),
        (["--keyframe", "3:IMG", "--keyframe=-13:IMG"], "two keyframes at frame 3"),
        (["--sketch-last", "IMG"], "not trained with sketch keyframes"),
        (["--keyframe", "5:IMG:51"], "tau must be an integer in 0..50"),
        (["--keyframe", "five:IMG"], "--keyframe takes INDEX:PATH[:TAU]"),
    ],
)
def test_bad_keyframes_are_refused_before_loading(tmp_path, extra, message):
    image = str(ROOT / "examples" / "red_circle.png")
    out = tmp_path / "out.mp4"
    extra = [x.replace("IMG", image) for x in extra]
    done = cli("generate", "--prompt", "a red circle", "--first-frame", image, *extra,
               "--out", str(out), timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert message in lines[-1] and "Traceback" not in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_story_context_frames_are_checked_before_loading(tmp_path):
    board = tmp_path / "story.yaml"
    board.write_text(
        "shots:\n  - prompt: a\n  - prompt: b\n    keyframes:\n      - {index: 1, image: x.png}\n"
    )
    Image.fromarray(random_image(0)).save(tmp_path / "x.png")
    done = cli("story", str(board), "--context-frames", "2", "--out", str(tmp_path / "o.mp4"),
               timeout=120)  # fmt: skip
    assert done.returncode == 2 and "two keyframes at frame 1" in done.stderr.splitlines()[-1]
    done = cli("story", str(board), "--context-frames", "16", "--out", str(tmp_path / "o.mp4"),
               timeout=120)  # fmt: skip
    assert done.returncode == 2 and "--context-frames must be" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "o.mp4").exists()


def _old_loop(pipe, first, last, tau, steps, frames, seed):
    """The sampling loop as it was before keyframes: c_image = [first, PADs, last], the last
    slot zeroed after tau steps."""
    z_first = pipe.encode_images(first, 16, 16, 1)
    z_last = pipe.encode_images(last, 16, 16, 1)
    c_full = _legacy_c_image(frames, z_first, z_last)
    c_no_last = c_full.clone()
    c_no_last[:, :, -1] = 0
    text = pipe.encode_prompts(["x"], None, False)
    denoiser = Denoiser(pipe.unet, pipe.scheduler)
    pipe.scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    h = 16 // pipe.vae_scale_factor
    latents = torch.randn(1, c_full.shape[1], frames, h, h, generator=g)
    latents = latents * pipe.scheduler.init_noise_sigma
    for i, t in enumerate(pipe.scheduler.timesteps):
        c_image = c_full if i < tau else c_no_last
        pred = denoiser(pipe.scheduler.scale_model_input(latents, t), t, c_image, text)
        latents = pipe.scheduler.step(pred, t, latents).prev_sample
    return latents


def test_sd_inflated_folder_without_a_layout_loads_and_generates_as_before(tmp_path):
    """An SD-inflated tiny model saved before c_image_layout existed (the key removed from its
    config) loads with the paper's layout and gives the old loop's latents exactly."""
    pipe = tiny_pipeline()
    pipe.unet = PixelDanceUNet.from_unet2d(tiny_unet2d()).eval()
    pipe.register_modules(unet=pipe.unet)
    folder = tmp_path / "old"
    pipe.save_pretrained(folder)
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    assert config.pop("c_image_layout") == "zeros"
    config_path.write_text(json.dumps(config))
    loaded = PixelDancePipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    first, last = random_image(1, (16, 16)), random_image(2, (16, 16))
    kwargs = dict(num_frames=5, num_inference_steps=4, height=16, width=16, guidance_scale=1.0)
    new = loaded("x", first_frame=first, last_frame=last, tau=2, output_type="latent",
                 generator=torch.Generator().manual_seed(3), **kwargs).latents  # fmt: skip
    old = _old_loop(loaded, first, last, 2, 4, 5, 3)
    assert torch.equal(new, old)
    with_keyframes = loaded(
        "x", keyframes=[_kf(0, first), _kf(-1, last, 2)], output_type="latent",
        generator=torch.Generator().manual_seed(3), **kwargs,
    ).latents  # fmt: skip
    assert torch.equal(with_keyframes, new)


def _kf(index, image, tau=None):
    from pixeldance.keyframes import Keyframe

    return Keyframe(index, image=image, tau=tau)


def test_shipped_folder_is_read_as_the_zeros_layout():
    from pixeldance.folders import pipeline_folder
    from pixeldance.keyframes import folder_layout

    folder = Path(pipeline_folder(None))
    assert "c_image_layout" not in json.loads((folder / "unet" / "config.json").read_text())
    assert folder_layout(folder) == "zeros"


def test_demo_takes_a_middle_keyframe_and_refuses_a_sketch_for_the_shipped_model(tmp_path):
    from pixeldance.cli.demo import DemoInputError, DemoRunner

    runner = DemoRunner(out_dir=tmp_path)
    image = str(ROOT / "examples" / "red_circle.png")
    with pytest.raises(DemoInputError, match="not trained with sketch keyframes"):
        runner("a red circle", image, None, None, 2, "1:1", 0, None, None, image)
    with pytest.raises(DemoInputError, match="out of range"):
        runner("a red circle", image, None, None, 2, "1:1", 0, image, 40, None)
    video = runner("a red circle", image, None, None, 2, "1:1", 0, image, 8, None)
    assert Path(video).exists()
