"""Compact manifests: the memory-mapped index round trip, its cache and lock, and probing only
when the buckets need sizes (once, cached)."""

import json
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from pixeldance.data import manifest as manifest_module
from pixeldance.data import sizes as sizes_module
from pixeldance.data.buckets import Bucket, assign_buckets, nearest_bucket
from pixeldance.data.manifest import Manifest, Record, read_image_records, read_video_records
from pixeldance.data.sizes import record_buckets

CAPTIONS = [
    "a dog runs, then stops",
    'she said "hello"',
    "café au lait, naïve, 東京の夜",
    "",
    "line one\nline two",
]
THREE = [Bucket("square", 8, 8), Bucket("landscape", 8, 16), Bucket("portrait", 16, 8)]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def count_probes(monkeypatch):
    """Counts every file probed for its size (the probe answers 480x720 without a file)."""
    probed = []

    def fake(path, image=False):
        probed.append(path)
        return 480, 720

    monkeypatch.setattr(sizes_module, "probe_size", fake)
    return probed


def test_csv_round_trip_with_unicode_captions_and_sizes(tmp_path):
    rows = [[f"clips/v{i}.mp4", c, 480 + i, 640] for i, c in enumerate(CAPTIONS)]
    rows[3][2:] = ["", ""]  # a row without its size
    m = read_video_records(
        write_csv(tmp_path / "m.csv", ["path", "caption", "height", "width"], rows)
    )
    assert isinstance(m, Manifest) and len(m) == 5
    assert [r.caption for r in m] == CAPTIONS
    assert m[0] == Record(str(tmp_path / "clips" / "v0.mp4"), CAPTIONS[0], 480, 640)
    assert (m[3].height, m[3].width) == (None, None) and m[-1].height == 484
    assert isinstance(m.paths.data, np.memmap)  # mapped from the index, not held per row
    with pytest.raises(IndexError):
        m[5]


def test_webvid_columns_and_root(tmp_path):
    header = ["videoid", "contentUrl", "duration", "page_dir", "name"]
    rows = [
        ["77", "http://x/77.mp4", "PT00H00M10S", "012", "a dog runs"],
        ["0078", "http://x/78.mp4", "PT00H00M11S", "006001_006050", CAPTIONS[2]],
    ]
    write_csv(tmp_path / "w.csv", header, rows)
    m = read_video_records(tmp_path / "w.csv")  # no videos/ folder: paths relative to the manifest
    assert m[1].path == str(tmp_path / "006001_006050" / "0078.mp4")  # text kept as written
    (tmp_path / "videos").mkdir()
    m = read_video_records(tmp_path / "w.csv")
    assert m[0].path == str(tmp_path / "videos" / "012" / "77.mp4")
    assert [r.caption for r in m] == ["a dog runs", CAPTIONS[2]]
    assert m.sizes is None and m[0].height is None
    other = read_video_records(tmp_path / "w.csv", root="/data/webvid")
    assert other[0].path == "/data/webvid/012/77.mp4"


def test_jsonl_and_absolute_paths_and_urls(tmp_path):
    lines = [
        {"video": "/abs/a.mp4", "text": CAPTIONS[4], "height": 90, "width": 160},
        {"video": "https://host/b.mp4", "text": None, "height": None, "width": 0},
        {"video": "rel/c.mp4", "text": 7, "extra": [1, 2]},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    m = read_video_records(tmp_path / "m.jsonl")
    assert [r.path for r in m] == ["/abs/a.mp4", "https://host/b.mp4", str(tmp_path / "rel/c.mp4")]
    assert [r.caption for r in m] == [CAPTIONS[4], "", "7"]
    assert [(r.height, r.width) for r in m] == [(90, 160), (None, None), (None, None)]


def test_index_is_built_once_and_rebuilt_when_the_manifest_changes(tmp_path, monkeypatch):
    builds = []
    real = manifest_module.build_index
    monkeypatch.setattr(manifest_module, "build_index", lambda *a: builds.append(a) or real(*a))
    path = write_csv(tmp_path / "m.csv", ["path", "caption"], [["a.mp4", "one"]])
    assert read_video_records(path)[0].caption == "one"
    assert read_video_records(path)[0].caption == "one" and len(builds) == 1
    assert (tmp_path / ".m.csv.index" / "meta.json").exists()
    write_csv(path, ["path", "caption"], [["a.mp4", "two"], ["b.mp4", "three"]])
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock says
    m = read_video_records(path)
    assert len(builds) == 2 and [r.caption for r in m] == ["two", "three"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_read_only_folder_puts_the_index_in_the_user_cache(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "m.csv", ["path", "caption"], [["a.mp4", "one"]])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(manifest_module.os, "access", lambda *a: False)  # tests may run as root
    assert read_video_records(path)[0].path == str(tmp_path / "a.mp4")
    assert not (tmp_path / ".m.csv.index").exists()
    made = (tmp_path / "cache" / "pixeldance" / "manifests").glob("m.csv-*")
    assert len([p for p in made if (p / "meta.json").exists()]) == 1


def _read_in_child(path: str, out: str) -> None:
    builds = []
    real = manifest_module.build_index
    manifest_module.build_index = lambda *a: builds.append(1) or real(*a)
    m = read_video_records(path)
    Path(out).write_text(json.dumps({"builds": len(builds), "last": m[len(m) - 1].caption}))


def test_ranks_starting_together_build_the_index_once(tmp_path):
    rows = [[f"v{i}.mp4", f"caption {i}"] for i in range(20000)]
    path = write_csv(tmp_path / "m.csv", ["path", "caption"], rows)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_read_in_child, args=(str(path), str(tmp_path / f"r{r}.json")))
        for r in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(3)]
    assert sum(r["builds"] for r in results) == 1
    assert {r["last"] for r in results} == {"caption 19999"}


def test_pickled_manifest_carries_no_rows(tmp_path):
    rows = [[f"v{i}.mp4", "a long caption " * 20] for i in range(2000)]
    m = read_video_records(write_csv(tmp_path / "m.csv", ["path", "caption"], rows))
    blob = pickle.dumps(m)
    assert len(blob) < 1000  # the index folder's name, not 60 kB of captions
    back = pickle.loads(blob)
    assert back[1999] == m[1999] and len(back) == 2000
    small = Manifest.from_records([Record("a.mp4", "x", 4, 8)])  # held in memory: pickled whole
    assert pickle.loads(pickle.dumps(small))[0] == Record("a.mp4", "x", 4, 8)


@pytest.mark.parametrize(
    "header,row,match",
    [
        (["a", "b"], ["1", "2"], "path column"),
        (["path", "caption", "height", "width"], ["a.mp4", "c", "tall", "8"], "could not be read"),
        (["path", "caption"], None, "no rows"),
    ],
)
def test_bad_manifests_say_what_is_wrong(tmp_path, header, row, match):
    path = write_csv(tmp_path / "m.csv", header, [row] if row else [])
    with pytest.raises(ValueError, match=match):
        read_video_records(path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_video_records(tmp_path / "missing.csv")


def test_image_folder_records(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 4)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a wide image\n")
    images = read_image_records(tmp_path)
    assert [(Path(r.path).name, r.caption) for r in images] == [("a.png", "a wide image")]
    assert record_buckets(images, THREE, images=True).tolist() == [1]  # probed: 4x8, landscape
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        read_image_records(tmp_path / "empty")


def test_one_bucket_without_size_columns_probes_nothing(tmp_path, count_probes):
    rows = [[str(i), "012", f"clip {i}"] for i in range(50)]
    m = read_video_records(write_csv(tmp_path / "w.csv", ["videoid", "page_dir", "name"], rows))
    assert record_buckets(m, [Bucket("square", 8, 8)]).tolist() == [0] * 50
    assert count_probes == []


def test_size_columns_bucket_without_probing(tmp_path, count_probes):
    rows = [["a.mp4", "c", 480, 720], ["b.mp4", "c", 720, 480], ["c.mp4", "c", 300, 300]]
    m = read_video_records(
        write_csv(tmp_path / "m.csv", ["path", "caption", "height", "width"], rows)
    )
    assert record_buckets(m, THREE).tolist() == [1, 2, 0]
    assert count_probes == []


def test_missing_sizes_are_probed_once_and_cached_beside_the_manifest(tmp_path, count_probes):
    rows = [["a.mp4", "c", 720, 480], ["b.mp4", "c", "", ""], ["c.mp4", "c", 300, 300]]
    path = write_csv(tmp_path / "m.csv", ["path", "caption", "height", "width"], rows)
    assert record_buckets(read_video_records(path), THREE).tolist() == [2, 1, 0]
    assert count_probes == [str(tmp_path / "b.mp4")]  # only the row without a size
    # a second rank, or the next start: read from the cache
    assert record_buckets(read_video_records(path), THREE).tolist() == [2, 1, 0]
    assert len(count_probes) == 1
    assert (tmp_path / ".m.csv.index" / "probed-video.bin").exists()


def test_unreadable_files_go_to_the_first_bucket(tmp_path):
    rows = [["missing.mp4", "c"], ["also-missing.mp4", "c"]]
    m = read_video_records(write_csv(tmp_path / "m.csv", ["path", "caption"], rows))
    assert record_buckets(m, THREE, progress=False).tolist() == [0, 0]


def test_vectorised_assignment_matches_nearest_bucket():
    rng = np.random.default_rng(0)
    h, w = rng.integers(1, 2000, 500), rng.integers(1, 2000, 500)
    h[:3], w[:3] = [0, 5, -1], [5, 0, 7]  # unknown sizes
    got = assign_buckets(h, w, THREE, chunk=64)
    want = [
        THREE.index(nearest_bucket(a, b, THREE)) if a > 0 and b > 0 else 0
        for a, b in zip(h, w, strict=True)
    ]
    assert got.tolist() == want


def test_probing_in_worker_processes_reads_real_files(tmp_path):
    from pixeldance.files import write_mp4

    for name, (h, w) in {"wide": (16, 32), "tall": (32, 16)}.items():
        write_mp4(np.zeros((4, h, w, 3), np.uint8), tmp_path / f"{name}.mp4", fps=8)
    rows = [["wide.mp4", "a"], ["tall.mp4", "b"], ["gone.mp4", "c"]] * 3
    m = read_video_records(write_csv(tmp_path / "m.csv", ["path", "caption"], rows))
    got = record_buckets(m, THREE, workers=2, progress=False)
    assert got.tolist() == [1, 2, 0] * 3
    probed = np.fromfile(tmp_path / ".m.csv.index" / "probed-video.bin", np.int32)
    assert probed.reshape(-1, 2).tolist() == [[16, 32], [32, 16], [0, 0]] * 3


def test_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfpath,caption\na.mp4,hello\n")
    (tmp_path / "m.jsonl").write_bytes(b'\xef\xbb\xbf{"path": "b.mp4", "caption": "x"}\n')
    assert read_video_records(tmp_path / "m.csv")[0].caption == "hello"
    assert read_video_records(tmp_path / "m.jsonl")[0].path == str(tmp_path / "b.mp4")
