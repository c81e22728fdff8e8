"""Generation settings: a model's defaults (generation.json) and one resolution of a user's
choices against them, for every entry point."""

import json
from types import SimpleNamespace

import pytest

from pixeldance.data.buckets import Bucket
from pixeldance.generation import (
    GenerationConfig,
    Geometry,
    SettingError,
    resolve,
)

GEOMETRY = Geometry(default_size=(48, 48), multiple=16)
SHAPES_LIKE = GenerationConfig(
    num_inference_steps=50, guidance_scale=15.0, guidance_interval=(700, 1000), tau=25,
    num_frames=16, fps=4.0,
    sizes={"1:1": (48, 48), "16:9": (48, 80), "9:16": (80, 48)},
)  # fmt: skip


def test_defaults_resolve_to_the_models_own_settings():
    s = resolve(SHAPES_LIKE, GEOMETRY)
    assert (s.num_inference_steps, s.guidance_scale, s.guidance_interval, s.tau) == (
        50, 15.0, (700, 1000), 25,
    )  # fmt: skip
    assert (s.num_frames, s.fps, s.height, s.width) == (16, 4.0, 48, 48)


def test_user_choices_win_and_the_default_tau_is_capped_at_the_steps():
    s = resolve(
        SHAPES_LIKE, GEOMETRY, num_inference_steps=8, guidance_scale=1.0, guidance_interval=(0, 500)
    )
    assert (s.num_inference_steps, s.tau, s.guidance_scale, s.guidance_interval) == (
        8, 8, 1.0, (0, 500),
    )  # fmt: skip
    assert resolve(SHAPES_LIKE, GEOMETRY, num_inference_steps=8, tau=3).tau == 3


@pytest.mark.parametrize(
    "choices, name, message",
    [
        (
            dict(num_inference_steps=0),
            "num_inference_steps",
            "steps must be an integer from 1 to 1000",
        ),
        (dict(num_inference_steps=5000), "num_inference_steps", "from 1 to 1000"),
        (
            dict(num_inference_steps=10, tau=11),
            "tau",
            "tau must be between 0 and the steps (10), got 11",
        ),
        (dict(shot_taus=[None, 51]), "tau", "shot 2: tau must be between 0 and the steps (50)"),
        (dict(shot_frames=[1]), "num_frames", "shot 1: num_frames must be an integer from 2"),
        (dict(tau=-1), "tau", "tau must be between 0"),
        (dict(guidance_scale=-2.0), "guidance_scale", "guidance_scale must be a number >= 0"),
        (dict(guidance_scale=float("nan")), "guidance_scale", "guidance_scale must be a number"),
        (dict(guidance_interval=(900, 100)), "guidance_interval", "0 <= LOW <= HIGH"),
        (dict(num_frames=1), "num_frames", "num_frames must be an integer from 2 to 256"),
        (dict(num_frames=100000), "num_frames", "num_frames must be an integer from 2 to 256"),
        (dict(height=100000, width=100000), "max_pixels", "over the cap of 1,048,576"),
        (dict(fps=0), "fps", "fps must be a number from 0.1 to 120"),
        (dict(aspect="4:3"), "aspect", "unknown aspect '4:3'"),
        (dict(height=50), "height", "nearest valid sizes: 48 or 64"),
        (dict(width=-16), "width", "width must be a positive integer"),
        (dict(scheduler="heun"), "scheduler", "unknown scheduler 'heun'"),
    ],
)
def test_bad_choices_name_the_setting(choices, name, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        resolve(SHAPES_LIKE, GEOMETRY, **choices)
    assert e.value.name == name


def test_sizes_per_aspect_and_explicit_sizes():
    assert (resolve(SHAPES_LIKE, GEOMETRY, aspect="16:9").height, 80) == (48, 80)
    s = resolve(SHAPES_LIKE, GEOMETRY, aspect="9:16", width=32)
    assert (s.height, s.width) == (80, 32)  # an explicit width wins over the aspect's
    # a model that lists no sizes: its default area at the aspect, rounded to valid sizes
    plain = GenerationConfig()
    wide = resolve(plain, Geometry((256, 256), 64), aspect="16:9")
    assert (wide.height, wide.width) == (192, 320)


def test_save_load_round_trip_and_bad_files_name_themselves(tmp_path):
    path = SHAPES_LIKE.save(tmp_path)
    assert GenerationConfig.load(tmp_path) == SHAPES_LIKE
    assert GenerationConfig.load(tmp_path / "nowhere") == GenerationConfig()  # no file: defaults
    path.write_text("{not json")
    with pytest.raises(SettingError, match=f"{path} is not valid JSON"):
        GenerationConfig.load(tmp_path)
    path.write_text(json.dumps({"tau": -3}))  # read as it is; its ranges checked with a choice
    with pytest.raises(SettingError, match=f"{path}: tau must be an integer >= 0"):
        resolve(GenerationConfig.load(tmp_path), GEOMETRY)
    path.write_text(json.dumps({"steps": 30, "guidance": 2.0, "frames": 8}))  # earlier names
    old = GenerationConfig.load(tmp_path)
    assert (old.num_inference_steps, old.guidance_scale, old.num_frames) == (30, 2.0, 8)
    path.write_text(json.dumps({"guidence": 3}))
    with pytest.raises(SettingError, match="unknown key.*guidence"):
        GenerationConfig.load(tmp_path)


def test_from_training_reads_frames_fps_sizes_and_noise_from_a_config():
    cfg = SimpleNamespace(
        data=SimpleNamespace(
            fps=4.0,
            buckets=[
                Bucket("sq", height=32, width=32, frames=8),
                Bucket("wide", height=24, width=40, frames=8),
            ],
        ),
        instructions=SimpleNamespace(noise_timestep=15),
    )
    made = GenerationConfig.from_training(cfg, guidance_scale=3.0)
    assert (made.num_frames, made.fps, made.training_instruction_noise) == (8, 4.0, 15)
    assert made.sizes == {"1:1": (32, 32), "16:9": (24, 40)} and made.guidance_scale == 3.0
    with pytest.raises(SettingError, match="unknown key"):
        GenerationConfig.from_training(cfg, guidence=3.0)


def test_geometry_of_a_folder_matches_the_loaded_pipeline():
    from pixeldance import PixelDancePipeline
    from pixeldance.folders import shipped_model_path

    folder = shipped_model_path()
    pipe = PixelDancePipeline.from_pretrained(folder)
    assert Geometry.of_folder(folder) == pipe.geometry == Geometry((48, 48), 16)
    assert pipe.generation_config == GenerationConfig.load(folder)


def _count_calls(monkeypatch, owner, name, calls: list):
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


def test_generate_reads_settings_and_images_once_and_checks_once(tmp_path, monkeypatch):
    """One ``pixeldance generate``: generation.json read once, each image opened once, the
    geometry derived once, the settings range-checked once (by ``resolve``)."""
    from pathlib import Path

    import PIL.Image

    import pixeldance.generation as generation
    import pixeldance.pipeline as pipeline
    from pixeldance.cli import main

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    reads, opens, geometries, checks = [], [], [], []
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "generation.json":
            reads.append(self)
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    _count_calls(monkeypatch, PIL.Image, "open", opens)
    _count_calls(monkeypatch, Geometry, "of", geometries)
    for owner in (generation, pipeline):
        monkeypatch.setattr(owner, "resolve", _spy_of(generation.resolve, checks))
    first, last = "examples/red_circle.png", "examples/red_circle_end.png"
    argv = ["generate", "--prompt", "a red circle", "--first-frame", first, "--last-frame", last]
    assert main([*argv, "--steps", "2", "--frames", "3", "--out", str(tmp_path / "f")]) == 0
    assert len(reads) == 1, reads
    assert sorted(str(a[0]) for a in opens) == sorted([first, last]), opens
    assert len(geometries) == 1 and len(checks) == 1, (geometries, checks)


def _spy_of(function, calls: list):
    def spy(*args, **kwargs):
        calls.append(kwargs)
        return function(*args, **kwargs)

    return spy


def test_pipe_with_only_a_prompt_and_a_first_frame_makes_the_clis_video(tmp_path, monkeypatch):
    """``pipe(prompt, first_frame=...)`` takes every setting from the model's generation.json,
    as ``pixeldance generate`` does: the same frames for the same seed."""
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image

    import pixeldance.pipeline as pipeline
    from pixeldance import PixelDancePipeline
    from pixeldance.cli import main
    from pixeldance.folders import shipped_model_path
    from pixeldance.images import frames_to_uint8

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    prompt, first = "a red circle moves to the right", "examples/red_circle.png"
    cli_out = str(tmp_path / "cli")  # a folder of PNG frames
    assert main(["generate", "--prompt", prompt, "--first-frame", first, "--out", cli_out]) == 0
    cli_frames = np.stack(
        [np.asarray(Image.open(p)) for p in sorted((tmp_path / "cli").glob("*.png"))]
    )
    pipe = PixelDancePipeline.from_pretrained(shipped_model_path())
    pipe.set_progress_bar_config(disable=True)
    checks = []
    monkeypatch.setattr(pipeline, "resolve", _spy_of(pipeline.resolve, checks))
    out = pipe(
        prompt, first_frame=first, generator=torch.Generator().manual_seed(0), output_type="np"
    )
    assert len(checks) == 1  # filled from generation_config, checked once
    frames = frames_to_uint8(out.frames)
    assert frames.shape == cli_frames.shape == (16, 48, 48, 3)
    assert np.array_equal(frames, cli_frames)


def test_default_size_is_the_training_size_of_an_inflated_model(tmp_path):
    """An SD-inflated UNet has no sample_size (its geometry says 256 x 256); the model's
    generation.json lists its training sizes, main bucket first, and that is the default
    (issue 32 item 7: generate made 256 x 256)."""
    from pixeldance.generation import GenerationConfig, Geometry, resolve

    geometry = Geometry((256, 256), 64)
    config = GenerationConfig.from_dict({"sizes": {"16:9": [320, 576], "1:1": [256, 256]}})
    config.save(tmp_path)
    settings = resolve(GenerationConfig.load(tmp_path), geometry)
    assert (settings.height, settings.width) == (320, 576)
    assert (resolve(GenerationConfig(), geometry).height) == 256  # nothing listed: the UNet's
    square = resolve(GenerationConfig.load(tmp_path), geometry, aspect="1:1")
    assert (square.height, square.width) == (256, 256)
