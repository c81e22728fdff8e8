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
    steps=50, guidance=15.0, guidance_interval=(700, 1000), tau=25, frames=16, fps=4.0,
    sizes={"1:1": (48, 48), "16:9": (48, 80), "9:16": (80, 48)},
)  # fmt: skip


def test_defaults_resolve_to_the_models_own_settings():
    s = resolve(SHAPES_LIKE, GEOMETRY)
    assert (s.steps, s.guidance, s.guidance_interval, s.tau) == (50, 15.0, (700, 1000), 25)
    assert (s.frames, s.fps, s.height, s.width) == (16, 4.0, 48, 48)
    kw = s.pipeline_kwargs()
    assert kw["num_inference_steps"] == 50 and kw["num_frames"] == 16 and kw["tau"] == 25


def test_user_choices_win_and_the_default_tau_is_capped_at_the_steps():
    s = resolve(SHAPES_LIKE, GEOMETRY, steps=8, guidance=1.0, guidance_interval=(0, 500))
    assert (s.steps, s.tau, s.guidance, s.guidance_interval) == (8, 8, 1.0, (0, 500))
    assert resolve(SHAPES_LIKE, GEOMETRY, steps=8, tau=3).tau == 3


@pytest.mark.parametrize(
    "choices, name, message",
    [
        (dict(steps=0), "steps", "steps must be an integer from 1 to 1000"),
        (dict(steps=5000), "steps", "steps must be an integer from 1 to 1000"),
        (dict(steps=10, tau=11), "tau", "tau must be between 0 and the steps (10), got 11"),
        (dict(tau=-1), "tau", "tau must be between 0"),
        (dict(guidance=-2.0), "guidance", "guidance must be a number >= 0"),
        (dict(guidance=float("nan")), "guidance", "guidance must be a number"),
        (dict(guidance_interval=(900, 100)), "guidance_interval", "0 <= LOW <= HIGH"),
        (dict(frames=1), "frames", "frames must be an integer from 2 to 256"),
        (dict(frames=100000), "frames", "frames must be an integer from 2 to 256"),
        (dict(height=100000, width=100000), "max_pixels", "over the cap of 1,048,576"),
        (dict(fps=0), "fps", "fps must be a number > 0"),
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
    path.write_text(json.dumps({"tau": -3}))
    with pytest.raises(SettingError, match=f"{path}: tau must be an integer >= 0"):
        GenerationConfig.load(tmp_path)
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
    made = GenerationConfig.from_training(cfg, guidance=3.0)
    assert (made.frames, made.fps, made.training_instruction_noise) == (8, 4.0, 15)
    assert made.sizes == {"1:1": (32, 32), "16:9": (24, 40)} and made.guidance == 3.0
    with pytest.raises(SettingError, match="unknown key"):
        GenerationConfig.from_training(cfg, guidence=3.0)


def test_geometry_of_a_folder_matches_the_loaded_pipeline():
    from pixeldance import PixelDancePipeline
    from pixeldance.folders import shipped_model_path

    folder = shipped_model_path()
    pipe = PixelDancePipeline.from_pretrained(folder)
    assert Geometry.of_folder(folder) == pipe.geometry == Geometry((48, 48), 16)
    assert pipe.generation_config == GenerationConfig.load(folder)
