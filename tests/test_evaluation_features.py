"""Extractors behind one interface, weights from local files only, and the scoring plumbing
(FVD, FID, IS, CLIPSIM) with tiny random extractors built here."""

import os
import socket

import numpy as np
import pytest

from evaluation_helpers import (
    CLASSES,
    IMAGE_DIM,
    VIDEO_DIM,
    TinyImageNet,
    TinyVideoNet,
    random_clip,
    save_tiny_clip,
    save_torchscript,
    tiny_frame_features,
    tiny_text_image_features,
    tiny_video_features,
)
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.evaluation import Extractors, ScoreConfig, WeightsChecksumError, WeightsNotFound
from pixeldance.evaluation.inputs import Item, list_videos, read_manifest
from pixeldance.evaluation.score import choose_metrics
from pixeldance.evaluation.score import score as score_videos
from pixeldance.evaluation.weights import (
    I3D,
    INCEPTION,
    load_clip,
    load_i3d,
    load_inception,
    sha256_of,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Four Dancing Shapes clips (mp4 + manifest): two 'generated', two 'references'."""
    return write_dataset(tmp_path_factory.mktemp("shapes"), 4, seed=5, num_images=0, progress=False)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


# ---------------------------------------------------------------- extractors
def test_video_features_preprocess_clips_of_any_size_to_the_protocol():
    ext = tiny_video_features(size=16, frames=8)
    x = ext.preprocess(random_clip(10, 24, 40))
    assert x.shape == (3, 8, 16, 16) and x.min() >= -1 and x.max() <= 1
    clips = [random_clip(10, 24, 40, seed=1), random_clip(8, 32, 32, seed=2)]
    feats = ext(clips)
    assert feats.shape == (2, VIDEO_DIM)
    np.testing.assert_array_equal(feats, ext(clips))  # deterministic
    with pytest.raises(ValueError, match="needs 8"):
        ext([random_clip(5)])
    p = ext.protocol()
    assert p["frames"] == 8 and "16x16" in p["preprocess"] and "[-1, 1]" in p["preprocess"]


def test_frame_features_give_features_and_probabilities():
    ext = tiny_frame_features()
    frames = random_clip(5, 20, 28)
    assert ext.features(frames).shape == (5, IMAGE_DIM)
    probs = ext.probabilities(frames)
    assert probs.shape == (5, CLASSES) and np.allclose(probs.sum(axis=1), 1)


def test_text_image_features_embed_frames_and_texts_in_one_space(clip_folder):
    ext = tiny_text_image_features(clip_folder)
    im = ext.image_embeddings(random_clip(3, 40, 50))
    tx = ext.text_embeddings(["a red circle", "a blue square moves left"])
    assert im.shape == (3, 8) and tx.shape == (2, 8)
    np.testing.assert_array_equal(
        tx, ext.text_embeddings(["a red circle", "a blue square moves left"])
    )
    assert not np.allclose(tx[0], tx[1])


def test_clip_loads_from_a_local_folder_without_the_network(clip_folder, no_network):
    ext = load_clip(str(clip_folder))
    assert ext.checksum == sha256_of(clip_folder / "model.safetensors") and ext.size == 32
    assert ext.image_embeddings(random_clip(2)).shape == (2, 8)
    assert not no_network


# ---------------------------------------------------------------- weights files
def test_a_missing_weights_file_names_the_file_its_checksum_and_where_to_put_it(
    tmp_path, monkeypatch, no_network
):
    monkeypatch.setenv("PIXELDANCE_EVAL_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(WeightsNotFound) as err:
        load_i3d()
    message = str(err.value)
    assert I3D.filename in message and I3D.sha256 in message
    assert str(tmp_path / "weights" / I3D.filename) in message and "--i3d" in message
    with pytest.raises(WeightsNotFound, match=INCEPTION.sha256):
        load_inception(tmp_path / "elsewhere.pt")
    assert not no_network


def test_a_clip_model_missing_from_the_cache_is_not_downloaded(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(WeightsNotFound, match="not in the local Hugging Face cache"):
        load_clip("someone/some-clip-model")
    assert not no_network


def test_weights_with_another_checksum_are_refused_unless_trusted(tmp_path, capsys):
    path = save_torchscript(TinyVideoNet(), tmp_path / "i3d.pt")
    with pytest.raises(WeightsChecksumError, match="--trust-weights"):
        load_i3d(path)
    ext = load_i3d(path, trust=True)
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and sha256_of(path) in err and I3D.sha256 in err
    assert ext.verified is False and ext.checksum == sha256_of(path)
    assert ext([random_clip(16, 32, 32)]).shape == (1, VIDEO_DIM)
    inception = load_inception(save_torchscript(TinyImageNet(), tmp_path / "inc.pt"), trust=True)
    assert inception.probabilities(random_clip(2)).shape == (2, CLASSES)


def test_i3d_needs_nine_frames_at_least(tmp_path):
    with pytest.raises(ValueError, match="at least 9 frames"):
        load_i3d(tmp_path / "x.pt", frames=8)


# ---------------------------------------------------------------- scoring plumbing
class Counting:
    """An extractor wrapper that counts the clips / frames it is given."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, clips):
        self.calls += len(clips)
        return self.inner(clips)

    def features(self, frames):
        self.calls += len(frames)
        return self.inner.features(frames)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _split(shapes):
    videos = list_videos(shapes / "videos")
    items = [it for it in read_manifest(shapes / "manifest.csv") if it.video in videos[:2]]
    return items, videos[2:]


def test_scores_carry_their_protocol_and_repeat_exactly(shapes, clip_folder, tmp_path):
    items, refs = _split(shapes)
    ex = Extractors(
        i3d=tiny_video_features(),
        inception=tiny_frame_features(),
        clip=tiny_text_image_features(clip_folder),
    )
    config = ScoreConfig(
        frames=16, cache_dir=tmp_path, is_splits=2, progress=False, protocol={"seed": 7}
    )
    report = score_videos(items, refs, ex, config)
    s = report["scores"]
    assert {"fvd", "fid", "is", "clipsim", "flicker"} <= set(s)
    assert s["fvd"]["value"] > 0 and 1 <= s["is"]["value"] <= CLASSES
    assert -1 <= s["clipsim"]["value"] <= 1
    fvd = s["fvd"]["protocol"]
    assert fvd["extractor"] == "tiny video" and fvd["sha256"] == "test" and fvd["frames"] == 16
    assert fvd["generated_samples"] == 2 and fvd["reference_samples"] == 2
    assert "24 fps" in fvd["reference_sampling"]  # references sampled at the generated rate
    assert s["is"]["protocol"]["splits"] == 2 and s["is"]["protocol"]["samples_scored"] == 32
    assert report["protocol"]["seed"] == 7 and report["protocol"]["frames"] == 16
    assert any("samples of" in w for w in report["warnings"])  # 2 clips, 6-d features
    again = score_videos(items, refs, ex, config)
    assert {k: v["value"] for k, v in again["scores"].items()} == {
        k: v["value"] for k, v in s.items()
    }


def test_cached_reference_statistics_are_reused_until_the_references_change(shapes, tmp_path):
    items, refs = _split(shapes)
    i3d, inception = Counting(tiny_video_features()), Counting(tiny_frame_features())
    ex = Extractors(i3d=i3d, inception=inception)
    config = ScoreConfig(metrics=("fvd", "fid"), cache_dir=tmp_path / "cache", progress=False)
    first = score_videos(items, refs, ex, config)
    assert (i3d.calls, inception.calls) == (4, 64)  # 2 generated + 2 reference clips
    cached = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert [p.name.split("-")[0] for p in cached] == ["fid", "fvd"]
    second = score_videos(items, refs, ex, config)
    assert (i3d.calls, inception.calls) == (6, 96)  # the generated clips only
    for key in ("fvd", "fid"):
        assert first["scores"][key]["protocol"]["reference_statistics_reused"] is False
        assert second["scores"][key]["protocol"]["reference_statistics_reused"] is True
        assert second["scores"][key]["value"] == pytest.approx(first["scores"][key]["value"])
    other = ScoreConfig(metrics=("fvd",), cache_dir=tmp_path / "cache", progress=False, frames=12)
    i3d_12 = Counting(tiny_video_features(frames=12))
    score_videos(items, refs, Extractors(i3d=i3d_12), other)  # another protocol: recomputed
    assert i3d_12.calls == 4
    st = refs[0].stat()  # the reference set changed (its mtime): recomputed
    os.utime(refs[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    score_videos(items, refs, ex, config)
    assert i3d.calls == 6 + 4


def test_metrics_that_cannot_be_computed_say_what_is_missing(shapes):
    videos = list_videos(shapes / "videos")
    items = [Item(video=p) for p in videos[:2]]
    assert choose_metrics(None, items, []) == ["is", "flicker"]
    assert "fvd" in choose_metrics(None, items, videos[2:])
    with pytest.raises(ValueError, match="clipsim needs a prompt"):
        score_videos(items, [], Extractors(), ScoreConfig(metrics=("clipsim",), progress=False))
    with pytest.raises(ValueError, match="no i3d extractor"):
        score_videos(items, videos[2:], Extractors(), ScoreConfig(metrics=("fvd",), progress=False))
    report = score_videos(
        items, [], Extractors(), ScoreConfig(metrics=("flicker",), progress=False)
    )
    assert list(report["scores"]) == ["flicker"] and report["scores"]["flicker"]["value"] > 0
