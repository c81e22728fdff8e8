"""Configs: every YAML in configs/ (and configs/experiments/) loads into the typed config;
overrides and errors."""

from pathlib import Path

import pytest

from pixeldance.data.buckets import parse_buckets
from pixeldance.train.config import load_config
from pixeldance.train.stages import plan

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in CONFIGS])
def test_configs_load(path):
    cfg = load_config(path)
    assert parse_buckets(cfg.data.buckets)
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
    (bucket,) = parse_buckets(cfg.data.buckets)
    assert (bucket.height, bucket.width, bucket.frames) == (256, 256, 16)


def test_overrides_and_unknown_keys(tmp_path):
    cfg = load_config(
        None,
        [
            "optim.lr=3e-4",
            "data.buckets=[{name: a, height: 8, width: 8}]",
            "run.inject_nan_steps=[1, 2]",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.run.inject_nan_steps == [1, 2]
    with pytest.raises(ValueError, match="unknown config keys in optim"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
