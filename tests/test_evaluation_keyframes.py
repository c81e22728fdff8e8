"""Keyframe adherence: the scores against numpy / scikit-image written here, the motion that
keeps a still clip from scoring well, and the eval path with a tau sweep on shapes clips."""

import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from evaluation_helpers import save_tiny_clip, tiny_text_image_features
from helpers import tiny_pipeline
from pixeldance.cli import main
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.evaluation.adherence import KeyframeAccumulator, keyframe_scores, pinned_motion
from pixeldance.generation import GenerationConfig


def _clip(seed=0, frames=6, size=24):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def test_keyframe_scores_match_numpy_and_scikit_image(tmp_path):
    video = _clip()
    first = np.clip(video[0] + np.random.default_rng(1).normal(0, 30, video[0].shape), 0, 255)
    first = first.astype(np.uint8)
    last = video[-1].copy()
    embed = tiny_text_image_features(save_tiny_clip(tmp_path / "clip")).image_embeddings
    s = keyframe_scores(video, {0: first, -1: last}, embed)
    mse = np.mean((video[0].astype(float) - first.astype(float)) ** 2)
    assert s[0]["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-12)
    sk = structural_similarity(
        video[0], first, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=-1,
    )  # fmt: skip
    assert abs(s[0]["ssim"] - sk) < 1e-4
    assert s[-1]["psnr"] == 100.0 and s[-1]["clip_cosine"] == pytest.approx(1.0, abs=1e-6)
    a, b = embed(video[:1])[0], embed(first[None])[0]
    assert s[0]["clip_cosine"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_pinned_motion_is_zero_for_a_still_clip_and_the_mean_step_otherwise():
    video = _clip(frames=8)
    still = np.repeat(video[:1], 8, axis=0)
    assert pinned_motion(still, [0, -1]) == 0.0
    steps = np.abs(np.diff(video[2:6].astype(float), axis=0)).mean()
    assert pinned_motion(video, [2, 5]) == pytest.approx(steps, rel=1e-6)
    # a copy of the first frame holds frame 0 perfectly, and its motion says it stands still
    acc = KeyframeAccumulator()
    acc.add(still, {0: video[0], -1: video[-1]}, reference=video)
    out = acc.entries()
    assert out["keyframe_motion"]["value"] == 0 and out["keyframe_reference_motion"]["value"] > 50
    assert out["keyframe_psnr"]["protocol"]["by_index"]["first psnr"] == 100.0


def test_eval_scores_keyframes_and_sweeps_tau_on_shapes_clips(tmp_path, capsys):
    tiny_pipeline().save_pretrained(tmp_path / "model")
    GenerationConfig(guidance_interval=(700, 1000)).save(tmp_path / "model")
    real = write_dataset(tmp_path / "real", 2, seed=6, num_images=0, progress=False)
    out = tmp_path / "kf"
    rc = main([
        "eval", "--manifest", str(real / "manifest.csv"), "--model", str(tmp_path / "model"),
        "--first-frame", "reference", "--last-frame", "reference", "--tau-sweep", "0,2",
        "--metrics", "keyframes", "--clip", str(save_tiny_clip(tmp_path / "clip")),
        "--steps", "2", "--height", "32", "--width", "32", "--frames", "10",
        "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    report = json.loads((out / "report.json").read_text())
    keys = {"keyframe_psnr", "keyframe_ssim", "keyframe_clip_cosine", "keyframe_motion"}
    assert keys | {"keyframe_reference_motion"} == set(report["scores"])
    by_index = report["scores"]["keyframe_psnr"]["protocol"]["by_index"]
    assert set(by_index) == {"first psnr", "last psnr"}
    assert list(report["tau_sweep"]) == ["0", "2"] and report["tau_sweep"]["2"]["clips"] == 2
    assert len(list((out / "tau_sweep" / "tau2" / "videos").glob("*.mp4"))) == 2
    assert "## Last frame by tau" in (out / "report.md").read_text()
    assert "tau 2: last frame" in printed.out


def test_a_bad_tau_sweep_is_one_line(tmp_path, capsys):
    rc = main(
        ["eval", "--manifest", str(tmp_path), "--tau-sweep", "a,b", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--tau-sweep takes comma-separated" in err
