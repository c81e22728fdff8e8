"""``pixeldance eval`` end to end with tiny extractors: scoring a folder of Dancing Shapes
clips, generating over a manifest, the two presets on tiny stand-ins, one-line errors."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from evaluation_helpers import (
    TinyImageNet,
    TinyVideoClassifier,
    TinyVideoNet,
    save_tiny_clip,
    save_torchscript,
)
from helpers import tiny_pipeline
from pixeldance.cli import main
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.evaluation.weights import I3D, sha256_of
from pixeldance.files import write_mp4
from pixeldance.generation import GenerationConfig


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Tiny weights files, a tiny CLIP folder, a tiny pipeline, two small shapes datasets."""
    root = tmp_path_factory.mktemp("kit")
    tiny_pipeline().save_pretrained(root / "model")
    GenerationConfig(guidance_interval=(700, 1000)).save(root / "model")
    return {
        "i3d": save_torchscript(TinyVideoNet(), root / "i3d.pt"),
        "inception": save_torchscript(TinyImageNet(), root / "inception.pt"),
        "c3d": save_torchscript(TinyVideoClassifier(), root / "c3d_ucf101.pt"),
        "clip": save_tiny_clip(root / "clip"),
        "model": root / "model",
        "generated": write_dataset(root / "gen", 2, seed=5, num_images=0, progress=False),
        "real": write_dataset(root / "real", 2, seed=6, num_images=0, progress=False),
    }


def weights(kit, tmp_path):
    return [
        "--i3d", str(kit["i3d"]), "--inception", str(kit["inception"]), "--c3d", str(kit["c3d"]), "--clip",
        str(kit["clip"]), "--trust-weights", "--cache-dir", str(tmp_path / "cache"),
        "--device", "cpu",
    ]  # fmt: skip


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main(["eval", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_eval_scores_a_folder_of_shapes_clips_and_writes_the_reports(kit, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["--videos", kit["generated"] / "manifest.csv", "--references"]
    args += [kit["real"] / "videos", "--out", out, "--is-splits", "2", *weights(kit, tmp_path)]
    rc, printed, err = run(capsys, *args)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert {"fvd", "fid", "is", "clipsim", "flicker"} == set(report["scores"])
    fvd = report["scores"]["fvd"]["protocol"]
    assert fvd["sha256"] == sha256_of(kit["i3d"])
    assert fvd["checksum_verified"] is False and fvd["frames"] == 16
    assert fvd["generated_samples"] == 2 and fvd["reference_samples"] == 2
    assert "uint8 frames at their own size" in fvd["preprocess"] and "rescale=True" in fvd["call"]
    assert fvd["reference_statistics_reused"] is False
    assert report["protocol"]["pixeldance_version"] and report["protocol"]["frames"] == 16
    assert any("not comparable" in w for w in report["warnings"])
    md = (out / "report.md").read_text()
    assert "| FVD |" in md and fvd["sha256"] in md and "## Common protocol" in md
    assert "FVD: " in printed and "protocol: extractor: I3D" in printed and "report.md" in printed
    rc, _, _ = run(capsys, *args)  # again: the reference statistics come from the cache
    again = json.loads((out / "report.json").read_text())
    assert again["scores"]["fvd"]["protocol"]["reference_statistics_reused"] is True
    assert again["scores"]["fvd"]["value"] == pytest.approx(report["scores"]["fvd"]["value"])


def test_a_missing_weights_file_ends_eval_with_one_line(kit, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIXELDANCE_EVAL_WEIGHTS", str(tmp_path / "none"))
    rc, _, err = run(
        capsys, "--videos", kit["generated"] / "videos", "--references", kit["real"] / "videos",
        "--metrics", "fvd", "--out", tmp_path / "r",
    )  # fmt: skip
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("pixeldance eval: error: ") and I3D.sha256 in err
    assert not (tmp_path / "r" / "report.json").exists()


def _images(folder, n, size=(40, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"first{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_eval_generates_over_a_manifest_then_scores_and_rescoring_agrees(kit, tmp_path, capsys):
    refs = sorted((kit["real"] / "videos").rglob("*.mp4"))
    firsts = _images(tmp_path / "img", 2)
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "first_frame", "reference"])
        w.writerows([["a red circle", firsts[0], refs[0]], ["a blue square", firsts[1], refs[1]]])
    out = tmp_path / "gen"
    gen = ["--model", kit["model"], "--steps", "2", "--height", "32", "--width", "32"]
    metrics = ["--metrics", "fvd,clipsim,flicker,fidelity,psnr,ssim", "--frames", "10"]
    rc, _, err = run(
        capsys, "--manifest", manifest, "--out", out, *gen, *metrics, *weights(kit, tmp_path)
    )
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert sorted((out / "videos").glob("*.mp4")) == [
        out / "videos/00000.mp4",
        out / "videos/00001.mp4",
    ]
    assert {"frame0_psnr", "frame0_ssim", "clip_psnr", "clip_ssim", "fvd"} <= set(report["scores"])
    p = report["protocol"]
    assert (
        p["generation_settings"]["num_inference_steps"] == 2
        and p["generation_settings"]["height"] == 32
    )
    assert p["seed"].startswith("0 ") and p["first_frame_instructions"].startswith("manifest:")
    # the generated folder scores to the same numbers on its own
    rc, _, err = run(
        capsys,
        "--videos",
        out / "generated.csv",
        "--out",
        tmp_path / "again",
        *metrics,
        *weights(kit, tmp_path),
    )
    assert rc == 0, err
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    # rescoring still says what made the videos, and how they were encoded
    assert again["protocol"]["generated_with"]["settings"]["num_inference_steps"] == 2
    assert again["protocol"]["video_encode"].startswith("h264, yuv420p")
    assert "CRF 18" in again["protocol"]["video_encode"]
    assert again["comparable"]["fvd"] == "no, because no --preset: not one of the paper's setups"
    assert {k: v["value"] for k, v in again["scores"].items()} == {
        k: v["value"] for k, v in report["scores"].items()
    }
    # a rerun with the same settings keeps the clips; other settings are refused
    made = [p.stat().st_mtime_ns for p in sorted((out / "videos").glob("*.mp4"))]
    rc, _, err = run(
        capsys, "--manifest", manifest, "--out", out, *gen, *metrics, *weights(kit, tmp_path)
    )
    assert rc == 0, err
    assert [p.stat().st_mtime_ns for p in sorted((out / "videos").glob("*.mp4"))] == made
    rc, _, err = run(
        capsys,
        "--manifest",
        manifest,
        "--out",
        out,
        *gen[:-4],
        "--height",
        "16",
        "--width",
        "16",
        *metrics,
        *weights(kit, tmp_path),
    )
    assert rc == 2 and "other settings" in err


def test_ucf101_preset_prompts_class_names_and_prints_the_papers_numbers(kit, tmp_path, capsys):
    videos = tmp_path / "UCF-101"
    rng = np.random.default_rng(1)
    for name in ("v_ApplyEyeMakeup_g01_c01", "v_YoYo_g02_c03"):
        write_mp4(
            rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), videos / f"{name}.mp4", fps=8
        )
    out = tmp_path / "ucf"
    rc, printed, err = run(
        capsys, "--preset", "ucf101", "--manifest", videos, "--samples", "3", "--model",
        kit["model"], "--steps", "2", "--height", "32", "--width", "32", "--frames", "10",
        "--out", out, *weights(kit, tmp_path), "--is-splits", "1", "--first-frame", "reference",
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert set(report["scores"]) == {"fvd", "video_is", "fid"}
    assert report["paper"] == {"fvd": 242.8, "video_is": 42.10, "fid": 49.36}
    with open(out / "generated.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["prompt"] for r in rows] == ["apply eye makeup", "apply eye makeup", "yo yo"]
    first = np.asarray(Image.open(rows[2]["first_frame"]))  # frame 0 of the YoYo video
    assert rows[2]["first_frame"].endswith("00002_first.png") and first.shape == (32, 32, 3)
    assert "[paper: 242.80]" in printed and "ucf101 preset" in (out / "report.md").read_text()


def test_msrvtt_preset_reads_the_annotation_file_and_flags_a_partial_run(kit, tmp_path, capsys):
    refs = sorted((kit["real"] / "videos").rglob("*.mp4"))
    root = tmp_path / "TestVideo"
    root.mkdir()
    for i, r in enumerate(refs):
        (root / f"video{7010 + i}.mp4").write_bytes(r.read_bytes())
    notes = {
        "videos": [
            {"video_id": "video7010", "split": "test"},
            {"video_id": "video7011", "split": "test"},
            {"video_id": "video1", "split": "train"},
        ],
        "sentences": [
            {"video_id": "video7010", "sen_id": 2, "caption": "second caption"},
            {"video_id": "video7010", "sen_id": 1, "caption": "a purple triangle glides"},
            {"video_id": "video7011", "sen_id": 3, "caption": "an orange diamond bounces"},
            {"video_id": "video1", "sen_id": 0, "caption": "a training video"},
        ],
    }
    (tmp_path / "test_videodatainfo.json").write_text(json.dumps(notes))
    out = tmp_path / "msrvtt"
    rc, printed, err = run(
        capsys, "--preset", "msrvtt", "--manifest", tmp_path / "test_videodatainfo.json",
        "--root", root, "--model", kit["model"], "--steps", "2", "--height", "32", "--width",
        "32", "--frames", "10", "--out", out, *weights(kit, tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert set(report["scores"]) == {"fvd", "clipsim"}
    assert report["paper"] == {"fvd": 381.0, "clipsim": 0.3125}
    assert any("2990 samples" in w for w in report["warnings"])
    with open(out / "generated.csv") as f:
        rows = list(csv.DictReader(f))
    # one caption per video drawn at random with the seed: the paper's "randomly select one
    # caption per video"; the draw is written out here with numpy
    rng = np.random.default_rng(0)
    options = [["a purple triangle glides", "second caption"], ["an orange diamond bounces"]]
    assert [r["prompt"] for r in rows] == [o[int(rng.integers(len(o)))] for o in options]
    assert rows[0]["reference"].endswith("video7010.mp4")
    assert report["protocol"]["captions"].startswith("one per video, drawn at random")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "x"], "give --manifest"),
        (
            ["--videos", "nowhere", "--out", "x"],
            "not found: nowhere (give a folder of videos or a CSV/JSONL manifest)",
        ),
        (["--videos", ".", "--metrics", "fvd,bleu", "--out", "x"], "unknown metric(s) bleu"),
        (["--videos", ".", "--samples", "0", "--out", "x"], "--samples must be at least 1"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, *args)
    assert rc == 2 and err.count("\n") == 1 and message in err


def test_ucf101_preset_warns_off_10000_samples_and_off_t2i_first_frames(kit, tmp_path, capsys):
    videos = tmp_path / "UCF-101"
    rng = np.random.default_rng(2)
    for name in ("v_YoYo_g01_c01", "v_YoYo_g02_c01", "v_Surfing_g01_c01"):
        write_mp4(
            rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), videos / f"{name}.mp4", fps=10
        )
    out = tmp_path / "ucf"
    rc, _, err = run(
        capsys, "--preset", "ucf101", "--videos", videos, "--references", videos,
        "--metrics", "fvd", "--frames", "10", "--reference-clips", "fvd2048_16f",
        "--reference-count", "12", "--out", out, *weights(kit, tmp_path),
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert any("has 10000 samples; this run has 3" in w for w in report["warnings"])
    fvd = report["scores"]["fvd"]["protocol"]
    assert fvd["reference_samples"] == 12  # random clips, more than the 3 videos
    assert "default_rng(0)" in fvd["reference_sampling"] and "not 2048" in fvd["reference_sampling"]
    assert fvd["reference_sampling"].endswith("rates used: 10 fps")  # native, as read
