"""Progressive training stages: the plan and its checks, the stream serving each stage's
frames and size (from videos and from a latent cache), exact resume across the boundary."""

import json
from pathlib import Path

import pytest

from helpers import cli_ok
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.train.config import load_config
from pixeldance.train.stages import bucket_sets, plan
from pixeldance.train.stream import make_stream
from train_runs import TINY, assert_same_checkpoint, run_killed_after, run_ok, sets, train_cmd

# stage 1: 2 frames at 16x16 for 3 steps; then tiny.yaml's own buckets (4 frames, 32x32...)
EARLY = "data.stages=[{name: small, steps: 3, buckets: [{name: s16, height: 16, width: 16, frames: 2, batch_size: 2}]}]"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, 10, seed=3, num_images=4, progress=False)
    return root


def staged(shapes: Path, *extra: str):
    return load_config(
        TINY,
        [f"data.manifest={shapes / 'manifest.csv'}", "data.image_every=0", EARLY, *extra],
    )


def test_plan_places_the_main_stage_after_the_early_ones(shapes):
    stages = plan(staged(shapes, "optim.max_steps=10"))
    assert [(s.name, s.start, s.end) for s in stages] == [("small", 0, 3), ("main", 3, 10)]
    assert [b.frames for b in stages[0].buckets] == [2]
    assert [len(b) for b in bucket_sets(staged(shapes))] == [1, 3]


@pytest.mark.parametrize(
    "stages, message",
    [
        (
            "[{steps: 0, buckets: [{name: a, height: 8, width: 8}]}]",
            "steps must be an integer >= 1",
        ),
        ("[{steps: 2}]", "buckets must list at least one bucket"),
        ("[{steps: 2, buckets: [{name: a, height: 8, width: 8}], size: 3}]", "unknown keys"),
        ("[{steps: 20, buckets: [{name: a, height: 8, width: 8}]}]", "leave the main stage"),
        (
            "[{steps: 2, buckets: [{name: square, height: 8, width: 8}]}]",
            "bucket names must differ",
        ),
    ],
)
def test_bad_stages_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        plan(load_config(TINY, [f"data.stages={stages}", "optim.max_steps=10"]))


def shapes_by_step(stream, steps: int) -> dict[int, set]:
    seen: dict[int, set] = {}
    for _ in range(steps):
        step, kind, batch = next(stream)
        pixels = batch.pixels if batch.pixels is not None else batch.latents
        seen.setdefault(step, set()).add((kind, tuple(pixels.shape[2:])))
    return seen


def test_the_stream_serves_each_stages_frames_and_size(shapes):
    cfg = staged(shapes, "optim.max_steps=6")
    stream, _ = make_stream(cfg, 0)
    seen = shapes_by_step(stream, 6)
    main_sizes = {(4, b.height, b.width) for b in cfg.data.buckets}
    for step in range(3):
        assert seen[step] == {("video", (2, 16, 16))}, seen
    for step in range(3, 6):
        ((kind, size),) = seen[step]
        assert kind == "video" and size in main_sizes, seen


def test_each_stage_mixes_images_at_its_own_rate(shapes):
    early = EARLY.replace("steps: 3,", "steps: 4, image_every: 2,")
    cfg = load_config(
        TINY,
        [
            f"data.manifest={shapes / 'manifest.csv'}",
            f"data.images={shapes / 'images.csv'}",
            "data.image_every=0",  # the main stage: videos only
            early,
            "optim.max_steps=8",
        ],
    )
    seen = shapes_by_step(make_stream(cfg, 0)[0], 8)
    kinds = [{kind for kind, _ in seen[step]} for step in range(8)]
    assert kinds[:4] == [{"video"}, {"image"}, {"video"}, {"image"}], kinds
    assert all(k == {"video"} for k in kinds[4:]), kinds


def test_images_in_a_later_stage_count_from_the_first_step(shapes):
    """DDP's unused-parameter search is chosen at start: a run whose images come only in a
    later stage must know it from step 0, as a run resumed in that stage does."""
    cfg = load_config(
        TINY,
        [
            f"data.manifest={shapes / 'manifest.csv'}",
            f"data.images={shapes / 'images.csv'}",
            "data.image_every=2",  # the main stage mixes images in
            EARLY.replace("steps: 3,", "steps: 3, image_every: 0,"),
            "optim.max_steps=8",
        ],
    )
    assert make_stream(cfg, 0)[0].image_every == 2
    assert make_stream(cfg, 5)[0].image_every == 2


def test_a_stream_started_inside_a_stage_matches_the_uninterrupted_one(shapes):
    cfg = staged(shapes, "optim.max_steps=8", "run.seed=2")

    def captions(start: int, steps: int) -> list:
        stream, _ = make_stream(cfg, start)
        return [next(stream)[2].captions for _ in range(steps)]

    whole = captions(0, 8)
    assert captions(4, 4) == whole[4:]  # resumed in the main stage
    assert captions(1, 7) == whole[1:]  # resumed in the early stage, crossing the boundary


def test_a_latent_cache_holds_every_stages_sizes(shapes, tmp_path):
    cache = tmp_path / "cache"
    cli_ok(
        "preprocess", "--config", str(TINY), "--data", str(shapes / "manifest.csv"),
        "--out", str(cache), "--set", EARLY,
    )  # fmt: skip
    index = json.loads((cache / "index.json").read_text())
    assert {b["name"] for b in index["buckets"]} == {"s16", "square", "landscape", "portrait"}
    cfg = load_config(
        TINY, [f"data.latent_cache={cache}", "data.image_every=0", EARLY, "optim.max_steps=6"]
    )
    seen = shapes_by_step(make_stream(cfg, 0)[0], 6)
    assert seen[0] == {("video", (2, 4, 4))}  # 16x16 pixels: 4x4 latents of the codec
    assert all(size[0] == 4 for step in range(3, 6) for _, size in seen[step])


@pytest.mark.slow
def test_two_stage_run_resumes_bit_identical_after_a_kill_in_stage_two(shapes, tmp_path):
    """A 2-stage run, killed after its checkpoint in stage 2 (step 6 of 10, stage 1 is steps
    0-2) and resumed, ends bit-identical to the uninterrupted run."""
    args = ["--max-steps", "10", "--checkpoint-every", "6", "--seed", "4"]
    args += sets(EARLY, "data.image_every=0", "run.keep_checkpoints=0")
    a, b = tmp_path / "a", tmp_path / "b"
    run_ok(train_cmd(1, shapes, a, *args))
    assert run_killed_after(train_cmd(1, shapes, b, *args), b, 6), "finished before the kill"
    run_ok(train_cmd(1, shapes, b, *args, "--resume"))
    assert_same_checkpoint(a, b, 10)
