"""Configs: every YAML in configs/ loads into the typed config; overrides and errors."""

from pathlib import Path

import pytest

from pixeldance.data.buckets import parse_buckets
from pixeldance.train.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_configs_load(path):
    cfg = load_config(path)
    assert parse_buckets(cfg.data.buckets)
    assert cfg.instructions.last_frame_drop_prob == 0.25 and cfg.instructions.noise_timestep == 100


def test_paper_values_in_gpu_configs():
    cfg = load_config(Path(CONFIGS[0]).parent / "sd15_webvid.yaml")
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
