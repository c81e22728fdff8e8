"""make-shapes' new looks and motions for fine-tuning: ``shapes`` and ``motions``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixeldance.data.captions import MOTION_WORDS
from pixeldance.data.shapes import (
    COLOURS,
    MOTIONS,
    clip_from_json,
    object_opacity,
    render_clip,
    sample_clip,
)
from pixeldance.data.shapes_dataset import write_dataset


def test_default_draws_are_the_worlds_own():
    for seed in range(50):
        assert sample_clip(seed) == sample_clip(seed, motions=MOTIONS)
        assert sample_clip(seed).caption == sample_clip(seed, motions=None, shapes=None).caption


def _object_pixels(frame, colour):
    diff = frame.astype(np.float32) - np.array(colour, np.float32)
    return np.linalg.norm(diff, axis=-1) < 30


def test_a_fading_object_is_gone_by_the_last_frame():
    seed = next(
        s
        for s in range(100)
        if (c := sample_clip(s, motions=("fade",))).camera == "static" and len(c.objects) == 1
    )
    clip = sample_clip(seed, motions=("fade",))
    obj = clip.objects[0]
    assert obj.motion == "fade" and obj.direction is None
    assert any(w in clip.caption for w in MOTION_WORDS["fade"])
    video = render_clip(clip)
    colour = COLOURS[obj.colour]
    first = _object_pixels(video[0], colour)
    assert first.sum() > 20
    middle = video[len(video) // 2][first].astype(np.float32)
    # half way, the object's pixels lie between its colour and the background's
    assert 40 < np.linalg.norm(middle - np.array(colour, np.float32), axis=-1).mean() < 200
    assert _object_pixels(video[-1], colour).sum() == 0
    assert object_opacity(obj, 0.0) == 1.0 and object_opacity(obj, 1.0) == 0.0


def test_write_dataset_draws_only_the_asked_shapes_and_motions(tmp_path):
    root = write_dataset(
        tmp_path / "d",
        6,
        seed=4,
        num_images=0,
        progress=False,
        shapes=("hexagon",),
        motions=("fade", "fade", "rotate"),
    )
    clips = [clip_from_json(json.loads(p.read_text())) for p in (root / "params").glob("*.json")]
    objects = [o for c in clips for o in c.objects]
    assert len(clips) == 6
    assert {o.shape for o in objects} == {"hexagon"}
    assert {o.motion for o in objects} <= {"fade", "rotate"} and "fade" in {
        o.motion for o in objects
    }
    with pytest.raises(ValueError, match="unknown motion"):
        write_dataset(tmp_path / "bad", 2, progress=False, motions=("wiggle",))
    with pytest.raises(ValueError, match="unknown shape"):
        write_dataset(tmp_path / "bad2", 2, progress=False, shapes=("octagon",))
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()


def test_make_shapes_motions_on_the_command_line(tmp_path):
    from pixeldance.cli import main

    out = tmp_path / "fade"
    args = ["make-shapes", "--out", str(out), "--num", "2", "--images", "0", "--motions", "fade"]
    assert main(args) == 0
    captions = (out / "manifest.csv").read_text()
    assert "fade" in captions or "disappears" in captions
    params = [json.loads(p.read_text()) for p in (out / "params").glob("*.json")]
    assert {o["motion"] for c in params for o in c["objects"]} == {"fade"}


def test_motion_share_mixes_the_new_motion_with_the_world(tmp_path):
    root = write_dataset(
        tmp_path / "d", 6, seed=4, num_images=0, progress=False, motions=("fade",), motion_share=0.5
    )
    clips = {
        c.videoid: c
        for c in (
            clip_from_json(json.loads(p.read_text())) for p in (root / "params").glob("*.json")
        )
    }
    for i in range(6):
        seed = 4 * 1_000_003 + i
        clip = clips[f"shapes{seed:07d}"]
        if i < 3:
            assert {o.motion for o in clip.objects} == {"fade"}
        else:  # the world's own clip, exactly as without the option
            assert clip == sample_clip(seed)
    with pytest.raises(ValueError, match="motion_share"):
        write_dataset(tmp_path / "bad", 2, progress=False, motions=("fade",), motion_share=2)
    assert not (tmp_path / "bad").exists()
