"""Data path: clip decoding, manifests with broken files, shards, mixer, buckets, Dancing Shapes."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pixeldance.data.batch import collate
from pixeldance.data.buckets import Bucket, nearest_bucket, resize_crop_frames
from pixeldance.data.captions import DIRECTION_WORDS, MOTION_WORDS
from pixeldance.data.datasets import (
    BucketBatchSampler,
    Mixer,
    VideoClipDataset,
    batches_before,
)
from pixeldance.data.manifest import Record, read_video_records
from pixeldance.data.shapes import (
    clip_from_json,
    is_single_mover,
    render_clip,
    sample_clip,
)
from pixeldance.data.shapes_dataset import write_dataset
from pixeldance.data.sizes import record_buckets
from pixeldance.data.video import ClipTooShort, decode_clip, effective_fps, frame_indices
from pixeldance.files import write_mp4

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "videos"


@pytest.mark.parametrize(
    "native,expected",
    [
        (24, [6 * i for i in range(16)]),
        (25, [int(6.25 * i) for i in range(16)]),
        (29.97, [int(np.floor(7.4925 * i + 1e-6)) for i in range(16)]),
        (8, [2 * i for i in range(16)]),
    ],
)
def test_frame_indices_16_at_4fps(native, expected):
    assert frame_indices(native, 16, 4.0).tolist() == expected
    assert expected[:5] == sorted(expected[:5])


def test_short_clip_policy():
    assert effective_fps(10.0, 24, 16, 4) == 4  # fits
    assert effective_fps(2.0, 24, 16, 4) == pytest.approx(15 / (47 / 24))  # stride lowered
    assert effective_fps(1.0, 24, 16, 4) <= 24
    with pytest.raises(ClipTooShort):
        effective_fps(0.5, 24, 16, 4)  # 12 frames only


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real videos not present")
@pytest.mark.parametrize("name", ["horse", "kitten", "train_running"])
def test_real_videos_decode(name):
    clip = decode_clip(REAL / f"{name}.mp4", 16, 4.0, start=0.5)
    assert clip.frames.shape == (16, 480, 720, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(np.diff(clip.timestamps), 0.25, atol=1e-3)


def test_decoded_frames_match_full_decode(tmp_path):
    frames = np.zeros((48, 16, 16, 3), np.uint8)
    frames[:, :, :, 0] = (np.arange(48) * 5).reshape(-1, 1, 1)  # frame index in the red channel
    write_mp4(frames, tmp_path / "ramp.mp4", fps=24)
    clip = decode_clip(tmp_path / "ramp.mp4", 4, 4.0, start=0.5)
    got = np.round(clip.frames[:, 8, 8, 0] / 5).astype(int).tolist()
    assert got == [12, 18, 24, 30]


def test_write_mp4_is_byte_identical_and_faithful(tmp_path):
    """The same frames give the same bytes, written from fresh arrays each time (PyAV's own
    rgb24 conversion did not, at this 192x112 size), and decode back close to the input."""
    clip = sample_clip(7000021)
    frames = render_clip(clip)[:24]
    assert frames.shape[1:3] == (192, 112)
    digests = set()
    for i in range(6):
        path = write_mp4(frames.copy(), tmp_path / f"v{i}.mp4", fps=24)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
    import av

    with av.open(str(tmp_path / "v0.mp4")) as container:
        back = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert back.shape == frames.shape
    err = back.astype(float) - frames.astype(float)
    # colour matrix and range right: 32.9 dB here (PyAV's own conversion gave 32.6)
    assert 10 * np.log10(255**2 / np.mean(err**2)) > 31


def make_broken_manifest(root: Path) -> Path:
    write_dataset(root, 3, seed=5, num_images=0, progress=False)
    videos = root / "videos"
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("this is not a video")
    good = next(videos.rglob("shapes*.mp4")).read_bytes()
    (videos / "truncated.mp4").write_bytes(good[: len(good) // 3])
    short = np.zeros((6, 16, 16, 3), np.uint8)
    write_mp4(
        short, videos / "short.mp4", fps=24
    )  # 0.25 s: too short for 4 frames at 4 fps even stretched
    lines = (root / "manifest.csv").read_text().splitlines()
    for name in ("missing", "zero", "text", "truncated", "short"):
        lines.append(f"x{name},broken {name},000,1.0,videos/{name}.mp4,16,16")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_broken_files_are_skipped_and_counted(tmp_path):
    manifest = make_broken_manifest(tmp_path)
    records = read_video_records(manifest)
    assert len(records) == 8
    buckets = [Bucket("sq", 16, 16, frames=16, batch_size=2)]
    ds = VideoClipDataset(records, buckets, fps=4.0, max_retries=0)
    out = [ds[(k, 0)] for k in range(len(records))]
    bad = {Path(p).stem for o in out for p, _ in o.bad}
    assert bad == {"missing", "zero", "text", "truncated", "short"}
    assert sum(o.pixels is not None for o in out) == 3
    batch = collate(out)
    assert batch.pixels.shape == (3, 3, 16, 16, 16) and len(batch.bad) == 5
    retry = VideoClipDataset(records, buckets, fps=4.0, max_retries=8)
    assert all(retry[(k, 0)].pixels is not None for k in range(len(records)))  # substitutes fill in


def test_webvid_columns(tmp_path):
    (tmp_path / "videos" / "012").mkdir(parents=True)
    (tmp_path / "m.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n77,http://x,PT00H00M10S,012,a dog runs\n"
    )
    (r,) = read_video_records(tmp_path / "m.csv")
    assert r.path == str(tmp_path / "videos" / "012" / "77.mp4") and r.caption == "a dog runs"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="path column"):
        read_video_records(tmp_path / "bad.csv")


def test_mixer_one_image_batch_in_eight_and_exact_resume():
    rb = [0, 1, 0, 1, 0, 0, 1, 1, 0, 1]
    buckets = [Bucket("a", 8, 8, 4, 2), Bucket("b", 8, 16, 4, 2)]

    def mixer(start):
        v, i = batches_before(start, 8)
        return Mixer(
            BucketBatchSampler(rb, buckets, seed=1, start=v),
            BucketBatchSampler(rb, buckets, seed=2, start=i),
            8,
            start,
        )

    full = [next(m) for m in [mixer(0)] for _ in range(40)]
    kinds = [k for _, k, _ in full]
    for block in range(5):
        assert kinds[block * 8 : block * 8 + 8].count("image") == 1
    assert kinds[7] == "image" and kinds[15] == "image"
    for k in (3, 8, 13):
        resumed = mixer(k)
        assert [next(resumed) for _ in range(40 - k)] == full[k:]
    for _, _, batch in full:
        assert len({b for _, b in batch}) == 1  # one bucket per batch


def test_sampler_ranks_take_disjoint_batches():
    rb = [0] * 12
    buckets = [Bucket("a", 8, 8, 4, 3)]
    a = BucketBatchSampler(rb, buckets, seed=0, rank=0, world_size=2)
    b = BucketBatchSampler(rb, buckets, seed=0, rank=1, world_size=2)
    ia, ib = iter(a), iter(b)
    ka = {k for _ in range(2) for k, _ in next(ia)}
    kb = {k for _ in range(2) for k, _ in next(ib)}
    assert not (ka & kb) and len(ka | kb) == 12


def test_bucket_assignment():
    buckets = [Bucket("square", 64, 64), Bucket("landscape", 48, 80), Bucket("portrait", 80, 48)]
    assert nearest_bucket(480, 720, buckets).name == "landscape"
    assert nearest_bucket(1080, 1920, buckets).name == "landscape"
    assert nearest_bucket(1920, 1080, buckets).name == "portrait"
    assert nearest_bucket(500, 520, buckets).name == "square"
    frames = np.random.default_rng(0).integers(0, 255, (2, 480, 720, 3), dtype=np.uint8)
    assert resize_crop_frames(frames, 48, 80).shape == (2, 48, 80, 3)
    sizes = [(480, 720), (720, 480), (300, 300)]
    records = [Record(f"v{i}.mp4", "c", h, w) for i, (h, w) in enumerate(sizes)]
    assert record_buckets(records, buckets).tolist() == [1, 2, 0]


def test_make_shapes_is_deterministic(tmp_path):
    a = write_dataset(tmp_path / "a", 3, seed=7, num_images=2, progress=False)
    b = write_dataset(tmp_path / "b", 3, seed=7, num_images=2, progress=False)
    c = write_dataset(tmp_path / "c", 3, seed=8, num_images=2, progress=False)

    def digest(root):
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digest(a) == digest(b)
    assert digest(a)["manifest.csv"] != digest(c)["manifest.csv"]
    clip = sample_clip(7)
    assert np.array_equal(render_clip(clip), render_clip(sample_clip(7)))


def test_make_shapes_mover_share(tmp_path):
    root = write_dataset(tmp_path / "m", 4, seed=7, num_images=0, progress=False, mover_share=0.5)
    clips = [
        clip_from_json(json.loads(p.read_text())) for p in sorted((root / "params").glob("*.json"))
    ]
    movers = [c for c in clips if is_single_mover(c)]
    assert len(clips) == 4 and len(movers) >= 2
    # the other clips are the dataset's own first two, unchanged by the option
    plain = {sample_clip(7 * 1_000_003 + i).videoid for i in range(2)}
    assert plain <= {c.videoid for c in clips}
    with pytest.raises(ValueError, match="mover_share"):
        write_dataset(tmp_path / "bad", 4, seed=7, progress=False, mover_share=1.5)
    assert not (tmp_path / "bad").exists()
    from pixeldance.cli import main

    args = ["make-shapes", "--out", str(tmp_path / "bad"), "--num", "2", "--mover-share", "2"]
    assert main(args) == 2
    assert not (tmp_path / "bad").exists()


def test_shapes_captions_match_parameters():
    for seed in range(200):
        clip = sample_clip(seed)
        text = clip.caption.lower()
        for obj in clip.objects:
            assert f"{obj.colour} {obj.shape}" in text
            if obj.motion == "move":
                assert any(w in text for w in DIRECTION_WORDS[obj.direction])
            else:
                assert any(w in text for w in MOTION_WORDS[obj.motion])
        if clip.camera.startswith("zoom"):
            assert (
                clip.camera.replace("-", "ing ") in text or clip.camera.replace("-", "s ") in text
            )
        elif clip.camera.startswith("pan"):
            direction = clip.camera.split("-")[1]
            assert (
                f"pans {direction}" in text
                or f"panning {direction}" in text
                or f"tilts {direction}" in text
            )
        else:
            assert "camera" not in text and "panning" not in text and "zooming" not in text


def test_check_data_command_reports_bad_files(tmp_path, capsys):
    from pixeldance.cli import main

    manifest = make_broken_manifest(tmp_path)
    assert main(["check-data", str(manifest), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "8 files checked, 3 good, 5 bad" in out and "zero.mp4" in out
