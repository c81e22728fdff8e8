"""Configs: every YAML in configs/ (and configs/experiments/) loads into the typed config;
overrides and errors."""

from pathlib import Path

import pytest
import yaml

from pixeldance.data.buckets import Bucket, image_buckets
from pixeldance.train.config import config_from_dict, load_config
from pixeldance.train.stages import Stage, plan

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in CONFIGS])
def test_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.buckets and all(isinstance(b, Bucket) for b in cfg.data.buckets)
    # saved as YAML (a run's config.yaml) and read back, it is the same config
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert plan(cfg)[-1].end == cfg.optim.max_steps  # its stages (if any) fit the run
    assert cfg.instructions.last_frame_drop_prob == 0.25
    if path.name.startswith("shapes"):  # the shapes model's step is matched to its latents
        assert (
            cfg.instructions.noise_timestep
            == load_config(CONFIG_DIR / "shapes.yaml").instructions.noise_timestep
        )
    else:
        assert cfg.instructions.noise_timestep == 100


def test_shapes_instruction_noise_has_the_papers_signal_to_noise_ratio():
    """The paper noises instructions to step 100 on unit-variance latents (SNR about 8.5);
    the shapes config's step must give the same SNR on its codec latents, measured here on
    rendered Dancing Shapes frames."""
    import numpy as np
    import torch
    from PIL import Image

    from pixeldance.data.shapes import render_clip, sample_clip
    from pixeldance.diffusion import make_training_scheduler, snr
    from pixeldance.encoders import encode_frames
    from pixeldance.images import to_model_range
    from pixeldance.train.setup import _load_vae

    cfg = load_config(CONFIG_DIR / "shapes.yaml")
    frames = []
    for seed in range(6):
        video = render_clip(sample_clip(seed, aspect="1:1"))[::12]
        frames += [
            np.asarray(Image.fromarray(f).resize((48, 48), Image.Resampling.BOX)) for f in video
        ]
    x = to_model_range(torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)[None])
    var = float(encode_frames(_load_vae(cfg), x).var())  # (1, C, F, h, w) latents, scaled
    scheduler = make_training_scheduler(cfg.model.prediction_type)

    def instruction_snr(step: int, variance: float) -> float:
        return variance * float(snr(scheduler, torch.tensor(step)))

    paper = instruction_snr(100, 1.0)
    assert 8.0 < paper < 9.0
    ours = instruction_snr(cfg.instructions.noise_timestep, var)
    assert 0.8 * paper < ours < 1.25 * paper, (var, ours, paper)
    assert instruction_snr(100, var) < 0.25 * paper  # step 100 itself would drown these latents


def test_paper_values_in_gpu_configs():
    cfg = load_config(CONFIG_DIR / "sd15_webvid.yaml")
    assert cfg.data.fps == 4.0 and cfg.data.image_every == 8 and cfg.optim.max_steps == 200_000
    (bucket,) = cfg.data.buckets
    assert (bucket.height, bucket.width, bucket.frames) == (256, 256, 16)


def test_overrides_and_unknown_keys(tmp_path):
    cfg = load_config(
        None,
        [
            "optim.lr=3e-4",
            "data.buckets=[{name: a, height: 8, width: 8}]",
            "run.trackers=[tensorboard, wandb]",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.run.trackers == ["tensorboard", "wandb"]
    with pytest.raises(ValueError, match="unknown config keys in optim"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


STAGED = "data.stages=[{steps: 3, buckets: [{name: s16, height: 16, width: 16, frames: 2}]}]"


def test_buckets_and_stages_are_parsed_once_into_dataclasses():
    cfg = load_config(None, ["data.buckets=[{name: a, height: 8, width: 16}]", STAGED])
    assert cfg.data.buckets == [Bucket("a", 8, 16)]  # frames and batch_size: the defaults
    (stage,) = cfg.data.stages
    assert isinstance(stage, Stage) and stage.name == "stage1" and stage.image_every is None
    assert stage.buckets == (Bucket("s16", 16, 16, frames=2),)
    # saved back in the shape a YAML config has: a stage without its own image_every stays so
    saved = cfg.to_dict()["data"]
    assert saved["buckets"] == [dict(name="a", height=8, width=16, frames=16, batch_size=1)]
    assert saved["stages"] == [
        dict(
            name="stage1",
            steps=3,
            buckets=[dict(name="s16", height=16, width=16, frames=2, batch_size=1)],
        )
    ]
    assert plan(cfg)[0].image_every == cfg.data.image_every  # inherited when the plan is made


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.buckets=[{name: a, height: 8}]", r"data\.buckets\[0\]\.width is missing"),
        (
            "data.buckets=[{name: a, height: 8, width: 8}, {name: b, height: 0, width: 8}]",
            r"data\.buckets\[1\]\.height must be a positive integer, got 0",
        ),
        (
            "data.buckets=[{name: a, height: 8, width: 8, frame: 4}]",
            r"data\.buckets\[0\] has unknown keys \['frame'\]",
        ),
        ("data.buckets=[{name: a, height: 8, width: 8.5}]", r"data\.buckets\[0\]\.width"),
        ("data.buckets=[]", r"data\.buckets: at least one bucket"),
        ("data.buckets={name: a}", r"data\.buckets must be a list"),
        (
            "data.buckets=[{name: a, height: 8, width: 8}, {name: a, height: 8, width: 16}]",
            "bucket names must be unique",
        ),
        (
            "data.stages=[{steps: 2, buckets: [{name: s, height: 8, width: 8, batch_size: -1}]}]",
            r"data\.stages\[0\]\.buckets\[0\]\.batch_size must be a positive integer",
        ),
        (
            "data.stages=[{steps: 2, buckets: [{name: s, height: 8, width: 8}], image_every: x}]",
            r"data\.stages\[0\]\.image_every must be an integer >= 0",
        ),
        ("data.stages=[3]", r"data\.stages\[0\] must be a mapping"),
    ],
)
def test_a_bad_bucket_or_stage_is_refused_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_image_buckets_are_one_frame_buckets_of_the_same_sizes():
    buckets = [Bucket("a", 8, 16, frames=4, batch_size=2), Bucket("b", 16, 8, 4, 3)]
    assert image_buckets(buckets) == [Bucket("a", 8, 16, 1, 2), Bucket("b", 16, 8, 1, 3)]
    assert image_buckets(buckets, 5) == [Bucket("a", 8, 16, 1, 5), Bucket("b", 16, 8, 1, 5)]


def test_a_run_config_saved_by_an_earlier_version_still_loads(tmp_path):
    """Runs used to save ``run.inject_nan_steps: []`` (a testing aid, now gone) in their
    config.yaml; such a file loads, and a non-empty value is refused by name."""
    saved = tmp_path / "config.yaml"
    saved.write_text("run:\n  seed: 3\n  inject_nan_steps: []\n")
    assert load_config(saved).run.seed == 3
    saved.write_text("run:\n  inject_nan_steps: [1]\n")
    with pytest.raises(ValueError, match=r"run\.inject_nan_steps is no longer a setting"):
        load_config(saved)
