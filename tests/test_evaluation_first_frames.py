"""The paper's first-frame protocol: first frames made from the prompt by a text-to-image
model (a tiny random Stable Diffusion built here) or by the model's own image mode, cached,
conditioned on and written in the report."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from evaluation_helpers import save_tiny_clip, save_tiny_stable_diffusion
from helpers import tiny_pipeline
from pixeldance.cli import main
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.evaluation.first_frames import TextToImage
from pixeldance.generation import GenerationConfig


def _kit(root):
    tiny_pipeline().save_pretrained(root / "model")
    GenerationConfig(guidance_interval=(700, 1000)).save(root / "model")
    real = write_dataset(root / "real", 2, seed=6, num_images=0, progress=False)
    return root / "model", real / "manifest.csv", save_tiny_clip(root / "clip")


def _run(capsys, *args):
    rc = main(["eval", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.err


GEN = ["--steps", "2", "--height", "32", "--width", "32", "--frames", "10", "--device", "cpu"]


def test_t2i_first_frames_are_made_from_the_prompt_cached_and_recorded(tmp_path, capsys):
    model, manifest, clip = _kit(tmp_path)
    sd = save_tiny_stable_diffusion(tmp_path / "sd")
    out = tmp_path / "t2i"
    args = ["--manifest", manifest, "--model", model, "--first-frame", "t2i", "--t2i", sd]
    args += ["--t2i-steps", "2", "--metrics", "fidelity,clipsim", "--clip", clip, "--out", out]
    rc, err = _run(capsys, *args, *GEN)
    assert rc == 0, err
    with open(out / "generated.csv") as f:
        rows = list(csv.DictReader(f))
    firsts = sorted((out / "first_frames").glob("*.png"))
    assert [r["first_frame"] for r in rows] == [str(p.resolve()) for p in firsts]
    assert len(firsts) == 2
    # the cached image is the text-to-image model's output for that prompt and seed (seed + i)
    again = TextToImage(sd, steps=2)(rows[1]["prompt"], 1)
    np.testing.assert_array_equal(np.asarray(Image.open(firsts[1])), again)
    report = json.loads((out / "report.json").read_text())
    p = report["protocol"]
    assert p["first_frame_instructions"].startswith("t2i: made from each prompt")
    assert p["t2i_model"] == str(sd.resolve()) and p["t2i_steps"] == 2
    assert p["t2i_pipeline"] == "StableDiffusionPipeline" and "seed + i" in p["first_frame_seeds"]
    assert "frame0_psnr" in report["scores"]  # scored against the made first frame
    # a rerun reuses the cached first frames and the clips
    stamp = firsts[0].stat().st_mtime_ns
    rc, err = _run(capsys, *args, *GEN)
    assert rc == 0, err
    assert firsts[0].stat().st_mtime_ns == stamp


def test_self_first_frames_come_from_the_models_image_mode(tmp_path, capsys):
    model, manifest, clip = _kit(tmp_path)
    out = tmp_path / "self"
    args = ["--manifest", manifest, "--model", model, "--first-frame", "self"]
    rc, err = _run(capsys, *args, "--metrics", "fidelity", "--out", out, *GEN)
    assert rc == 0, err
    from pixeldance.evaluation.first_frames import SelfImage
    from pixeldance.pipeline import PixelDancePipeline

    pipe = PixelDancePipeline.from_pretrained(model)
    settings = pipe.generation_settings(num_inference_steps=2, height=32, width=32, num_frames=10)
    with open(out / "generated.csv") as f:
        rows = list(csv.DictReader(f))
    made = SelfImage(pipe, settings)(rows[0]["prompt"], 0)
    assert made.shape == (32, 32, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(rows[0]["first_frame"])), made)
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["first_frame_instructions"].startswith("self: made from each")
    assert report["protocol"]["sampler"]


def test_t2i_without_a_folder_and_a_non_pipeline_folder_are_one_line_errors(tmp_path, capsys):
    model, manifest, _ = _kit(tmp_path)
    base = ["--manifest", manifest, "--model", model, "--metrics", "flicker", *GEN]
    rc, err = _run(capsys, *base, "--first-frame", "t2i", "--out", tmp_path / "a")
    assert rc == 2 and err.count("\n") == 1 and "needs --t2i FOLDER" in err
    rc, err = _run(
        capsys, *base, "--first-frame", "t2i", "--t2i", tmp_path, "--out", tmp_path / "b"
    )
    assert rc == 2 and err.count("\n") == 1 and "no model_index.json" in err
    assert not (tmp_path / "b" / "report.json").exists()


def test_long_videos_are_scored_chunk_by_chunk_with_a_table_and_a_plot(tmp_path, capsys):
    from pixeldance.evaluation.inputs import read_clip
    from pixeldance.evaluation.metrics import flicker

    model, manifest, _ = _kit(tmp_path)
    out = tmp_path / "long"
    gen = ["--steps", "2", "--height", "32", "--width", "32", "--device", "cpu"]
    args = ["--manifest", manifest, "--model", model, "--long", "24", "--frames", "8"]
    rc, err = _run(capsys, *args, "--metrics", "flicker", "--out", out, *gen)
    assert rc == 0, err
    # 24 frames from chained 8-frame clips: ceil(23 / 7) = 4 clips, cut to 24, 3 chunks of 8
    whole = read_clip(out / "long" / "videos" / "00001.mp4", 24)
    assert len(whole) == 24
    report = json.loads((out / "report.json").read_text())
    rows = report["long"]["chunks"]
    assert [r["frames"] for r in rows] == ["0-7", "8-15", "16-23"]
    for k, row in enumerate(rows):  # each chunk's flicker, recomputed from its files here
        chunk = [
            read_clip(out / "long" / "chunks" / f"{k:03d}" / f"{i:05d}.mp4", 8) for i in (0, 1)
        ]
        assert row["flicker"] == pytest.approx(np.mean([flicker(c) for c in chunk]), rel=1e-6)
    assert "4 clips of 8 chained" in report["protocol"]["long"]
    assert (out / "long.png").stat().st_size > 1000 and "| 2 | 16-23 |" in (
        out / "long.md"
    ).read_text()


def test_text_only_from_a_model_trained_with_every_first_frame_is_warned(tmp_path, capsys):
    model, manifest, _ = _kit(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    model.rename(run / "pipeline")
    (run / "config.yaml").write_text("instructions:\n  first_frame_drop_prob: 0.0\n")
    out = tmp_path / "text"
    args = ["--manifest", manifest, "--model", run / "pipeline", "--first-frame", "none"]
    rc, err = _run(capsys, *args, "--metrics", "flicker", "--out", out, *GEN)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["training_first_frame_drop_prob"] == 0.0
    assert any("out of distribution" in w for w in report["warnings"])
